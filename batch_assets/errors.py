"""Which failures are worth retrying.

Errors that a retry cannot fix (a schema break, a checksum mismatch, an unknown model, a bad name) become a
``dagster.Failure`` with ``allow_retries=False`` and their own message: they fail at once. Anything else (a
registry that cannot be read right now, a DuckDB file locked by another writer past the resource's own
retries, an I/O error) is retried by :data:`RETRY_POLICY`, which every asset and check carries.
"""

import contextlib
from collections.abc import Iterator

import dagster as dg

from batch_assets.core.model_format import ArtifactError
from batch_assets.core.names import InvalidName
from batch_assets.core.registry import RegistryError
from batch_assets.core.scorer import SchemaError
from batch_assets.storage.warehouse import LandingError

# 3 retries after about 2, 4 and 8 seconds (+-50%): long enough for a lock holder to commit or a mount to
# come back, short enough that a real outage fails the run within half a minute.
RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

PERMANENT: dict[type[Exception], str] = {
    SchemaError: "schema break",
    LandingError: "bad landing data",
    RegistryError: "model registry",
    ArtifactError: "model artifact",
    InvalidName: "invalid name",
}


@contextlib.contextmanager
def permanent_errors() -> Iterator[None]:
    """Turn the project's permanent errors into a clear, non-retried step failure."""
    try:
        yield
    except tuple(PERMANENT) as exc:
        label = next(v for k, v in PERMANENT.items() if isinstance(exc, k))
        raise dg.Failure(description=f"{label}: {exc}", allow_retries=False) from exc
