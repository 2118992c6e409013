"""Where landing files arrive: one folder per day under ``root`` (a local folder or ``s3://`` URI)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from batch_assets.storage.store import Store
from resources.object_store import ObjectStoreResource


class LandingResource(ObjectStoreResource):
    """The landing zone of raw files (a local folder in the embedded default, or an S3 prefix)."""

    root: str = Field(
        description="Landing root folder or s3://bucket/prefix; transactions/event_date=YYYY-MM-DD/*.parquet "
        "below it."
    )

    @property
    def path(self) -> Path:
        return Path(self.root)

    def store(self) -> Store:
        return self.store_at(self.root)
