"""The one place resources are constructed from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from resources.compute import ComputeResource
from resources.landing import LandingResource
from resources.metrics import MetricsResource
from resources.registry import ModelRegistryResource
from resources.warehouse import WarehouseResource

if TYPE_CHECKING:  # resources take the settings object; they never read the environment themselves
    from batch_assets.settings import Settings


def s3_fields(settings: Settings, *, resolve: bool = False) -> dict[str, Any]:
    """The S3 fields of the registry, landing and warehouse resources as ``EnvVar``s (or, with ``resolve``,
    their values, for resources used directly by a shell command); none when nothing is on S3."""
    return {
        field: dg.EnvVar(name).get_value() if resolve else dg.EnvVar(name)
        for field, name in settings.s3_variables.items()
    }


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
            threads=settings.duckdb_thread_count,
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
