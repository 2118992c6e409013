"""The feature SQL on a tiny hand-made raw table with values worked out by hand, read from and written to
Delta tables of a lake."""

import datetime as dt
import math
from itertools import groupby

import duckdb
import pyarrow as pa
import pytest

from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import (
    FEATURE_COLUMNS,
    FEATURES_TABLE,
    RAW_COLUMNS,
    connect_lake,
    replace_features_partition,
    replace_raw_partition,
)

D = dt.date(2026, 9, 10)
ROWS = [
    # id, customer, ts, amount, mcc, country, channel
    ("t1", 1, "2026-09-10 02:00:00", 100.0, "electronics", "US", "online"),
    ("t2", 1, "2026-09-10 14:00:00", 50.0, "restaurant", "FR", "pos"),
    ("t3", 1, "2026-09-05 12:00:00", 30.0, "grocery", "US", "pos"),
    ("t4", 1, "2026-08-20 12:00:00", 20.0, "grocery", "US", "pos"),
    ("t5", 2, "2026-09-01 10:00:00", 40.0, "fuel", "DE", "pos"),
    ("t6", 3, "2026-08-01 10:00:00", 10.0, "fuel", "DE", "pos"),  # before the window
    ("t7", 4, "2026-09-11 10:00:00", 10.0, "fuel", "DE", "pos"),  # after day D
]


def raw_day(rows) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    values = dict(zip(RAW_COLUMNS, columns, strict=True))
    values["event_ts"] = [dt.datetime.fromisoformat(ts) for ts in values["event_ts"]]
    return pa.table({name: pa.array(values[name], typ) for name, typ in RAW_COLUMNS.items()})


@pytest.fixture
def lake(tmp_path):
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def con(lake):
    con = duckdb.connect()
    connect_lake(con, lake)
    for day, rows in groupby(sorted(ROWS, key=lambda r: r[2]), key=lambda r: r[2][:10]):
        replace_raw_partition(con, lake, dt.date.fromisoformat(day), raw_day(list(rows)))
    yield con
    con.close()


def features(con, day):
    cols = ", ".join(FEATURE_COLUMNS)
    rows = con.execute(
        f"SELECT entity_id, {cols} FROM features.customer_daily WHERE partition_date = ? ORDER BY entity_id",
        [day],
    ).fetchall()
    return {r[0]: dict(zip(FEATURE_COLUMNS, r[1:], strict=True)) for r in rows}


def test_features_match_hand_computed_values(con, lake):
    n = replace_features_partition(con, lake, D, D - dt.timedelta(days=29))
    got = features(con, D)
    assert n == 2 and set(got) == {1, 2}  # customer 3 is outside the window, 4 is in the future
    c1 = got[1]
    assert c1["txn_count_1d"] == 2
    assert c1["amount_sum_1d"] == 150
    assert c1["amount_max_1d"] == 100
    assert c1["night_txn_share_1d"] == 0.5
    assert c1["online_txn_share_1d"] == 0.5
    assert c1["new_country_txn_1d"] == 1  # FR was never used before day D; US was
    assert c1["txn_count_7d"] == 3 and c1["amount_sum_7d"] == 180
    assert c1["txn_count_30d"] == 4 and c1["amount_mean_30d"] == 50
    assert c1["amount_std_30d"] == pytest.approx(math.sqrt(3800 / 3))
    assert c1["amount_max_ratio_1d_30d"] == 2
    assert c1["distinct_merchant_categories_30d"] == 3
    assert c1["distinct_countries_30d"] == 2
    assert c1["days_since_prev_txn"] == 5
    c2 = got[2]
    assert (c2["txn_count_1d"], c2["amount_sum_1d"], c2["amount_max_1d"]) == (0, 0, 0)
    assert (c2["txn_count_7d"], c2["txn_count_30d"], c2["amount_mean_30d"]) == (0, 1, 40)
    assert c2["amount_std_30d"] == 0 and c2["amount_max_ratio_1d_30d"] == 0
    assert c2["days_since_prev_txn"] == 9
    # what DuckDB read back is what the Delta table holds
    stored = lake.table(FEATURES_TABLE).to_pyarrow_table(filters=[("partition_date", "=", D)])
    assert stored.num_rows == 2 and sorted(stored.column("entity_id").to_pylist()) == [1, 2]


def test_window_start_limits_history(con, lake):
    replace_features_partition(con, lake, D, dt.date(2026, 9, 1))  # clipped window: t4 (08-20) is out
    c1 = features(con, D)[1]
    assert c1["txn_count_30d"] == 3
    assert c1["amount_mean_30d"] == pytest.approx(60)


def test_recomputing_a_partition_replaces_it(con, lake):
    replace_features_partition(con, lake, D, D - dt.timedelta(days=29), {"run_id": "a"})
    replace_features_partition(con, lake, D, D - dt.timedelta(days=29), {"run_id": "b"})
    assert con.execute("SELECT count(*) FROM features.customer_daily").fetchone()[0] == 2
    assert lake.table(FEATURES_TABLE).to_pyarrow_table().num_rows == 2
    writes = lake.history(FEATURES_TABLE, partition=D.isoformat())
    assert [w.metadata["run_id"] for w in writes] == ["b", "a"]  # newest first, one commit per write
    assert writes[0].rows_added == 2


def test_other_partitions_are_untouched_by_a_recompute(con, lake):
    replace_features_partition(con, lake, D, D - dt.timedelta(days=29))
    replace_features_partition(con, lake, D - dt.timedelta(days=1), D - dt.timedelta(days=30))
    before = features(con, D - dt.timedelta(days=1))
    replace_features_partition(con, lake, D, D - dt.timedelta(days=29))
    assert features(con, D - dt.timedelta(days=1)) == before
