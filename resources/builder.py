"""The one place resources are constructed from settings."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from batch_assets.settings import S3_ENDPOINT_ENV, Settings, available_cpus
from resources.compute import ComputeResource
from resources.lake import LakeResource
from resources.landing import LandingResource
from resources.metrics import MetricsResource
from resources.registry import ModelRegistryResource
from resources.warehouse import WarehouseResource

# ObjectStoreResource field -> environment variable; each is bound as dg.EnvVar (resolved in the run
# process, never stored in run config or shown in the UI) when the variable is set where definitions load.
S3_ENV = {
    "endpoint_url": S3_ENDPOINT_ENV,
    "region_name": "AWS_REGION",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}


def s3_fields(settings: Settings) -> dict[str, Any]:
    """The S3 fields of ``ObjectStoreResource`` (inherited by the registry, landing and lake resources) as
    ``EnvVar``s; none when nothing is on S3, so the embedded default reads no AWS variable."""
    if not settings.uses_s3:
        return {}
    return {field: dg.EnvVar(var) for field, var in S3_ENV.items() if os.environ.get(var)}


def build_resources(settings: Settings) -> dict[str, Any]:
    """Resources of the embedded default (a DuckDB file, a local registry and a local landing folder), with
    the registry, the landing zone and the optional lake moved to S3 by ``BATCH_ASSETS_*_URI``, and, when
    configured, a Prometheus Pushgateway."""
    s3 = s3_fields(settings)
    return {
        "warehouse": WarehouseResource(
            database=str(settings.warehouse),
            threads=settings.duckdb_threads or available_cpus(),
            memory_limit=settings.duckdb_memory_limit,
        ),
        "model_registry": ModelRegistryResource(root=settings.registry_location, **s3),
        "landing": LandingResource(root=settings.landing_location, **s3),
        "lake": LakeResource(uri=settings.lake_uri or "", **s3),
        "compute": ComputeResource(
            device=settings.device,
            torch_threads=settings.torch_threads,
            batch_memory_mb=settings.batch_memory_mb,
        ),
        "metrics": MetricsResource(pushgateway_url=settings.pushgateway_url),
    }
