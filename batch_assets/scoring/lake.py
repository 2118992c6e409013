"""Optional Parquet export of scored partitions to a lake (a local folder or ``s3://bucket/prefix``).

Layout of one partition of table ``schema.table`` under the lake root::

    predictions/<table>/partition_date=YYYY-MM-DD/_current.json                    the pointer (commit marker)
    predictions/<table>/partition_date=YYYY-MM-DD/write=<run id>-<id>/part-00000.parquet

A write puts its files under a fresh ``write=...`` prefix, then replaces ``_current.json`` (one PUT on S3,
an atomic rename locally, so readers see the old or the new pointer, never half of one), then deletes every
other ``write=...`` prefix of the partition (older writes, and leftovers of crashed ones).

**Reader contract.** Resolve ``_current.json`` of a partition and read exactly the files it lists
(:func:`read_partition` does this). A partition without a pointer does not exist. Files not listed are
garbage being deleted; a reader that raced a re-run and finds a listed file gone re-resolves the pointer.
Once a write has finished, only the current files are left, so a plain hive-partitioned scan of
``predictions/<table>/`` sees each partition once, as long as no write is in flight.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from batch_assets.scoring.names import check_table, quote_table
from batch_assets.scoring.store import Store

POINTER = "_current.json"
FORMAT = "batch-assets-lake/v1"


class LakeError(Exception):
    pass


def partition_rel(table: str, day: dt.date) -> str:
    schema, name = check_table(table)
    return f"{schema}/{name}/partition_date={day.isoformat()}"


def write_partition(store: Store, table: str, day: dt.date, data: pa.Table, run_id: str) -> dict[str, Any]:
    """Replace partition ``day`` of ``table`` in the lake with ``data``; returns the new pointer."""
    prefix = partition_rel(table, day)
    write_dir = f"write={run_id}-{uuid.uuid4().hex[:8]}"
    file_name = "part-00000.parquet"
    buf = io.BytesIO()
    pq.write_table(data, buf, compression="zstd")
    store.write_bytes(f"{prefix}/{write_dir}/{file_name}", buf.getvalue())
    pointer = {
        "format": FORMAT,
        "table": table,
        "partition_date": day.isoformat(),
        "run_id": run_id,
        "files": [f"{write_dir}/{file_name}"],
        "rows": data.num_rows,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    store.write_text(f"{prefix}/{POINTER}", json.dumps(pointer, sort_keys=True))  # the atomic flip
    for old in store.list_dirs(prefix):
        if old.startswith("write=") and old != write_dir:
            store.delete_dir(f"{prefix}/{old}")
    return pointer


def read_pointer(store: Store, table: str, day: dt.date) -> dict[str, Any] | None:
    rel = f"{partition_rel(table, day)}/{POINTER}"
    return json.loads(store.read_text(rel)) if store.is_file(rel) else None


def read_partition(store: Store, table: str, day: dt.date) -> pa.Table:
    """The current content of one partition (see the reader contract)."""
    pointer = read_pointer(store, table, day)
    if pointer is None:
        raise LakeError(
            f"{store.describe(partition_rel(table, day))} has no {POINTER}: partition not written"
        )
    prefix = partition_rel(table, day)
    tables = [pq.read_table(store.path(f"{prefix}/{f}"), filesystem=store.fs) for f in pointer["files"]]
    return pa.concat_tables(tables)


def export_predictions_partition(
    con: duckdb.DuckDBPyConnection, store: Store, table: str, day: dt.date, run_id: str
) -> dict[str, Any]:
    """Export partition ``day`` of warehouse table ``table`` to the lake, atomically."""
    data = con.execute(
        f"SELECT * FROM {quote_table(table)} WHERE partition_date = $day ORDER BY ALL",  # noqa: S608 - validated name
        {"day": day},
    ).to_arrow_table()
    return write_partition(store, table, day, data, run_id)
