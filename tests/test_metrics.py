"""Prometheus metrics: built per partition with bounded labels, pushed to a real Pushgateway and read back."""

import datetime as dt
import json
import logging
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch_assets.definitions import build_definitions
from batch_assets.prometheus import METRIC_NAMES, PartitionFigures, check_registry, run_registry
from batch_assets.settings import Settings
from resources import MetricsResource
from tests.servers import pushgateway, scrape

REPO = Path(__file__).resolve().parent.parent
DAY = "2026-09-14"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
FIGURES = PartitionFigures(
    asset="predictions/risk_scores",
    partition=DAY,
    model_version="3",
    rows_read=1000,
    rows_scored=990,
    dead_letters=10,
    duration_s=2.5,
    rows_per_s=400.0,
    peak_rss_mb=512.0,
    partition_end=dt.datetime(2026, 9, 15, tzinfo=dt.UTC),
)


def samples(registry):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


def test_run_and_check_metrics_carry_only_bounded_labels():
    got = samples(run_registry(FIGURES, now=100.0)) | samples(
        check_registry(
            "predictions/risk_scores", DAY, "completeness", passed=False, severity="error", now=1.0
        )
    )
    assert {name for name, _ in got} == METRIC_NAMES
    labels = {k for _, ls in got for k, _ in ls}
    assert labels <= {"asset", "partition", "model_version", "check", "severity"}
    by_name = {name: value for (name, _), value in got.items()}
    assert by_name["batch_assets_completeness_ratio"] == 1.0
    assert by_name["batch_assets_peak_memory_bytes"] == 512 * 1024 * 1024
    assert by_name["batch_assets_partition_end_timestamp_seconds"] == FIGURES.partition_end.timestamp()
    assert by_name["batch_assets_check_passed"] == 0


def test_a_failing_push_logs_a_warning_and_never_raises(caplog):
    disabled = MetricsResource()
    assert not disabled.enabled and not disabled.push_partition(FIGURES, job="j")
    down = MetricsResource(pushgateway_url="http://127.0.0.1:1", timeout_s=1)
    with caplog.at_level(logging.WARNING):
        assert not down.push_partition(FIGURES, job="score_daily")
    assert "could not push metrics to http://127.0.0.1:1" in caplog.text


@pytest.fixture
def gateway(tmp_path):
    with pushgateway(tmp_path / "pushgateway.log") as url:
        yield url


def test_a_scoring_run_pushes_its_figures_and_check_outcomes(gateway, landing, registered_model, instance):
    settings = Settings(home=landing.home, pushgateway_url=gateway)
    defs = build_definitions(settings)
    assert (
        defs.resolve_job_def("ingest_daily")
        .execute_in_process(instance=instance, partition_key=DAY, run_config=QUIET)
        .success
    )
    result = defs.resolve_job_def("score_daily").execute_in_process(
        instance=instance, partition_key=DAY, run_config=QUIET
    )
    assert result.success
    md = instance.get_latest_materialization_event(
        dg.AssetKey(["predictions", "risk_scores"])
    ).asset_materialization.metadata

    got = scrape(gateway)
    group = {"job": "score_daily", "asset": "predictions/risk_scores", "partition": DAY}
    run = {n: (ls, v) for n, ls, v in got if n in METRIC_NAMES and "check" not in ls}
    assert run["batch_assets_rows_scored"] == ({**group, "model_version": "1"}, md["dagster/row_count"].value)
    assert run["batch_assets_rows_read"][1] == md["rows_read"].value
    assert run["batch_assets_dead_letters"][1] == md["dead_letters"].value == 0
    assert run["batch_assets_completeness_ratio"][1] == 1.0 and run["batch_assets_run_success"][1] == 1
    assert run["batch_assets_rows_per_second"][1] == md["rows_per_s"].value > 0
    assert run["batch_assets_peak_memory_bytes"][1] > 0
    assert (
        run["batch_assets_partition_end_timestamp_seconds"][1]
        == dt.datetime(2026, 9, 15, tzinfo=dt.UTC).timestamp()
    )
    checks = {ls["check"]: (ls, v) for n, ls, v in got if n == "batch_assets_check_passed"}
    # contract from the ingest run, the others from the scoring run
    assert set(checks) == {
        "completeness",
        "dead_letters",
        "validity",
        "provenance",
        "score_drift",
        "feature_drift",
        "contract",
    }
    assert checks["completeness"] == ({**group, "check": "completeness", "severity": "error"}, 1.0)
    # bounded labels only: nothing that looks like an entity id or a run id
    for _, labels, _ in got:
        assert set(labels) <= {"job", "asset", "partition", "model_version", "check", "severity"}


def metric_names_in(text: str) -> set[str]:
    return set(re.findall(r"\bbatch_assets_[a-z_]+\b", text))


def test_dashboard_and_alert_rules_use_only_exported_metrics():

    monitoring = REPO / "deployments" / "monitoring"
    dashboard = json.loads((monitoring / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 5
    rules = yaml.safe_load((monitoring / "alert-rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert all({"alert", "expr", "labels", "annotations"} <= set(r) for r in alerts)
    used = metric_names_in("\n".join(exprs + [r["expr"] for r in alerts]))
    # *_push_time_seconds are the Pushgateway's own, per group
    assert used - {"batch_assets_push_time_seconds"} <= METRIC_NAMES, used - METRIC_NAMES
    assert {
        "batch_assets_run_success",
        "batch_assets_completeness_ratio",
        "batch_assets_rows_per_second",
        "batch_assets_partition_end_timestamp_seconds",
    } <= used
    assert "provenance" in "\n".join(exprs)
