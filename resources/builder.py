"""The one place resources are constructed from settings."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from batch_assets.settings import S3_ENDPOINT_ENV, Settings, available_cpus
from resources.compute import ComputeResource
from resources.landing import LandingResource
from resources.metrics import MetricsResource
from resources.registry import ModelRegistryResource
from resources.warehouse import WarehouseResource

# ObjectStoreResource field -> environment variable; each is bound as dg.EnvVar (resolved in the run
# process, never stored in run config or shown in the UI) when the variable is set where definitions load.
S3_ENV = {
    "endpoint_url": S3_ENDPOINT_ENV,
    "region_name": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
}


def s3_fields(settings: Settings, *, resolve: bool = False) -> dict[str, Any]:
    """The S3 fields of the registry, landing and warehouse resources as ``EnvVar``s (or, with ``resolve``,
    the variables' values, for resources used directly by a shell command); none when nothing is on S3,
    so the embedded default reads no AWS variable."""
    if not settings.uses_s3:
        return {}
    fields = {}
    for field, names in S3_ENV.items():
        set_names = [n for n in ((names,) if isinstance(names, str) else names) if os.environ.get(n)]
        if set_names:
            fields[field] = os.environ[set_names[0]] if resolve else dg.EnvVar(set_names[0])
    return fields


def build_resources(settings: Settings, *, for_shell: bool = False) -> dict[str, Any]:
    """Resources of the embedded default (a lake folder read through DuckDB, a local registry and a local
    landing folder), with the lake, the registry and the landing zone moved to S3 by
    ``BATCH_ASSETS_*_URI``, and, when configured, a Prometheus Pushgateway.

    Runs bind secrets as ``EnvVar`` (read in the run process, never stored); ``for_shell`` gives the CLI
    the same resources with the values read from its own environment (see :func:`shell_resources`)."""
    s3 = s3_fields(settings, resolve=for_shell)
    return {
        "warehouse": WarehouseResource(
            lake_uri=settings.lake_location,
            threads=settings.duckdb_threads or available_cpus(),
            memory_limit=settings.duckdb_memory_limit,
            **(s3 if settings.lake_location.startswith("s3://") else {}),
        ),
        "model_registry": ModelRegistryResource(root=settings.registry_location, **s3),
        "landing": LandingResource(root=settings.landing_location, **s3),
        "compute": ComputeResource(
            device=settings.device,
            torch_threads=settings.torch_threads,
            batch_memory_mb=settings.batch_memory_mb,
        ),
        "metrics": MetricsResource(pushgateway_url=settings.pushgateway_url),
    }


def shell_resources(settings: Settings) -> dict[str, Any]:
    """The resources of :func:`build_resources` for shell commands (the CLI, the demo): the registry, the
    lake and the landing zone the runs use, reached with the same settings."""
    return build_resources(settings, for_shell=True)
