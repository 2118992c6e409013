"""The optional lake: scored partitions exported as Parquet (a local folder or ``s3://bucket/prefix``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
from pydantic import Field

from batch_assets.scoring.lake import export_predictions_partition
from resources.object_store import ObjectStoreResource


class LakeResource(ObjectStoreResource):
    """Where scored partitions are exported; an empty ``uri`` (the embedded default) exports nothing."""

    uri: str = Field(default="", description="Lake root folder or s3://bucket/prefix; empty: no export.")

    def export(
        self, con: duckdb.DuckDBPyConnection, table: str, day: dt.date, run_id: str
    ) -> dict[str, Any] | None:
        if not self.uri:
            return None
        return export_predictions_partition(con, self.store_at(self.uri), table, day, run_id)
