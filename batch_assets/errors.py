"""Errors that a retry cannot fix become a ``dagster.Failure`` with their own message, not retried."""

import contextlib
from collections.abc import Iterator

import dagster as dg

from batch_assets.scoring.model_format import ArtifactError
from batch_assets.scoring.names import InvalidName
from batch_assets.scoring.registry import RegistryError
from batch_assets.scoring.scorer import SchemaError
from batch_assets.scoring.warehouse import LandingError

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
