"""Stage 1, raw: landing Parquet files of one day loaded into the Delta table ``raw.transactions``."""

import dagster as dg

from batch_assets.core.names import parse_partition_date
from batch_assets.errors import RETRY_POLICY, permanent_errors
from batch_assets.observability import Stopwatch
from batch_assets.storage.warehouse import read_landing_day, replace_raw_partition
from partitions import daily_partitions
from resources import LandingResource, WarehouseResource


@dg.asset(
    retry_policy=RETRY_POLICY,
    key=["raw", "transactions"],
    group_name="raw",
    partitions_def=daily_partitions,
    kinds={"deltalake", "parquet"},
    owners=["team:data-platform"],
    description=(
        "Card transactions of one day, loaded from landing/transactions/event_date=YYYY-MM-DD/*.parquet into "
        "the Delta table raw.transactions. The day is replaced in one commit; files that break the contract fail the "
        "partition with a message naming the column."
    ),
)
def raw_transactions(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
) -> dg.MaterializeResult:
    watch = Stopwatch()
    day = parse_partition_date(context.partition_key)
    with permanent_errors():
        table = read_landing_day(landing.store(), day)
    with warehouse.connect() as con, permanent_errors():
        rows = replace_raw_partition(con, warehouse.lake(), day, table, {"run_id": context.run.run_id})
    context.log.info("raw %s: %d transactions loaded", day, rows)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "duration_s": round(watch.seconds, 3),
            "table": "raw.transactions",
        }
    )
