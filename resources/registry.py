"""The model registry resource: the same folder the ``batch-assets models`` CLI writes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from batch_assets.scoring.registry import ModelRegistry


class RegistryUnavailable(OSError):
    """The registry root cannot be reached right now (an unmounted volume, a folder being restored).

    An ``OSError``, not a ``RegistryError``: the step is retried by the assets' retry policy instead of
    failing at once as it does for a model that is really missing.
    """


class ModelRegistryResource(dg.ConfigurableResource):
    """A model registry rooted at a local folder."""

    root: str = Field(description="Registry root folder.")

    def get_registry(self) -> ModelRegistry:
        if not Path(self.root).is_dir():
            raise RegistryUnavailable(f"model registry root {self.root} is not reachable (no such folder)")
        return ModelRegistry(self.root)
