"""The model registry resource: the same folder (or S3 prefix) the ``batch-assets models`` CLI writes."""

from __future__ import annotations

from pydantic import Field

from batch_assets.scoring.registry import ModelRegistry
from resources.object_store import ObjectStoreResource


class ModelRegistryResource(ObjectStoreResource):
    """A model registry rooted at a local folder or an ``s3://bucket/prefix`` URI."""

    root: str = Field(description="Registry root folder or s3://bucket/prefix.")

    def get_registry(self) -> ModelRegistry:
        return ModelRegistry(self.root, self.s3_options())
