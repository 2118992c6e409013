"""Feature tables loaded from Parquet files: one folder per partition, declared by a scored-dataset spec.

A spec that names ``features.files`` (a folder template such as ``data/date={date}/hour={hour}``) gets a
features asset that reads that partition's folder, checks that the key and every declared feature column
are there and numeric, and replaces the partition of the features table in one Delta commit. Failures name
the folder or the column and leave the previous partition untouched.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import LandingError, features_schema

# Placeholders a folder template may use.
PLACEHOLDERS = ("partition", "date", "hour", "landing")


def template_fields(template: str) -> list[str]:
    """The placeholders used by ``template``; an unknown one or a malformed brace raises ValueError."""
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"malformed folder template {template!r}: {exc}") from exc
    unknown = sorted({u for u in used if u not in PLACEHOLDERS})
    if unknown:
        raise ValueError(
            f"folder template {template!r} uses unknown placeholder(s) {unknown}; known: {list(PLACEHOLDERS)}"
        )
    return used


def partition_folder(
    template: str, *, base: Path, landing: Path, partition_key: str, start: dt.datetime
) -> Path:
    """The folder of one partition: ``template`` filled in, relative paths resolved against ``base``."""
    template_fields(template)
    filled = template.format(
        partition=partition_key,
        date=start.strftime("%Y-%m-%d"),
        hour=start.strftime("%H"),
        landing=str(landing),
    )
    path = Path(filled).expanduser()
    return path if path.is_absolute() else base / path


def read_feature_files(folder: Path, *, key: str, columns: Sequence[str]) -> pa.Table:
    """Key and feature columns of every Parquet file in ``folder`` (key as int64, features as float64)."""
    if not folder.is_dir():
        raise LandingError(f"no feature files: folder {folder} does not exist")
    try:
        table = pads.dataset(folder, format="parquet").to_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise LandingError(f"feature files in {folder} are unreadable: {exc}") from exc
    wanted = {key: pa.int64(), **{c: pa.float64() for c in columns}}
    out = {}
    for name, typ in wanted.items():
        role = "key column" if name == key else "feature column"
        if name not in table.column_names:
            raise LandingError(
                f"feature files in {folder} have no {role} {name!r} (has: {sorted(table.column_names)})"
            )
        column = table.column(name)
        ok = pa.types.is_integer(column.type) if name == key else _numeric(column.type)
        if not ok:
            expected = "an integer" if name == key else "a number"
            raise LandingError(f"{role} {name!r} in {folder} has type {column.type}, expected {expected}")
        out[name] = column.cast(typ)
    return pa.table(out)


def _numeric(t: pa.DataType) -> bool:
    return (
        pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)
    )


def replace_feature_partition(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    table: str,
    key: str,
    columns: Sequence[str],
    partition_type: str,
    value: dt.date,
    rows: pa.Table,
    metadata: Mapping[str, object] | None = None,
) -> int:
    """Replace partition ``value`` of ``table`` with ``rows`` (key + columns) in one Delta commit."""
    schema = features_schema(key, columns, partition_type)
    data = rows.append_column(
        schema.field("partition_date"),
        pa.repeat(pa.scalar(value, schema.field("partition_date").type), rows.num_rows),
    )
    lake.replace_partition(table, schema, value, data, {"rows": rows.num_rows, **(metadata or {})})
    lake.register(con, [table])
    return rows.num_rows
