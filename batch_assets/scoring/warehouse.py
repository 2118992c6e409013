"""The DuckDB storage contracts of DESIGN.md and the partition writes that keep them.

Every write replaces exactly one partition inside one transaction (delete, then insert), so a re-run, a
retry or a crash mid-write never leaves duplicates or half a partition. Values always travel as SQL
parameters; the only names put into SQL text are validated identifiers (see ``names``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from torch import nn

from batch_assets.scoring.names import check_identifier, check_table, quote_table
from batch_assets.scoring.scorer import (
    DEFAULT_BATCH_MEMORY_MB,
    ScoreStats,
    batch_rows_for,
    check_columns,
    score_batches,
)
from batch_assets.scoring.store import Store

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

DDL = [
    "CREATE SCHEMA IF NOT EXISTS raw",
    "CREATE SCHEMA IF NOT EXISTS features",
    "CREATE SCHEMA IF NOT EXISTS predictions",
    """CREATE TABLE IF NOT EXISTS raw.transactions (
        transaction_id VARCHAR NOT NULL, customer_id BIGINT, event_ts TIMESTAMP, amount DOUBLE,
        merchant_category VARCHAR, country VARCHAR, channel VARCHAR, event_date DATE NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS features.customer_daily (entity_id BIGINT, partition_date DATE NOT NULL, "
    + ", ".join(f"{c} DOUBLE" for c in FEATURE_COLUMNS)
    + ")",
]


# The SQL type of the ``partition_date`` column: a DATE for daily partitions, the window's start as a
# TIMESTAMP for finer ones (hourly).
PARTITION_TYPES = ("DATE", "TIMESTAMP")


def _partition_type(value: str) -> str:
    if value not in PARTITION_TYPES:
        raise ValueError(f"partition column type {value!r}: expected one of {', '.join(PARTITION_TYPES)}")
    return value


def create_schema_of(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Create the schema of a ``schema.table`` name if it does not exist yet."""
    schema, _ = check_table(table)
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def predictions_ddl(table: str, key: str = "entity_id", partition_type: str = "DATE") -> str:
    """The predictions contract for ``table``: one row per (key, partition_date).

    Uniqueness is guaranteed by the writer (a key that occurs twice in the input is dead-lettered, never
    scored, and a partition is replaced in one transaction) and verified by the blocking completeness check
    of every partition. There is deliberately no PRIMARY KEY: DuckDB keeps an ART index over every row of
    the table in memory, which made each 1M-row partition write 4x slower with 5 days of history (1.3 s
    instead of 0.3 s) and grows with every day kept.
    """
    k = check_identifier(key)
    return f"""CREATE TABLE IF NOT EXISTS {quote_table(table)} (
        "{k}" BIGINT NOT NULL, partition_date {_partition_type(partition_type)} NOT NULL, score REAL NOT NULL,
        model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
        scored_at TIMESTAMP NOT NULL)"""


def summary_ddl(table: str, partition_type: str = "DATE") -> str:
    """One published summary row per scored partition."""
    return f"""CREATE TABLE IF NOT EXISTS {quote_table(table)} (
        partition_date {_partition_type(partition_type)} PRIMARY KEY, model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL,
        rows BIGINT NOT NULL, dead_letters BIGINT NOT NULL, mean_score DOUBLE, p50_score DOUBLE,
        p95_score DOUBLE, high_risk_threshold DOUBLE NOT NULL, high_risk_count BIGINT NOT NULL,
        run_id VARCHAR NOT NULL, computed_at TIMESTAMP NOT NULL)"""


def dead_letters_ddl(table: str, partition_type: str = "DATE") -> str:
    """Rows that could not be scored, with the reason and the row itself (the key goes to ``entity_id``)."""
    return f"""CREATE TABLE IF NOT EXISTS {quote_table(table)} (
        partition_date {_partition_type(partition_type)} NOT NULL, entity_id BIGINT, reason VARCHAR NOT NULL, payload JSON,
        run_id VARCHAR NOT NULL, recorded_at TIMESTAMP NOT NULL)"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the contract tables that do not exist yet (idempotent)."""
    for stmt in [
        *DDL,
        predictions_ddl(PREDICTIONS_TABLE),
        dead_letters_ddl(DEAD_LETTERS_TABLE),
        summary_ddl(SUMMARY_TABLE),
    ]:
        con.execute(stmt)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


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


def replace_raw_partition(con: duckdb.DuckDBPyConnection, day: dt.date, table: pa.Table) -> int:
    """Replace raw day ``day`` with ``table``; rows whose timestamp falls on another day are refused."""
    con.register("_landing", table)
    try:
        wrong_day = con.execute(
            "SELECT count(*) FROM _landing WHERE CAST(event_ts AS DATE) IS DISTINCT FROM $day", {"day": day}
        ).fetchall()[0][0]
        if wrong_day:
            raise LandingError(f"{wrong_day} landing rows for {day} have an event_ts on another day")
        with transaction(con):
            con.execute("DELETE FROM raw.transactions WHERE event_date = $day", {"day": day})
            con.execute(
                "INSERT INTO raw.transactions SELECT transaction_id, customer_id, event_ts, amount, "
                "merchant_category, country, channel, $day FROM _landing",
                {"day": day},
            )
    finally:
        con.unregister("_landing")
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


def replace_features_partition(con: duckdb.DuckDBPyConnection, day: dt.date, window_start: dt.date) -> int:
    """Recompute features for ``day`` from raw days ``window_start..day``; returns the row count.

    One row per customer with at least one transaction in the window. ``window_start`` comes from the
    asset's partition mapping, so the SQL and the Dagster lineage agree on the window.
    """
    params = {"day": day, "start": window_start, "window": (day - window_start).days + 1}
    with transaction(con):
        con.execute("DELETE FROM features.customer_daily WHERE partition_date = $day", {"day": day})
        con.execute(
            f"INSERT INTO features.customer_daily (entity_id, partition_date, {', '.join(FEATURE_COLUMNS)}) "
            + FEATURES_SELECT,
            params,
        )
        return con.execute(
            "SELECT count(*) FROM features.customer_daily WHERE partition_date = $day", {"day": day}
        ).fetchall()[0][0]


# -- predictions -------------------------------------------------------------------------------------


def replace_predictions_partition(
    con: duckdb.DuckDBPyConnection,
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
    dead_letter_table: str = DEAD_LETTERS_TABLE,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    batch_rows: int | None = None,
    batch_memory_mb: int = DEFAULT_BATCH_MEMORY_MB,
    forward_rows: int | None = None,
    device: str = "cpu",
    partition_type: str = "DATE",
) -> ScoreStats:
    """Score features ``day`` and replace that partition of ``output_table`` and its dead letters.

    ``day`` is the partition's ``partition_date`` value: a date, or the window start (a naive UTC
    datetime) when ``partition_type`` is TIMESTAMP.

    Features stream from a second cursor, in storage order (no sort: memory stays bounded by the batch size,
    ``batch_rows`` or else sized from ``batch_memory_mb``), while the write transaction is open. Keys that
    occur more than once are found first with one aggregate over the key column. The commit happens only
    after every batch is written: readers see the old partition or the new one, never a mix.
    """
    check_identifier(key)
    for col in feature_columns:
        check_identifier(col)
    src, out, dead = quote_table(features_table), quote_table(output_table), quote_table(dead_letter_table)
    check_columns(con.sql(f"SELECT * FROM {src} LIMIT 0").to_arrow_table().schema, key, feature_columns)
    for table in (output_table, dead_letter_table):
        create_schema_of(con, table)
    con.execute(predictions_ddl(output_table, key, partition_type))
    con.execute(dead_letters_ddl(dead_letter_table, partition_type))
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
    reader_con = con.cursor()
    common = {
        "day": day,
        "model_name": model_name,
        "version": model_version,
        "run_id": run_id,
        "at": scored_at,
    }
    rows_per_batch = batch_rows or batch_rows_for(len(feature_columns), batch_memory_mb)
    reader = None
    try:
        reader = reader_con.sql(select, params={"day": day}).to_arrow_reader(rows_per_batch)
        with transaction(con):
            con.execute(f"DELETE FROM {out} WHERE partition_date = $day", {"day": day})
            con.execute(f"DELETE FROM {dead} WHERE partition_date = $day", {"day": day})
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
                con.register("_scored", part.scored)
                con.execute(
                    f'INSERT INTO {out} SELECT "{key}", $day, score, $model_name, $version, $run_id, $at '
                    "FROM _scored",
                    common,
                )
                con.unregister("_scored")
                if part.dead is not None:
                    con.register("_dead", part.dead)
                    con.execute(
                        f'INSERT INTO {dead} SELECT $day, "{key}", reason, payload::JSON, '
                        "$run_id, $at FROM _dead",
                        {k: common[k] for k in ("day", "run_id", "at")},
                    )
                    con.unregister("_dead")
    finally:
        if reader is not None:
            reader.close()
        reader_con.close()
    return stats


def replace_summary_partition(
    con: duckdb.DuckDBPyConnection,
    *,
    day: dt.date,
    predictions_table: str,
    high_risk_threshold: float,
    run_id: str,
    computed_at: dt.datetime,
    summary_table: str = SUMMARY_TABLE,
    dead_letter_table: str = DEAD_LETTERS_TABLE,
    partition_type: str = "DATE",
) -> dict[str, object]:
    """Replace the daily summary of the scored partition ``day``; returns the summary row."""
    src, out, dead = (
        quote_table(predictions_table),
        quote_table(summary_table),
        quote_table(dead_letter_table),
    )
    create_schema_of(con, summary_table)
    con.execute(summary_ddl(summary_table, partition_type))
    params = {"day": day, "threshold": high_risk_threshold, "run_id": run_id, "at": computed_at}
    with transaction(con):
        con.execute(f"DELETE FROM {out} WHERE partition_date = $day", {"day": day})
        con.execute(
            f"""INSERT INTO {out}
            SELECT $day, any_value(model_name), any_value(model_version), count(*),
                   (SELECT count(*) FROM {dead} WHERE partition_date = $day),
                   avg(score), quantile_cont(score, 0.5), quantile_cont(score, 0.95), $threshold,
                   count(*) FILTER (WHERE score >= $threshold), $run_id, $at
            FROM {src} WHERE partition_date = $day
            HAVING count(*) > 0""",
            params,
        )
    row = (
        con.sql(f"SELECT * FROM {out} WHERE partition_date = $day", params={"day": day})
        .to_arrow_table()
        .to_pylist()
    )
    if not row:
        raise ValueError(
            f"no scored rows in {predictions_table} for {day}: materialize its predictions first"
        )
    return row[0]
