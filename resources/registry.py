"""The model registry resource: the same folder (or S3 prefix) the ``batch-assets models`` CLI writes."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from batch_assets.scoring.registry import ModelRegistry
from resources.object_store import ObjectStoreResource


class ModelRegistryResource(dg.ConfigurableResource):
    """A model registry rooted at a local folder or an ``s3://bucket/prefix`` URI."""

    root: str = Field(description="Registry root folder or s3://bucket/prefix.")
    storage: ObjectStoreResource = Field(default_factory=ObjectStoreResource)

    def get_registry(self) -> ModelRegistry:
        return ModelRegistry(self.root, self.storage.s3_options())
