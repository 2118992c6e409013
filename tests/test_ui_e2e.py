"""`dagster dev` with this workspace on 127.0.0.1, driven through GraphQL as the UI drives it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from batch_assets.definitions import build_definitions
from batch_assets.local_runs import open_instance, run_partitions
from batch_assets.scoring.demo_data import DemoConfig, write_landing
from batch_assets.scoring.registry import ModelRegistry
from batch_assets.settings import Settings
from tests.conftest import write_artifact

REPO = Path(__file__).resolve().parent.parent
BACKFILL_DAYS = ["2026-09-06", "2026-09-07", "2026-09-08"]
PREDICTION_CHECKS = ["completeness", "dead_letters", "validity", "provenance", "score_drift"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        data = json.loads(resp.read())
    assert "errors" not in data, data["errors"]
    return data["data"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A state folder with 8 days ingested and a champion, served by `dagster dev` on a free loopback port."""
    settings = Settings(home=tmp_path_factory.mktemp("ui") / "home")
    cfg = DemoConfig(customers=300, days=8)
    write_landing(cfg, settings.landing)
    registry = ModelRegistry(settings.registry)
    registry.promote(
        "risk_model",
        registry.register("risk_model", write_artifact(settings.home.parent / "m.safetensors")).version,
    )
    old_home = os.environ.get("DAGSTER_HOME")
    with open_instance(settings) as instance:
        run_partitions(
            build_definitions(settings), instance, "ingest_daily", [d.isoformat() for d in cfg.dates]
        )
    port = free_port()
    env = {**os.environ, "BATCH_ASSETS_HOME": str(settings.home), "DAGSTER_HOME": str(settings.dagster_home)}
    dagster = str(Path(sys.executable).parent / "dagster")
    log = open(settings.home / "dagster-dev.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [dagster, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (settings.home / "dagster-dev.log").read_text()[-3000:]
                assert time.time() < deadline, "dagster dev did not answer within 120 s"
                time.sleep(1)
        yield port, settings
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        if old_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old_home


@pytest.mark.slow
def test_dagster_dev_serves_the_asset_graph(server):
    port, _ = server
    deadline = time.time() + 60
    while True:  # the code location loads after the webserver answers
        nodes = graphql(port, "{ assetNodes { assetKey { path } groupName isObservable isPartitioned } }")[
            "assetNodes"
        ]
        if nodes or time.time() > deadline:
            break
        time.sleep(1)
    got = {
        "/".join(n["assetKey"]["path"]): (n["groupName"], n["isObservable"], n["isPartitioned"])
        for n in nodes
    }
    assert got == {
        "raw/transactions": ("raw", False, True),
        "features/customer_daily": ("features", False, True),
        "predictions/risk_scores": ("predictions", False, True),
        "predictions/risk_summary": ("predictions", False, True),
        "models/risk_model": ("models", True, False),
    }


LAUNCH = """mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
STATUS = """query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""


def launch(port: int, params: dict) -> str:
    launched = graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def wait(port: int, backfill_id: str, log: Path) -> None:
    deadline = time.time() + 300
    while True:
        status = graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        if status.startswith("COMPLETED") or status in ("FAILED", "CANCELED") or time.time() > deadline:
            break
        time.sleep(2)
    assert status == "COMPLETED_SUCCESS", log.read_text()[-4000:]


MULTI_RUN_DAYS = ["2026-09-01", "2026-09-02", "2026-09-03"]


@pytest.mark.slow
def test_backfills_store_checks_per_partition_and_queue_on_the_pool(server):
    port, settings = server
    # a chunked backfill of the scores (one run, BackfillPolicy.multi_run(10)) and, at the same time, a
    # multi-run backfill of the features (one run per partition) competing for the DuckDB pool
    scores = [{"path": ["predictions", "risk_scores"]}, {"path": ["predictions", "risk_summary"]}]
    chunked = launch(
        port, {"assetSelection": scores, "partitionNames": BACKFILL_DAYS, "title": "test backfill"}
    )
    multi = launch(
        port, {"assetSelection": [{"path": ["features", "customer_daily"]}], "partitionNames": MULTI_RUN_DAYS}
    )
    wait(port, chunked, settings.home / "dagster-dev.log")
    wait(port, multi, settings.home / "dagster-dev.log")
    launched = {"backfillId": chunked}

    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        storage = instance.event_log_storage
        for name in PREDICTION_CHECKS:
            key = dg.AssetCheckKey(dg.AssetKey(["predictions", "risk_scores"]), name)
            history = storage.get_asset_check_execution_history(key, limit=20)
            # the backfill scores its 3 partitions in one chunked run; each partition has its own result
            per_partition = {h.partition: h.status.value for h in history if h.partition is not None}
            assert per_partition == {d: "SUCCEEDED" for d in BACKFILL_DAYS}, name
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]}))
        assert len(runs) == 1  # BackfillPolicy.multi_run(10): one run, the model loaded once
        summary = instance.get_materialized_partitions(dg.AssetKey(["predictions", "risk_summary"]))
        assert summary == set(BACKFILL_DAYS)
    # and the UI's own view: per-partition check statuses through GraphQL
    data = graphql(
        port,
        """{ assetCheckExecutions(assetKey: {path: ["predictions", "risk_scores"]},
                               checkName: "completeness", limit: 10) { partition status } }""",
    )
    assert sorted(e["partition"] for e in data["assetCheckExecutions"] if e["partition"]) == BACKFILL_DAYS
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": multi}))
        assert len(runs) == len(MULTI_RUN_DAYS) and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for run in runs:
            for entry in instance.all_logs(run.run_id):
                assert "Could not set lock on file" not in (entry.user_message or ""), entry.user_message
