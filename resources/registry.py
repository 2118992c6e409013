"""The model registry resource: the same folder (or S3 prefix) the ``batch-assets models`` CLI writes."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from batch_assets.core.registry import ModelRegistry
from resources.object_store import ObjectStoreResource


class RegistryUnavailable(OSError):
    """The registry root cannot be reached right now (an unmounted volume, a folder being restored).

    An ``OSError``, not a ``RegistryError``: the step is retried by the assets' retry policy instead of
    failing at once as it does for a model that is really missing.
    """


class ModelRegistryResource(ObjectStoreResource):
    """A model registry rooted at a local folder or an ``s3://bucket/prefix`` URI."""

    root: str = Field(description="Registry root folder or s3://bucket/prefix.")

    def get_registry(self) -> ModelRegistry:
        if not self.root.startswith("s3://") and not Path(self.root).is_dir():
            raise RegistryUnavailable(f"model registry root {self.root} is not reachable (no such folder)")
        return ModelRegistry(self.root, self.s3_options())
