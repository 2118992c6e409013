"""A 30-partition backfill under `dagster dev` with the multiprocess executor: cancelled midway, re-executed
from failure, it ends with every partition scored exactly once and finished partitions untouched. Its runs
write different partitions of the same Delta tables at the same time: no pool limit of 1, no lock."""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from batch_assets.core.registry import ModelRegistry
from batch_assets.demo.data import DemoConfig, write_landing
from batch_assets.settings import Settings
from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import (
    connect_lake,
    read_landing_day,
    replace_features_partition,
    replace_raw_partition,
)
from tests.conftest import lake_connection, write_artifact
from tests.servers import REPO, dagster_dev, graphql
from tests.test_ui_e2e import launch

SCORES = dg.AssetKey(["predictions", "risk_scores"])
DAYS = [(dt.date(2026, 9, 1) + dt.timedelta(days=i)).isoformat() for i in range(30)]
STATUS = """query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""
CANCEL = """mutation Cancel($id: String!) {
  cancelPartitionBackfill(backfillId: $id) { __typename ... on PythonError { message } }
}"""
TERMINATE = """mutation Terminate($ids: [String!]!) {
  terminateRuns(runIds: $ids) { __typename }
}"""
REEXECUTE = """mutation Retry($id: String!) {
  reexecutePartitionBackfill(reexecutionParams: {parentRunId: $id, strategy: FROM_FAILURE}) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """30 days of features written straight into the lake, a champion, and `dagster dev` running every
    step of every run in its own process (BATCH_ASSETS_EXECUTOR=multiprocess)."""
    settings = Settings(home=tmp_path_factory.mktemp("backfill") / "home").ensure()
    cfg = DemoConfig(customers=120, days=30)
    write_landing(cfg, settings.landing)
    lake = Lake(str(settings.lake))
    with duckdb.connect() as con:
        connect_lake(con, lake)
        for day in cfg.dates:
            replace_raw_partition(con, lake, day, read_landing_day(settings.landing, day))
            replace_features_partition(con, lake, day, max(cfg.dates[0], day - dt.timedelta(days=29)))
    registry = ModelRegistry(settings.registry)
    artifact = write_artifact(settings.home.parent / "m.safetensors")
    registry.promote("risk_model", registry.register("risk_model", artifact).version)
    (settings.dagster_home / "dagster.yaml").write_text((REPO / "deployments/local/dagster.yaml").read_text())
    env = {"BATCH_ASSETS_EXECUTOR": "multiprocess"}
    with dagster_dev(settings.home, settings.dagster_home, env=env, backfill_interval_s=2) as port:
        yield port, settings


def status(port: int, backfill_id: str) -> str:
    return graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]


def wait_for(port: int, backfill_id: str, log: Path, done: tuple[str, ...], timeout: float = 300) -> str:
    deadline = time.time() + timeout
    while (s := status(port, backfill_id)) not in done:
        assert time.time() < deadline, f"backfill {backfill_id} still {s}:\n" + log.read_text()[-4000:]
        time.sleep(1)
    return s


def materializations(instance: dg.DagsterInstance) -> dict[str, int]:
    records = instance.fetch_materializations(SCORES, limit=1000).records
    counts: dict[str, int] = {}
    for r in records:
        counts[r.partition_key] = counts.get(r.partition_key, 0) + 1
    return counts


@pytest.mark.slow
def test_cancelled_backfill_resumes_without_redoing_or_duplicating(server):
    port, settings = server
    log = settings.home / "dagster-dev.log"
    first = launch(
        port, {"assetSelection": [{"path": SCORES.path}], "partitionNames": DAYS, "title": "30 days"}
    )

    # The 3 runs (10 partitions each, BackfillPolicy.multi_run(10)) run at once, every step in its own
    # process, each committing its own partitions to the same Delta tables. As soon as the first chunk is scored, cancel the backfill and
    # terminate its runs in flight, as the UI's Cancel and Terminate buttons do (the daemon alone would act
    # only on its next iteration, up to 30 s later).
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        deadline = time.time() + 240
        while not materializations(instance):
            assert time.time() < deadline, log.read_text()[-4000:]
            time.sleep(0.25)
        cancel = graphql(port, CANCEL, {"id": first})["cancelPartitionBackfill"]
        assert cancel["__typename"] == "CancelBackfillSuccess", cancel
        in_flight = instance.get_runs(
            filters=dg.RunsFilter(
                tags={"dagster/backfill": first},
                statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
            )
        )
        if in_flight:
            graphql(port, TERMINATE, {"ids": [r.run_id for r in in_flight]})
    assert (
        wait_for(port, first, log, ("CANCELED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED"))
        == "CANCELED"
    )

    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        before = materializations(instance)
    assert before and set(before) < set(DAYS), f"cancel came too late to leave work: {sorted(before)}"
    assert all(n == 1 for n in before.values())

    again = graphql(port, REEXECUTE, {"id": first})["reexecutePartitionBackfill"]
    assert again["__typename"] == "LaunchBackfillSuccess", again
    assert wait_for(port, again["backfillId"], log, ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED")) == (
        "COMPLETED_SUCCESS"
    )

    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        after = materializations(instance)
        assert set(after) == set(DAYS)
        # partitions finished before the cancel were not scored again; every other one exactly once
        assert {d: after[d] for d in before} == before
        assert all(n == 1 for n in after.values()), after
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": again["backfillId"]}))
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        every_run = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": first})) + runs
        records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in every_run]))
        spans = sorted((r.start_time, r.end_time) for r in records if r.start_time and r.end_time)
        for run in every_run:
            assert run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED), run.status
            for entry in instance.all_logs(run.run_id):
                message = entry.user_message or ""
                assert "CommitFailed" not in message and "committed by another writer" not in message, message

    with lake_connection(settings) as con:
        features, scores, distinct = con.execute(
            """SELECT (SELECT count(*) FROM features.customer_daily),
                      (SELECT count(*) FROM predictions.risk_scores),
                      (SELECT count(DISTINCT (entity_id, partition_date)) FROM predictions.risk_scores)"""
        ).fetchall()[0]
        dead = con.execute("SELECT count(*) FROM predictions.dead_letters").fetchall()[0][0]
    assert scores == distinct and scores + dead == features
    # runs overlapped: partitions of one table were written by several processes at once, with no pool of 1
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), spans
