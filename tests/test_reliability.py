"""Transient failures are retried with backoff; permanent ones fail at once, with their message, unretried.

Real conditions only: a registry folder that is away
for a moment, a features table with a column dropped, an artifact with one byte changed.
"""

import shutil
import threading
import time

import dagster as dg
import pytest

from batch_assets.core.registry import ModelRegistry
from batch_assets.datasets import demo_spec
from batch_assets.definitions import build_definitions
from batch_assets.predictions import build_scored_asset
from resources import build_resources
from tests.conftest import drop_lake_column, lake_connection, write_artifact

risk_scores = build_scored_asset(demo_spec())

DAY = "2026-09-01"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture
def ready(landing, instance, tmp_path):
    """Day one ingested (raw + features) and a champion model registered."""
    registry = ModelRegistry(landing.registry)
    info = registry.register("risk_model", write_artifact(tmp_path / "artifact" / "model.safetensors"))
    registry.promote("risk_model", info.version, "champion")
    defs = build_definitions(landing)
    result = defs.resolve_job_def("ingest_daily").execute_in_process(
        instance=instance, partition_key=DAY, run_config=QUIET
    )
    assert result.success
    return landing


def score(settings, instance, **resource_overrides):
    resources = {**build_resources(settings), **resource_overrides}
    t = time.perf_counter()
    result = dg.materialize(
        [risk_scores],
        partition_key=DAY,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        selection=dg.AssetSelection.assets(risk_scores.key).without_checks(),
    )
    return result, time.perf_counter() - t


def retries(result) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def failure_message(result) -> str:
    """The step failure's message and those of its causes (after retries Dagster wraps the last error)."""
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return " <- ".join(messages)


def rows(settings) -> tuple[int, int]:
    with lake_connection(settings) as con:
        return con.execute(
            "SELECT count(*), count(DISTINCT entity_id) FROM predictions.risk_scores WHERE partition_date = $d",
            {"d": DAY},
        ).fetchall()[0]


def features(settings) -> int:
    with lake_connection(settings) as con:
        return con.execute(
            "SELECT count(*) FROM features.customer_daily WHERE partition_date = $d", {"d": DAY}
        ).fetchall()[0][0]


def test_a_registry_away_for_a_moment_is_retried(ready, instance):
    away = ready.registry.with_name("registry-away")
    ready.registry.rename(away)
    timer = threading.Timer(1.0, lambda: away.rename(ready.registry))
    timer.start()
    try:
        result, _ = score(ready, instance)
    finally:
        timer.join()
    assert result.success and retries(result) >= 1
    assert rows(ready)[0] == features(ready)


def test_a_registry_that_stays_away_fails_after_the_retries_with_its_reason(ready, instance):
    shutil.rmtree(ready.registry)
    result, _ = score(ready, instance)
    assert not result.success
    assert retries(result) == 3
    assert "model registry root" in failure_message(result) and "not reachable" in failure_message(result)


def test_a_schema_break_fails_at_once_naming_the_column(ready, instance):
    drop_lake_column(ready, "features.customer_daily", "txn_count_1d")
    result, seconds = score(ready, instance)
    assert not result.success and retries(result) == 0
    assert "schema break" in failure_message(result) and "'txn_count_1d'" in failure_message(result)
    assert seconds < 30  # well short of the retry policy's first delays (2 s, 4 s, 8 s)


def test_a_checksum_mismatch_fails_at_once(ready, instance):
    path = ModelRegistry(ready.registry).get("risk_model", "1").artifact_path
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    result, _ = score(ready, instance)
    assert not result.success and retries(result) == 0
    assert "does not match the manifest" in failure_message(result)
    with lake_connection(ready) as con:
        assert con.execute("SELECT count(*) FROM predictions.risk_scores").fetchall()[0][0] == 0
