"""The check table on its own: dagster-free judges over a plain DuckDB connection, one outcome per check."""

import datetime as dt
import subprocess
import sys
from types import SimpleNamespace

import duckdb
import pytest

from batch_assets.core.check_table import (
    BLOCKING_PREDICTION_CHECKS,
    CHECKS,
    PREDICTIONS,
    PartitionView,
    Scored,
    snapshot_partition,
)
from batch_assets.core.registry import ModelNotFound
from batch_assets.core.spec_file import parse_spec
from batch_assets.sensors import BLOCKING_CHECKS

DAY = dt.date(2026, 10, 1)
SPEC = parse_spec(
    {
        "name": "scores",
        "features": {
            "asset": "features/f",
            "table": "features.f",
            "key": "entity_id",
            "columns": {"x": {"ge": 0}},
        },
        "model": {"name": "m"},
        "output": {"table": "predictions.p", "dead_letter_table": "predictions.dl"},
    }
)
MODEL = SimpleNamespace(
    version="1", sha256="ab" * 32, output_range=(0.0, 1.0), manifest={}, feature_names=["x"]
)


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features; CREATE SCHEMA predictions")
    con.execute(
        "CREATE TABLE features.f AS SELECT range::BIGINT AS entity_id, $d::DATE AS partition_date, "
        "range::DOUBLE AS x FROM range(10)",
        {"d": DAY},
    )
    con.execute(
        "CREATE TABLE predictions.p AS SELECT entity_id, partition_date, 0.5::REAL AS score, 'm' AS model_name, "
        "'1' AS model_version, 'run-1' AS run_id, now()::TIMESTAMP AS scored_at FROM features.f"
    )
    con.execute(
        "CREATE TABLE predictions.dl (partition_date DATE, entity_id BIGINT, reason VARCHAR, payload JSON, "
        "run_id VARCHAR, recorded_at TIMESTAMP)"
    )
    yield con
    con.close()


SCORED = Scored("1", "ab" * 32, "run-1")


def view(con, tables, scored=SCORED, window=None):
    def aliased():
        raise ModelNotFound("m@champion is not set")

    return PartitionView(
        SPEC,
        DAY.isoformat(),
        DAY,
        con,
        tables=tables,
        scored=lambda: scored,
        window_note=lambda: window,
        model=lambda version: MODEL,
        aliased=aliased,
    )


def outcomes(con, **kwargs):
    """As the two steps judge: the prediction checks on a snapshot of the partition, the rest on the tables."""
    predictions = view(con, snapshot_partition(con, SPEC, DAY), **kwargs)
    features = view(con, {}, **kwargs)
    return {c.name: c.judge(predictions if c.asset == PREDICTIONS else features) for c in CHECKS}


def test_a_clean_partition_passes_every_check_without_dagster(con):
    results = outcomes(con)
    assert set(results) == {c.name for c in CHECKS}
    assert all(r.passed for r in results.values()), {
        k: r.description for k, r in results.items() if not r.passed
    }
    assert results["feature_drift"].metadata["verdict"] == "no_reference"  # no champion: not judged, said so


def test_a_missing_prediction_fails_completeness_and_an_unscored_partition_fails_validity(con):
    con.execute("DELETE FROM predictions.p WHERE entity_id = 3")
    assert not outcomes(con)["completeness"].passed
    unscored = outcomes(con, scored=None)
    assert not unscored["validity"].passed and unscored["validity"].severity == "error"


def test_an_incomplete_feature_window_is_not_judged_for_drift(con):
    results = outcomes(con, window="not judged: features use 3 of 30 days")
    assert results["score_drift"].passed and results["score_drift"].metadata["verdict"] == "not_judged"


def test_blocking_names_come_from_the_table():
    assert BLOCKING_PREDICTION_CHECKS == tuple(
        c.name for c in CHECKS if c.blocking and c.asset == PREDICTIONS
    )
    assert (
        BLOCKING_CHECKS
        == BLOCKING_PREDICTION_CHECKS
        == ("completeness", "dead_letters", "validity", "provenance")
    )
    assert all(c.describe(SPEC) for c in CHECKS)


def test_the_table_imports_no_dagster():
    code = (
        "import sys, batch_assets.core.check_table; assert 'dagster' not in sys.modules, 'dagster imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
