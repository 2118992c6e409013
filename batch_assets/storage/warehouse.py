"""The storage contracts of DESIGN.md as Delta tables, and the partition writes that keep them.

Every table lives in the lake (``batch_assets.storage.lake``): one Delta table per contract, partitioned by
its partition column. Every write replaces exactly one partition in one Delta commit, streamed from record
batches, so a re-run, a retry or a crash mid-write never leaves duplicates or half a partition, and each
commit carries its provenance (run id, model, input checksum, counts) in the Delta log. DuckDB runs the SQL
over the registered tables; values always travel as SQL parameters, and the only names put into SQL text
are validated identifiers (see ``names``).

A partition's predictions and its dead letters are two commits of two tables: the predictions first, then
the dead letters, whose commit closes the write and carries the full provenance. Every row of both carries
its run id, and the blocking completeness check fails a partition whose two halves come from different runs
(a crash between the two commits), so a mix is never published; the re-run that follows replaces both.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from torch import nn

from batch_assets.core.names import check_identifier, quote_table
from batch_assets.core.scorer import (
    DEFAULT_BATCH_MEMORY_MB,
    ScoreStats,
    batch_rows_for,
    check_columns,
    score_batches,
)
from batch_assets.storage.lake import Lake
from batch_assets.storage.store import Store

RAW_TABLE = "raw.transactions"
FEATURES_TABLE = "features.customer_daily"
PREDICTIONS_TABLE = "predictions.risk_scores"
DEAD_LETTERS_TABLE = "predictions.dead_letters"
SUMMARY_TABLE = "predictions.risk_summary"

# The demo features, in the order the demo model consumes them.
FEATURE_COLUMNS: tuple[str, ...] = (
    "txn_count_1d",
    "amount_sum_1d",
    "amount_max_1d",
    "night_txn_share_1d",
    "online_txn_share_1d",
    "new_country_txn_1d",
    "txn_count_7d",
    "amount_sum_7d",
    "txn_count_30d",
    "amount_mean_30d",
    "amount_std_30d",
    "amount_max_ratio_1d_30d",
    "distinct_merchant_categories_30d",
    "distinct_countries_30d",
    "days_since_prev_txn",
)

RAW_COLUMNS: dict[str, pa.DataType] = {
    "transaction_id": pa.string(),
    "customer_id": pa.int64(),
    "event_ts": pa.timestamp("us"),
    "amount": pa.float64(),
    "merchant_category": pa.string(),
    "country": pa.string(),
    "channel": pa.string(),
}

# The type of the ``partition_date`` column: a DATE for daily partitions, the window's start as a
# TIMESTAMP (naive UTC) for finer ones (hourly).
PARTITION_TYPES: dict[str, pa.DataType] = {"DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us")}


def partition_arrow_type(partition_type: str) -> pa.DataType:
    if partition_type not in PARTITION_TYPES:
        raise ValueError(
            f"partition column type {partition_type!r}: expected one of {', '.join(PARTITION_TYPES)}"
        )
    return PARTITION_TYPES[partition_type]


def _field(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


RAW_SCHEMA = pa.schema(
    [_field(n, t, n != "transaction_id") for n, t in RAW_COLUMNS.items()]
    + [_field("event_date", pa.date32(), False)]
)


def features_schema(key: str, columns: Sequence[str], partition_type: str = "DATE") -> pa.Schema:
    """A features table: the key, ``partition_date`` and one DOUBLE per feature column."""
    return pa.schema(
        [
            _field(check_identifier(key), pa.int64()),
            _field("partition_date", partition_arrow_type(partition_type), False),
        ]
        + [_field(check_identifier(c), pa.float64()) for c in columns]
    )


FEATURES_SCHEMA = features_schema("entity_id", FEATURE_COLUMNS)


def predictions_schema(key: str = "entity_id", partition_type: str = "DATE") -> pa.Schema:
    """The predictions contract: one row per (key, partition_date).

    Uniqueness is guaranteed by the writer (a key that occurs twice in the input is dead-lettered, never
    scored, and a partition is replaced in one commit) and verified by the blocking completeness check.
    """
    return pa.schema(
        [
            _field(check_identifier(key), pa.int64(), False),
            _field("partition_date", partition_arrow_type(partition_type), False),
            _field("score", pa.float32(), False),
            _field("model_name", pa.string(), False),
            _field("model_version", pa.string(), False),
            _field("run_id", pa.string(), False),
            _field("scored_at", pa.timestamp("us"), False),
        ]
    )


def dead_letters_schema(partition_type: str = "DATE") -> pa.Schema:
    """Rows that could not be scored, with the reason and the row itself as JSON text (key: ``entity_id``)."""
    return pa.schema(
        [
            _field("partition_date", partition_arrow_type(partition_type), False),
            _field("entity_id", pa.int64()),
            _field("reason", pa.string(), False),
            _field("payload", pa.string()),
            _field("run_id", pa.string(), False),
            _field("recorded_at", pa.timestamp("us"), False),
        ]
    )


def summary_schema(partition_type: str = "DATE") -> pa.Schema:
    """One published summary row per scored partition."""
    return pa.schema(
        [
            _field("partition_date", partition_arrow_type(partition_type), False),
            _field("model_name", pa.string(), False),
            _field("model_version", pa.string(), False),
            _field("rows", pa.int64(), False),
            _field("dead_letters", pa.int64(), False),
            _field("mean_score", pa.float64()),
            _field("p50_score", pa.float64()),
            _field("p95_score", pa.float64()),
            _field("high_risk_threshold", pa.float64(), False),
            _field("high_risk_count", pa.int64(), False),
            _field("run_id", pa.string(), False),
            _field("computed_at", pa.timestamp("us"), False),
        ]
    )


# The demo's tables, registered (empty until first written) on every warehouse connection.
CONTRACT_TABLES: dict[str, pa.Schema] = {
    RAW_TABLE: RAW_SCHEMA,
    FEATURES_TABLE: FEATURES_SCHEMA,
    PREDICTIONS_TABLE: predictions_schema(),
    DEAD_LETTERS_TABLE: dead_letters_schema(),
    SUMMARY_TABLE: summary_schema(),
}


def connect_lake(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    as_of: int | dt.datetime | None = None,
    tables: Sequence[str] | None = None,
) -> None:
    """Register every lake table on ``con`` (the demo's contract tables too, empty before their first write),
    or only ``tables`` (those of them that exist or are contract tables): a step that reads two tables need
    not build a view of every other one (a view costs one file entry per partition)."""
    if tables is None:
        lake.register(con, schemas=CONTRACT_TABLES, as_of=as_of)
        return
    wanted = [t for t in dict.fromkeys(tables) if t in CONTRACT_TABLES or lake.exists(t)]
    schemas = {t: CONTRACT_TABLES[t] for t in wanted if t in CONTRACT_TABLES}
    lake.register(con, [t for t in wanted if t not in schemas], schemas=schemas, as_of=as_of)


# -- raw ---------------------------------------------------------------------------------------------


class LandingError(ValueError):
    """Landing files for a day are missing, unreadable or break the raw contract."""


def landing_dir(landing_root: Path, day: dt.date) -> Path:
    return landing_root / "transactions" / f"event_date={day.isoformat()}"


def read_landing_day(landing_root: Path | Store, day: dt.date) -> pa.Table:
    """Read and validate one day of landing Parquet files against the raw contract.

    ``landing_root`` is a local folder or a :class:`Store` (local or ``s3://``). Each file is read and
    checked on its own, so an error names the file (and the column) at fault: a missing day folder, a
    truncated or corrupt file, a file with a missing column or a column of an incompatible type.
    Files whose names start with ``.`` or ``_`` (temporary files, markers) are ignored.
    """
    store = landing_root if isinstance(landing_root, Store) else Store(landing_root)
    rel = f"transactions/event_date={day.isoformat()}"
    folder = store.describe(rel)
    if not store.is_dir(rel):
        raise LandingError(f"no landing folder for {day}: {folder} does not exist")
    names = [n for n in store.list_files(rel) if not n.startswith((".", "_"))]
    if not names:
        raise LandingError(f"landing folder for {day} has no files: {folder}")
    tables = []
    for name in names:
        where = store.describe(f"{rel}/{name}")
        try:
            table = pq.read_table(store.path(f"{rel}/{name}"), filesystem=store.fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise LandingError(f"landing file {where} for {day} is not readable Parquet: {exc}") from exc
        for column, typ in RAW_COLUMNS.items():
            if column not in table.column_names:
                raise LandingError(
                    f"landing file {where} for {day} has no column {column!r} (has: {table.column_names})"
                )
            try:
                cast = table.column(column).cast(typ)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise LandingError(
                    f"landing column {column!r} in {where} for {day} has type "
                    f"{table.schema.field(column).type}, expected {typ}: {exc}"
                ) from exc
            table = table.set_column(table.column_names.index(column), column, cast)
        tables.append(table.select(list(RAW_COLUMNS)))
    return pa.concat_tables(tables)


def replace_raw_partition(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    day: dt.date,
    table: pa.Table,
    metadata: Mapping[str, object] | None = None,
) -> int:
    """Replace raw day ``day`` with ``table``; rows whose timestamp falls on another day are refused."""
    con.register("_landing", table)
    try:
        wrong_day = con.execute(
            "SELECT count(*) FROM _landing WHERE CAST(event_ts AS DATE) IS DISTINCT FROM $day", {"day": day}
        ).fetchall()[0][0]
    finally:
        con.unregister("_landing")
    if wrong_day:
        raise LandingError(f"{wrong_day} landing rows for {day} have an event_ts on another day")
    rows = table.append_column(
        _field("event_date", pa.date32(), False), pa.array([day] * table.num_rows, pa.date32())
    )
    lake.replace_partition(
        RAW_TABLE,
        RAW_SCHEMA,
        day,
        rows,
        {"rows": table.num_rows, **(metadata or {})},
        partition_by="event_date",
    )
    lake.register(con, [RAW_TABLE])
    return table.num_rows


# -- features ----------------------------------------------------------------------------------------

FEATURES_SELECT = """
WITH w AS (
    SELECT customer_id, event_ts, event_date, amount, merchant_category, country, channel
    FROM raw.transactions
    WHERE event_date BETWEEN $start AND $day AND customer_id IS NOT NULL
),
prior AS (  -- countries each customer used before day D, within the window
    SELECT DISTINCT customer_id, country FROM w WHERE event_date < $day
),
today AS (
    SELECT w.customer_id,
           count(*) AS n,
           sum(w.amount) AS amount_sum,
           max(w.amount) AS amount_max,
           avg(CASE WHEN hour(w.event_ts) < 6 THEN 1.0 ELSE 0.0 END) AS night_share,
           avg(CASE WHEN w.channel = 'online' THEN 1.0 ELSE 0.0 END) AS online_share,
           sum(CASE WHEN p.country IS NULL THEN 1.0 ELSE 0.0 END) AS new_country
    FROM w LEFT JOIN prior p ON p.customer_id = w.customer_id AND p.country = w.country
    WHERE w.event_date = $day
    GROUP BY w.customer_id
),
hist AS (
    SELECT customer_id,
           count(*) FILTER (WHERE event_date > $day - 7) AS txn_count_7d,
           coalesce(sum(amount) FILTER (WHERE event_date > $day - 7), 0) AS amount_sum_7d,
           count(*) AS txn_count_30d,
           avg(amount) AS amount_mean_30d,
           coalesce(stddev_samp(amount), 0) AS amount_std_30d,
           count(DISTINCT merchant_category) AS distinct_merchant_categories_30d,
           count(DISTINCT country) AS distinct_countries_30d,
           max(event_date) FILTER (WHERE event_date < $day) AS prev_day
    FROM w GROUP BY customer_id
)
SELECT h.customer_id AS entity_id,
       $day AS partition_date,
       coalesce(t.n, 0)::DOUBLE AS txn_count_1d,
       coalesce(t.amount_sum, 0)::DOUBLE AS amount_sum_1d,
       coalesce(t.amount_max, 0)::DOUBLE AS amount_max_1d,
       coalesce(t.night_share, 0)::DOUBLE AS night_txn_share_1d,
       coalesce(t.online_share, 0)::DOUBLE AS online_txn_share_1d,
       coalesce(t.new_country, 0)::DOUBLE AS new_country_txn_1d,
       h.txn_count_7d::DOUBLE AS txn_count_7d,
       h.amount_sum_7d::DOUBLE AS amount_sum_7d,
       h.txn_count_30d::DOUBLE AS txn_count_30d,
       h.amount_mean_30d::DOUBLE AS amount_mean_30d,
       h.amount_std_30d::DOUBLE AS amount_std_30d,
       (coalesce(t.amount_max, 0) / h.amount_mean_30d)::DOUBLE AS amount_max_ratio_1d_30d,
       h.distinct_merchant_categories_30d::DOUBLE AS distinct_merchant_categories_30d,
       h.distinct_countries_30d::DOUBLE AS distinct_countries_30d,
       coalesce(date_diff('day', h.prev_day, $day), $window)::DOUBLE AS days_since_prev_txn
FROM hist h LEFT JOIN today t USING (customer_id)
"""


def replace_features_partition(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    day: dt.date,
    window_start: dt.date,
    metadata: Mapping[str, object] | None = None,
) -> int:
    """Recompute features for ``day`` from raw days ``window_start..day``; returns the row count.

    One row per customer with at least one transaction in the window. ``window_start`` comes from the
    asset's partition mapping, so the SQL and the Dagster lineage agree on the window. The SQL result is
    streamed into the partition's commit.
    """
    params = {"day": day, "start": window_start, "window": (day - window_start).days + 1}
    reader = con.sql(FEATURES_SELECT, params=params).to_arrow_reader(65_536)
    counted = _counting(reader)
    lake.replace_partition(FEATURES_TABLE, FEATURES_SCHEMA, day, counted, metadata)
    lake.register(con, [FEATURES_TABLE])
    return counted.rows


class _counting:
    """An iterable of the batches of ``reader`` that counts the rows it passed on."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.reader, self.rows = reader, 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self.reader:
            self.rows += batch.num_rows
            yield batch


# -- predictions -------------------------------------------------------------------------------------


def replace_predictions_partition(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    day: dt.date,
    module: nn.Module,
    features_table: str,
    key: str,
    feature_columns: Sequence[str],
    output_table: str,
    model_name: str,
    model_version: str,
    run_id: str,
    scored_at: dt.datetime,
    model_sha256: str = "",
    dead_letter_table: str = DEAD_LETTERS_TABLE,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    batch_rows: int | None = None,
    batch_memory_mb: int = DEFAULT_BATCH_MEMORY_MB,
    forward_rows: int | None = None,
    device: str = "cpu",
    partition_type: str = "DATE",
    refresh: bool = True,
) -> ScoreStats:
    """Score features ``day`` and replace that partition of ``output_table`` and of its dead letters.

    ``day`` is the partition's ``partition_date`` value: a date, or the window start (a naive UTC
    datetime) when ``partition_type`` is TIMESTAMP.

    Features stream from DuckDB in storage order (no sort: memory stays bounded by the batch size,
    ``batch_rows`` or else sized from ``batch_memory_mb``) through the scorer straight into the predictions
    commit. Dead letters are spooled to a local Parquet file meanwhile and committed second, with the
    write's full provenance (the input checksum is known only once every row is read). Keys that occur
    more than once are found first with one aggregate over the key column. With ``refresh`` (the default),
    both tables are registered on ``con`` again afterwards, so later SQL on it sees the new partition; a
    loop over many partitions whose connection reads nothing back passes False (a whole-table view costs
    one file entry per partition to build).
    """
    check_identifier(key)
    for col in feature_columns:
        check_identifier(col)
    src = quote_table(features_table)
    check_columns(con.sql(f"SELECT * FROM {src} LIMIT 0").to_arrow_table().schema, key, feature_columns)
    out_schema = predictions_schema(key, partition_type)
    dead_schema = dead_letters_schema(partition_type)
    select = (
        f'SELECT "{key}", '
        + ", ".join(f'"{c}"' for c in feature_columns)
        + f" FROM {src} WHERE partition_date = $day"
    )
    duplicates = [
        r[0]
        for r in con.execute(
            f'SELECT "{key}" FROM {src} WHERE partition_date = $day AND "{key}" IS NOT NULL '
            f'GROUP BY "{key}" HAVING count(*) > 1',
            {"day": day},
        ).fetchall()
    ]
    stats = ScoreStats()
    rows_per_batch = batch_rows or batch_rows_for(len(feature_columns), batch_memory_mb)
    provenance = {
        "run_id": run_id,
        "model_name": model_name,
        "model_version": model_version,
        "model_sha256": model_sha256,
    }
    part_type = partition_arrow_type(partition_type)
    with tempfile.TemporaryDirectory(prefix="batch-assets-dead-") as spool_dir:
        spool_path = Path(spool_dir) / "dead.parquet"
        spool: pq.ParquetWriter | None = None
        reader = con.sql(select, params={"day": day}).to_arrow_reader(rows_per_batch)

        def scored() -> Iterator[pa.RecordBatch]:
            nonlocal spool
            for part in score_batches(
                module,
                reader,
                key=key,
                features=feature_columns,
                stats=stats,
                limits=limits,
                duplicate_keys=duplicates,
                forward_rows=forward_rows,
                device=device,
            ):
                n = part.scored.num_rows
                if n:
                    yield pa.RecordBatch.from_arrays(
                        [
                            part.scored.column(key).combine_chunks(),
                            pa.repeat(pa.scalar(day, part_type), n),
                            part.scored.column("score").combine_chunks(),
                            pa.repeat(pa.scalar(model_name), n),
                            pa.repeat(pa.scalar(model_version), n),
                            pa.repeat(pa.scalar(run_id), n),
                            pa.repeat(pa.scalar(scored_at, pa.timestamp("us")), n),
                        ],
                        schema=out_schema,
                    )
                if part.dead is not None and part.dead.num_rows:
                    m = part.dead.num_rows
                    dead = pa.table(
                        [
                            pa.repeat(pa.scalar(day, part_type), m),
                            part.dead.column(key),
                            part.dead.column("reason"),
                            part.dead.column("payload"),
                            pa.repeat(pa.scalar(run_id), m),
                            pa.repeat(pa.scalar(scored_at, pa.timestamp("us")), m),
                        ],
                        schema=dead_schema,
                    )
                    if spool is None:
                        spool = pq.ParquetWriter(spool_path, dead_schema)
                    spool.write_table(dead)

        try:
            lake.replace_partition(output_table, out_schema, day, scored(), provenance)
        finally:
            reader.close()
            if spool is not None:
                spool.close()
        dead_rows = pq.ParquetFile(spool_path).iter_batches(65_536) if spool is not None else iter(())
        lake.replace_partition(
            dead_letter_table,
            dead_schema,
            day,
            dead_rows,
            {
                **provenance,
                "closes": output_table,
                "input_sha256": stats.input_sha256,
                "rows_read": stats.rows_read,
                "rows_scored": stats.rows_scored,
                "dead_letters": stats.dead_letters,
            },
        )
    if refresh:
        lake.register(con, [output_table, dead_letter_table])
    return stats


def replace_summary_partition(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    day: dt.date,
    predictions_table: str,
    high_risk_threshold: float,
    run_id: str,
    computed_at: dt.datetime,
    summary_table: str = SUMMARY_TABLE,
    dead_letter_table: str = DEAD_LETTERS_TABLE,
    partition_type: str = "DATE",
    refresh: bool = True,
) -> dict[str, object]:
    """Replace the daily summary of the scored partition ``day``; returns the summary row. ``refresh``:
    as for :func:`replace_predictions_partition`."""
    src, dead = quote_table(predictions_table), quote_table(dead_letter_table)
    params = {"day": day, "threshold": high_risk_threshold, "run_id": run_id, "at": computed_at}
    row = con.sql(
        f"""SELECT $day AS partition_date, any_value(model_name) AS model_name,
               any_value(model_version) AS model_version, count(*) AS rows,
               (SELECT count(*) FROM {dead} WHERE partition_date = $day) AS dead_letters,
               avg(score) AS mean_score, quantile_cont(score, 0.5) AS p50_score,
               quantile_cont(score, 0.95) AS p95_score, $threshold AS high_risk_threshold,
               count(*) FILTER (WHERE score >= $threshold) AS high_risk_count, $run_id AS run_id,
               $at AS computed_at
        FROM {src} WHERE partition_date = $day
        HAVING count(*) > 0""",
        params=params,
    ).to_arrow_table()
    if not row.num_rows:
        raise ValueError(
            f"no scored rows in {predictions_table} for {day}: materialize its predictions first"
        )
    lake.replace_partition(summary_table, summary_schema(partition_type), day, row, {"run_id": run_id})
    if refresh:
        lake.register(con, [summary_table])
    return row.to_pylist()[0]
