"""The one place resources are constructed from settings."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from batch_assets.settings import S3_ENDPOINT_ENV, Settings
from resources.lake import LakeResource
from resources.landing import LandingResource
from resources.object_store import ObjectStoreResource
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


def build_object_store(settings: Settings) -> ObjectStoreResource:
    if not settings.uses_s3:
        return ObjectStoreResource()
    return ObjectStoreResource(
        **{field: dg.EnvVar(var) for field, var in S3_ENV.items() if os.environ.get(var)}
    )


def build_resources(settings: Settings) -> dict[str, Any]:
    """Resources of the embedded default (a DuckDB file, a local registry and a local landing folder), with
    the registry, the landing zone and the optional lake moved to S3 by ``BATCH_ASSETS_*_URI``."""
    storage = build_object_store(settings)
    return {
        "warehouse": WarehouseResource(database=str(settings.warehouse)),
        "model_registry": ModelRegistryResource(root=settings.registry_location, storage=storage),
        "landing": LandingResource(root=settings.landing_location, storage=storage),
        "lake": LakeResource(uri=settings.lake_uri or "", storage=storage),
    }
