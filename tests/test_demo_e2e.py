"""End to end: the demo command from a fresh state folder, twice, as `make demo` runs it."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from batch_assets.core.registry import ModelRegistry
from batch_assets.settings import Settings
from tests.conftest import lake_connection, make_model, write_artifact

CLI = str(Path(sys.executable).parent / "batch-assets")
DAYS = 10  # the full 60-day demo is `make demo`; ten days exercise every step of it


def cli(home: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "BATCH_ASSETS_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)  # the command must set up its own under the state folder
    proc = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def demo(home: Path) -> str:
    return cli(home, "demo", "--days", str(DAYS), "--customers", "500").stdout


def counts(home: Path):
    with lake_connection(Settings(home=home)) as con:
        return con.execute(
            """SELECT f.partition_date, f.n, p.n, p.distinct_n, p.versions
            FROM (SELECT partition_date, count(*) n FROM features.customer_daily GROUP BY ALL) f
            LEFT JOIN (SELECT partition_date, count(*) n, count(DISTINCT entity_id) distinct_n,
                              string_agg(DISTINCT model_version) versions
                       FROM predictions.risk_scores GROUP BY ALL) p USING (partition_date)
            ORDER BY 1"""
        ).fetchall()


@pytest.mark.slow
def test_demo_from_scratch_then_again(tmp_path):
    home = tmp_path / "state"
    out = demo(home)
    assert "registered risk_model version 1" in out and "promoted it to champion" in out
    assert f"done: {DAYS} days" in out and str(home) in out and "make ui" in out
    for sub in ["registry", "landing", "dagster_home/dagster.yaml"]:
        assert (home / sub).exists(), sub
    # the state folder holds Delta tables, which deltalake (pandas, Polars, Spark, ...) opens as they are
    for table in [
        "raw/transactions",
        "features/customer_daily",
        "predictions/risk_scores",
        "predictions/dead_letters",
        "predictions/risk_summary",
    ]:
        assert (home / "lake" / table / "_delta_log").is_dir(), table
    scores = DeltaTable(str(home / "lake/predictions/risk_scores")).to_pandas()
    assert len(scores) == scores[["entity_id", "partition_date"]].drop_duplicates().shape[0] > 0

    first = counts(home)
    assert len(first) == DAYS
    assert all(f_n == p_n == distinct for _, f_n, p_n, distinct, _ in first)
    assert {v for *_, v in first} == {"1"}
    assert ModelRegistry(home / "registry").resolve("risk_model", "champion").version == "1"

    # the runs are in the Dagster instance the UI reads
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    with dg.DagsterInstance.get() as instance:
        for key in (
            ["raw", "transactions"],
            ["features", "customer_daily"],
            ["predictions", "risk_scores"],
            ["predictions", "risk_summary"],
        ):
            assert len(instance.get_materialized_partitions(dg.AssetKey(key))) == DAYS, key

    second = demo(home)  # idempotent: keeps the champion, replaces partitions, duplicates nothing
    assert "not retraining" in second
    assert counts(home) == first

    # one day of the whole chain again, from the shell, as a user pointing it at new files would
    done = cli(home, "materialize", "2026-09-10")
    assert "daily_pipeline 2026-09-10: ok" in done.stdout
    assert (
        "BackfillPolic" not in done.stderr and "Warning" not in done.stderr
    )  # no notices for the code author
    unknown = cli(home, "materialize", "2026-09-10", "--job", "nope", expect=2)
    assert "BATCH_ASSETS_SPECS" in unknown.stderr
    # models are observed by their own command; materialize offers only the partitioned jobs
    assert "observe_models" not in unknown.stderr
    observed = cli(home, "models", "observe").stdout
    assert "models/risk_model: version 1" in observed and "0 partitions behind" in observed
    assert counts(home) == first
    missing = cli(home, "materialize", "2026-09-11", expect=2)
    assert "no landing folder for 2026-09-11" in missing.stderr and "Traceback" not in missing.stderr

    # a promotion from the shell, then what the rollout sensor would do, without launching anything
    status = cli(home, "rescore", "status").stdout
    assert f"version        1    {DAYS} partitions" in status and "0 partitions behind" in status
    artifact = write_artifact(tmp_path / "v2" / "model.safetensors", make_model(seed=9))
    cli(home, "models", "register", "risk_model", str(artifact))
    cli(home, "models", "promote", "risk_model", "2", "--alias", "champion")
    assert f"{DAYS} partitions behind the champion" in cli(home, "rescore", "status").stdout
    plan = cli(home, "rescore", "plan").stdout
    assert "2:2026-09-10\tpartition 2026-09-10\tcanary\tmodel_version=2" in plan
    assert counts(home) == first  # plan launched nothing
