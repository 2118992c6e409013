"""The rollout sensor against a real instance holding real materializations, ticks evaluated one by one and
the requested runs executed through the instance, until history is re-scored by the promoted version."""

import dagster as dg
import pytest

from batch_assets.definitions import build_definitions
from batch_assets.local_runs import execute_for_partition
from batch_assets.predictions import MODEL_SHA_TAG, MODEL_VERSION_TAG
from batch_assets.scoring.model_format import save_artifact
from batch_assets.scoring.warehouse import FEATURE_COLUMNS
from batch_assets.sensors import ROLLOUT_ROLE_TAG
from tests.conftest import lake_connection, make_model, write_artifact

PREDS = dg.AssetKey(["predictions", "risk_scores"])


@pytest.fixture
def world(landing, registered_model, small_demo, instance):
    """14 days ingested and scored by version 1 (the champion)."""
    defs = build_definitions(landing)
    days = [d.isoformat() for d in small_demo.dates]
    for job in ("ingest_daily", "score_daily"):
        for day in days:
            assert execute_for_partition(defs.resolve_job_def(job), instance, day).success
    return defs, days, landing, registered_model


def tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("risk_model_champion_rollout")
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"model_registry": defs.resources["model_registry"]},
    )
    result = sensor(context)
    return result


def execute(defs, instance, requests):
    job = defs.resolve_job_def("score_daily")
    return [execute_for_partition(job, instance, r.partition_key, tags=dict(r.tags)) for r in requests]


def versions_in_table(settings):
    with lake_connection(settings) as con:
        return dict(
            con.execute(
                "SELECT partition_date::VARCHAR, string_agg(DISTINCT model_version) "
                "FROM predictions.risk_scores GROUP BY ALL"
            ).fetchall()
        )


def test_rollout_canary_then_history_then_rollback(world, instance, tmp_path):
    defs, days, settings, registry = world
    first = tick(defs, instance, None)
    assert not first.run_requests and "already scored by version 1" in first.skip_reason.skip_message

    v2 = registry.register(
        "risk_model", write_artifact(tmp_path / "v2" / "m.safetensors", make_model(seed=2))
    )
    unpromoted = tick(defs, instance, first.cursor)
    assert not unpromoted.run_requests and unpromoted.cursor == first.cursor  # registering changes nothing

    registry.promote("risk_model", v2.version)
    canary = tick(defs, instance, first.cursor)
    assert [(r.run_key, r.partition_key) for r in canary.run_requests] == [("2:2026-09-14", "2026-09-14")]
    tags = canary.run_requests[0].tags
    assert (
        tags[MODEL_VERSION_TAG] == "2"
        and tags[MODEL_SHA_TAG] == v2.sha256
        and tags[ROLLOUT_ROLE_TAG] == "canary"
    )
    waiting = tick(defs, instance, canary.cursor)
    assert not waiting.run_requests and "waiting for the canary" in waiting.skip_reason.skip_message

    # the alias moves again before the canary runs: the run still scores with the version it was requested for
    v3 = registry.register(
        "risk_model", write_artifact(tmp_path / "v3" / "m.safetensors", make_model(seed=3))
    )
    registry.promote("risk_model", v3.version)
    assert all(r.success for r in execute(defs, instance, canary.run_requests))
    assert versions_in_table(settings)["2026-09-14"] == "2"
    registry.promote("risk_model", v2.version)  # back to 2: that is the 2nd promotion of version 2
    cursor = canary.cursor

    requested = []
    for _ in range(10):  # evaluate ticks and run what they request until the sensor says it is done
        result = tick(defs, instance, cursor)
        cursor = result.cursor
        if not result.run_requests:
            if "complete" in result.skip_reason.skip_message:
                break
            continue
        requested += [r.run_key for r in result.run_requests]
        assert all(r.success for r in execute(defs, instance, result.run_requests))
    # a new promotion restarts the rollout: a canary, then the 12 others (2026-09-14 is already on version 2)
    assert len(requested) == len(set(requested)) == len(days) - 1
    assert requested[0] == "2:2026-09-13#2" and all(k.endswith("#2") for k in requested)
    assert set(versions_in_table(settings).values()) == {"2"}
    per_partition = {}
    for record in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=PREDS), limit=500).records:
        mat = record.asset_materialization
        if mat.metadata["model_version"].value == "2":
            per_partition[mat.partition] = per_partition.get(mat.partition, 0) + 1
    assert per_partition == {d: 1 for d in days}  # every partition scored exactly once by version 2

    # rollback to version 1: re-scored back the same way, with fresh run keys
    registry.promote("risk_model", "1")
    back = tick(defs, instance, cursor)
    assert [r.run_key for r in back.run_requests] == ["1:2026-09-14#2"]


def test_failed_canary_stops_the_rollout_with_a_reason(world, instance, tmp_path):
    defs, days, settings, registry = world
    cursor = tick(defs, instance, None).cursor
    narrow = save_artifact(
        make_model(),
        tmp_path / "narrow.safetensors",
        architecture={"name": "tabular_mlp", "params": {"n_features": 15, "hidden": [16, 8]}},
        inputs=[{"name": c, "dtype": "float32"} for c in FEATURE_COLUMNS],
        output={"name": "score", "dtype": "float32", "range": [0.0, 0.0001]},
    )
    bad = registry.register("risk_model", narrow)
    registry.promote("risk_model", bad.version)
    canary = tick(defs, instance, cursor)
    assert len(canary.run_requests) == 1
    assert not any(r.success for r in execute(defs, instance, canary.run_requests))
    stopped = tick(defs, instance, canary.cursor)
    assert not stopped.run_requests
    message = stopped.skip_reason.skip_message
    assert "rollout of version 2 stopped: canary 2026-09-14 failed" in message and "validity" in message
    assert not tick(defs, instance, stopped.cursor).run_requests
    assert set(versions_in_table(settings)[d] for d in days[:-1]) == {"1"}  # nothing else re-scored


def test_schedule_requests_the_last_closed_day_pinned_to_the_champion(landing, registered_model, instance):
    import datetime as dt

    defs = build_definitions(landing)
    schedule = defs.resolve_schedule_def("daily_pipeline_schedule")
    assert schedule.cron_schedule == "30 1 * * *" and schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=dt.datetime(2026, 10, 31, 1, 30, tzinfo=dt.UTC),
        resources={"model_registry": defs.resources["model_registry"]},
        repository_def=defs.get_repository_def(),
    )
    request = schedule.evaluate_tick(context).run_requests[0]
    champion = registered_model.resolve("risk_model", "champion")
    assert request.partition_key == "2026-10-30" and request.run_key == "scheduled:2026-10-30"
    assert request.tags[MODEL_VERSION_TAG] == "1" and request.tags[MODEL_SHA_TAG] == champion.sha256
