"""The model registry resource: the same folder the ``batch-assets models`` CLI writes."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from batch_assets.scoring.registry import ModelRegistry


class ModelRegistryResource(dg.ConfigurableResource):
    """A model registry rooted at a local folder."""

    root: str = Field(description="Registry root folder.")

    def get_registry(self) -> ModelRegistry:
        return ModelRegistry(self.root)
