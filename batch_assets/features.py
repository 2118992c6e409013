"""Stage 2, features: ``features.customer_daily`` for day D from a trailing 30-day window of raw days."""

import dagster as dg

from batch_assets.core.names import parse_partition_date
from batch_assets.errors import RETRY_POLICY
from batch_assets.observability import Stopwatch
from batch_assets.raw import raw_transactions
from batch_assets.storage.warehouse import FEATURE_COLUMNS, replace_features_partition
from partitions import FEATURE_WINDOW_DAYS, daily_partitions, trailing_feature_window
from resources import WarehouseResource


def window_start(partition_key: str) -> str:
    """First raw partition that feature partition ``partition_key`` reads, from the partition mapping."""
    subset = trailing_feature_window.get_upstream_mapped_partitions_result_for_partitions(
        daily_partitions.subset_with_partition_keys([partition_key]), daily_partitions, daily_partitions
    ).partitions_subset
    return min(subset.get_partition_keys())


@dg.asset(
    retry_policy=RETRY_POLICY,
    key=["features", "customer_daily"],
    group_name="features",
    partitions_def=daily_partitions,
    deps=[dg.AssetDep(raw_transactions, partition_mapping=trailing_feature_window)],
    kinds={"deltalake", "duckdb", "sql"},
    owners=["team:data-platform"],
    description=(
        "One row per customer and day: spend, velocity, night/online/foreign activity over day D, 7 and 30 "
        "days, computed in DuckDB SQL from raw days D-29..D."
    ),
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn("entity_id", "BIGINT"), dg.TableColumn("partition_date", "DATE")]
            + [dg.TableColumn(c, "DOUBLE") for c in FEATURE_COLUMNS]
        ),
    },
)
def customer_daily_features(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    watch = Stopwatch()
    day = parse_partition_date(context.partition_key)
    start = parse_partition_date(window_start(context.partition_key))
    with warehouse.connect() as con:
        rows = replace_features_partition(con, warehouse.lake(), day, start, {"run_id": context.run.run_id})
    context.log.info("features %s: %d entities from raw %s..%s", day, rows, start, day)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "raw_window": f"{start}..{day}",
            "window_days": (day - start).days + 1,
            "window_complete": (day - start).days + 1 == FEATURE_WINDOW_DAYS,
            "duration_s": round(watch.seconds, 3),
            "table": "features.customer_daily",
        }
    )
