"""`dagster dev` with this workspace on 127.0.0.1, driven through GraphQL as the UI drives it."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pytest

from batch_assets.core.plots import INLINE_MARKDOWN_LIMIT
from batch_assets.core.registry import ModelRegistry
from batch_assets.definitions import build_definitions
from batch_assets.demo.data import DemoConfig, write_landing
from batch_assets.local_runs import open_instance, run_partitions
from batch_assets.settings import Settings
from tests.conftest import make_model, write_artifact
from tests.servers import browse_ui, dagster_dev, graphql, pushgateway, scrape

REPO = Path(__file__).resolve().parent.parent
BACKFILL_DAYS = ["2026-09-06", "2026-09-07", "2026-09-08"]
PREDICTION_CHECKS = ["completeness", "dead_letters", "validity", "provenance", "score_drift"]
SCORES = dg.AssetKey(["predictions", "risk_scores"])


class Server(NamedTuple):
    port: int
    settings: Settings
    gateway: str

    @property
    def log(self) -> Path:
        return self.settings.home / "dagster-dev.log"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """8 days ingested, a champion, and `dagster dev` on a free loopback port pushing to a Pushgateway.

    The tests below share it and run in file order: backfills, then a promotion re-scoring them, then the
    browser on the result.
    """
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
    try:
        with (
            pushgateway(settings.home / "pushgateway.log") as gateway,
            dagster_dev(
                settings.home,
                settings.dagster_home,
                env={"BATCH_ASSETS_PUSHGATEWAY_URL": gateway, "BATCH_ASSETS_ROLLOUT_INTERVAL_S": "5"},
                backfill_interval_s=2,
            ) as port,
        ):
            yield Server(port, settings, gateway)
    finally:
        if old_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old_home


@pytest.mark.slow
def test_dagster_dev_serves_the_asset_graph(server):
    port = server.port
    nodes = graphql(
        port,
        """{ assetNodes { assetKey { path } groupName isObservable isPartitioned description kinds
             owners { ... on TeamAssetOwner { team } } } }""",
    )["assetNodes"]
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
    for n in nodes:  # what a person reads on each node: a description, an owner, the kinds
        assert len(n["description"] or "") > 40 and n["owners"], n
    kinds = {"/".join(n["assetKey"]["path"]): set(n["kinds"]) for n in nodes}
    assert (
        kinds["predictions/risk_scores"] == {"deltalake", "pytorch"}
        and "pytorch" in kinds["models/risk_model"]
    )


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
    port, settings = server.port, server.settings
    # a chunked backfill of the scores (one run, BackfillPolicy.multi_run(10)) and, at the same time, a
    # multi-run backfill of the features (one run per partition) competing for the DuckDB pool
    scores = [{"path": ["predictions", "risk_scores"]}, {"path": ["predictions", "risk_summary"]}]
    chunked = launch(
        port, {"assetSelection": scores, "partitionNames": BACKFILL_DAYS, "title": "test backfill"}
    )
    multi = launch(
        port, {"assetSelection": [{"path": ["features", "customer_daily"]}], "partitionNames": MULTI_RUN_DAYS}
    )
    wait(port, chunked, server.log)
    wait(port, multi, server.log)
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
    # the figures of each partition reached the Pushgateway, labelled by job, asset, partition and version
    pushed = {
        ls["partition"]: (ls["job"], ls["model_version"], v)
        for n, ls, v in scrape(server.gateway)
        if n == "batch_assets_rows_scored"
    }
    assert set(pushed) == set(BACKFILL_DAYS)
    assert all(job == "__ASSET_JOB" and version == "1" and rows > 0 for job, version, rows in pushed.values())


MATERIALIZATIONS = """query M($partitions: [String!]) {
  assetOrError(assetKey: {path: ["predictions", "risk_scores"]}) {
    ... on Asset { assetMaterializations(partitions: $partitions) {
      partition runId metadataEntries { label ... on MarkdownMetadataEntry { mdStr } ... on TextMetadataEntry { text } } } }
  }
}"""


def runs_with(instance: dg.DagsterInstance, tags: dict[str, str]) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags=tags)))


@pytest.mark.slow
def test_promotion_with_the_cli_rolls_out_canary_then_history(server):
    """`batch-assets models promote` moves the alias; the daemon's sensor does the rest by itself."""
    port, settings = server.port, server.settings
    artifact = write_artifact(settings.home.parent / "m2.safetensors", make_model(seed=1))
    cli = [str(Path(sys.executable).parent / "batch-assets")]
    env = {**os.environ, "BATCH_ASSETS_HOME": str(settings.home)}
    for args in (["register", "risk_model", str(artifact), "--version", "2"], ["promote", "risk_model", "2"]):
        subprocess.run([*cli, "models", *args], env=env, check=True, capture_output=True, timeout=60)

    deadline = time.time() + 300
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        while True:  # the canary run, then one backfill (2 partitions, one chunk) and its one run
            runs = runs_with(instance, {"batch-assets/model_version": "2"})
            done = [r for r in runs if r.is_finished]
            if (len(done) == 2 and len(runs) == 2) or time.time() > deadline:
                break
            assert not any(r.status == dg.DagsterRunStatus.FAILURE for r in runs), server.log.read_text()[
                -4000:
            ]
            time.sleep(2)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
        canary = next(r for r in runs if r.tags["batch-assets/rollout"] == "canary")
        chunk = next(r for r in runs if r.tags["batch-assets/rollout"] == "rollout")
        # the canary is the latest partition, alone; the history follows as a backfill after it succeeded
        assert canary.tags["dagster/partition"] == BACKFILL_DAYS[-1]
        assert chunk.tags.get("dagster/backfill") and (
            chunk.tags["dagster/asset_partition_range_start"],
            chunk.tags["dagster/asset_partition_range_end"],
        ) == (BACKFILL_DAYS[0], BACKFILL_DAYS[-2])
        canary_end = instance.get_run_record_by_id(canary.run_id).end_time
        assert instance.get_run_record_by_id(chunk.run_id).create_timestamp.timestamp() >= canary_end
        # each partition of the chunk has its own check results, and there is no chunk-level one
        for name in ("completeness", "validity", "provenance", "dead_letters", "score_drift"):
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(["predictions", "risk_scores"]), name), limit=50
            )
            in_chunk = [h for h in history if h.run_id == chunk.run_id]
            assert sorted(h.partition for h in in_chunk) == BACKFILL_DAYS[:-1], name
    # every partition now carries version 2, a drift table and the score plot, as the UI shows them
    mats = graphql(port, MATERIALIZATIONS, {"partitions": BACKFILL_DAYS})["assetOrError"][
        "assetMaterializations"
    ]
    latest = {}
    for m in mats:  # newest first
        latest.setdefault(
            m["partition"], {e["label"]: e.get("mdStr") or e.get("text") for e in m["metadataEntries"]}
        )
    assert set(latest) == set(BACKFILL_DAYS)
    assert len({md["input_sha256"] for md in latest.values()}) == len(BACKFILL_DAYS)  # each its own
    for md in latest.values():
        assert {
            "model_version",
            "model_sha256",
            "input_sha256",
            "rows_per_s",
            "peak_rss_mb",
            "dead_letters",
        } <= set(md)
        assert "| PSI |" in md["score_drift"] and "data:image/png;base64," in md["score_distribution"]
        assert len(md["score_distribution"]) < INLINE_MARKDOWN_LIMIT  # shown inline, not behind a button
    versions = {
        ls["partition"]: ls["model_version"]
        for n, ls, _ in scrape(server.gateway)
        if n == "batch_assets_rows_scored"
    }
    assert versions == {d: "2" for d in BACKFILL_DAYS}


@pytest.mark.slow
def test_the_browser_renders_the_asset_graph_a_partition_and_a_check(server, tmp_path):
    """Headless Chromium renders the pages a person opens; the DOM names what each page is about."""
    doms = browse_ui(server.port, tmp_path, BACKFILL_DAYS[-1])
    for name in ("transactions", "customer_daily", "risk_model", "risk_scores", "risk_summary", "PyTorch"):
        assert name in doms["asset-graph"], name
    # the metadata table, with the drift table and the score plot rendered inline (an <img>, not a button)
    for text in ("model_sha256", "input_sha256", "rows_per_s", "peak_rss_mb", "KS statistic"):
        assert text in doms["partition-metadata"], text
    assert re.search(r'<img [^>]*src="data:image/png;base64,', doms["partition-metadata"])
    for text in ("score_drift", "Latest execution", "Evaluation result", *PREDICTION_CHECKS):
        assert text in doms["check-result"], text
    for name in ("asset-graph", "partition-metadata", "check-result"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
