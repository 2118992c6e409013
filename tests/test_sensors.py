"""The rollout sensor against a real instance holding real materializations, ticks evaluated one by one and
what they request submitted as the sensor daemon does (runs; backfills added to the instance) and executed
through the instance (a backfill's chunk as one ranged run, as the backfill daemon launches it), until
history is re-scored by the promoted version."""

import time

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from batch_assets import rescore
from batch_assets.core.model_format import save_artifact
from batch_assets.core.registry import ModelRegistry
from batch_assets.definitions import build_definitions
from batch_assets.local_runs import execute_for_partition
from batch_assets.predictions import MODEL_SHA_TAG, MODEL_VERSION_TAG
from batch_assets.sensors import ROLLOUT_CHUNK_TAG, ROLLOUT_ID_TAG, ROLLOUT_ROLE_TAG
from batch_assets.storage.warehouse import FEATURE_COLUMNS
from tests.conftest import SMALL_DEMO, lake_connection, make_model, open_state, write_artifact

PREDS = dg.AssetKey(["predictions", "risk_scores"])


@pytest.fixture(scope="module")
def world_template(ingested_template, tmp_path_factory):
    """Once per module: the ingested small demo, its 14 days scored by version 1 (the champion)."""
    root = tmp_path_factory.mktemp("world")
    with open_state(ingested_template, root) as (settings, inst):
        registry = ModelRegistry(settings.registry)
        info = registry.register("risk_model", write_artifact(root / "artifact" / "model.safetensors"))
        registry.promote("risk_model", info.version, "champion")
        job = build_definitions(settings).resolve_job_def("score_daily")
        for day in SMALL_DEMO.dates:
            assert execute_for_partition(job, inst, day.isoformat()).success
    return root


@pytest.fixture
def world_state(world_template, tmp_path):
    with open_state(world_template, tmp_path) as state:
        yield state


@pytest.fixture
def instance(request):
    """The world's instance for tests of the world, a fresh one otherwise."""
    if "world" in request.fixturenames:
        return request.getfixturevalue("world_state").instance
    return request.getfixturevalue("fresh_instance")


@pytest.fixture
def fresh_instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def world(world_state):
    """14 days ingested and scored by version 1 (the champion), in this test's own copy."""
    settings = world_state.settings
    days = [d.isoformat() for d in SMALL_DEMO.dates]
    return build_definitions(settings), days, settings, ModelRegistry(settings.registry)


def tick(defs, instance, cursor, started=None):
    sensor = defs.resolve_sensor_def("risk_model_champion_rollout")
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"model_registry": defs.resources["model_registry"]},
        last_sensor_start_time=started,
    )
    data = sensor.evaluate_tick(context)  # as the daemon evaluates it, with its validation of requests
    return Tick(list(data.run_requests or []), data.cursor, dg.SkipReason(data.skip_message or ""))


class Tick:
    def __init__(self, run_requests, cursor, skip_reason):
        self.run_requests, self.cursor, self.skip_reason = run_requests, cursor, skip_reason


def submit(defs, instance, requests):
    """What the sensor daemon does with a tick's requests: launch a run, or add a backfill (as in
    dagster._daemon.sensor._submit_backfill_request). Returns the results of the runs."""
    job = defs.resolve_job_def("score_daily")
    results = []
    for r in requests:
        if r.requires_backfill_daemon():
            instance.add_backfill(
                PartitionBackfill.from_asset_graph_subset(
                    backfill_id=make_new_backfill_id(),
                    dynamic_partitions_store=instance,
                    backfill_timestamp=time.time(),
                    asset_graph_subset=r.asset_graph_subset,
                    tags=r.tags,
                    title=None,
                    description=None,
                    run_config=None,
                )
            )
        else:
            results.append(execute_for_partition(job, instance, r.partition_key, tags=dict(r.tags)))
    return results


def run_backfills(defs, instance, limit=None):
    """Run the active rollout backfills as the backfill daemon would: each chunk is one run over its
    partition range (the backfill policy), with the backfill's tags."""
    job = defs.resolve_job_def("score_daily")
    active = instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED]))
    ran = []
    for backfill in sorted(active, key=lambda b: b.backfill_timestamp)[:limit]:
        keys = sorted(backfill.tags[ROLLOUT_CHUNK_TAG].split(","))
        tags = dict(backfill.tags) | {
            "dagster/backfill": backfill.backfill_id,
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        }
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        status = BulkActionStatus.COMPLETED_SUCCESS if result.success else BulkActionStatus.COMPLETED_FAILED
        instance.update_backfill(backfill.with_status(status).with_end_timestamp(time.time()))
        ran.append((keys, result))
    return ran


def chunk_partitions(requests):
    return [p for r in requests for p in r.tags[ROLLOUT_CHUNK_TAG].split(",")]


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
    assert all(r.success for r in submit(defs, instance, canary.run_requests))
    assert versions_in_table(settings)["2026-09-14"] == "2"
    registry.promote("risk_model", v2.version)  # back to 2: that is the 2nd promotion of version 2
    cursor = canary.cursor

    # the 2nd promotion restarts the rollout: a canary (2026-09-14 is already on version 2, so 09-13) ...
    canary2 = tick(defs, instance, cursor)
    assert [r.run_key for r in canary2.run_requests] == ["2:2026-09-13#2"]
    assert all(r.success for r in submit(defs, instance, canary2.run_requests))
    # ... then the other 12 as backfills of at most backfill_chunk (10) partitions, newest first
    rollout = tick(defs, instance, canary2.cursor)
    assert all(r.requires_backfill_daemon() for r in rollout.run_requests)
    assert [len(r.tags[ROLLOUT_CHUNK_TAG].split(",")) for r in rollout.run_requests] == [10, 2]
    assert chunk_partitions(rollout.run_requests) == sorted(days, reverse=True)[2:]
    assert all(
        r.tags[ROLLOUT_ID_TAG] == "2#2" and r.tags[MODEL_VERSION_TAG] == "2" for r in rollout.run_requests
    )
    subset = rollout.run_requests[0].asset_graph_subset
    assert subset.asset_keys == {PREDS, dg.AssetKey(["predictions", "risk_summary"])}
    submit(defs, instance, rollout.run_requests)
    # repeated ticks, and a lost cursor, never request a partition that is in a backfill
    assert not tick(defs, instance, rollout.cursor).run_requests
    reset = tick(defs, instance, None)
    assert not reset.run_requests and "waiting for 12 partitions" in reset.skip_reason.skip_message
    ran = run_backfills(defs, instance)
    assert [len(keys) for keys, _ in ran] == [10, 2] and all(r.success for _, r in ran)
    done = tick(defs, instance, rollout.cursor)
    assert not done.run_requests and "complete" in done.skip_reason.skip_message
    assert set(versions_in_table(settings).values()) == {"2"}

    per_partition, checksums, rows = {}, {}, {}
    for record in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=PREDS), limit=500).records:
        mat = record.asset_materialization
        if mat.metadata["model_version"].value == "2":
            per_partition[mat.partition] = per_partition.get(mat.partition, 0) + 1
            checksums[mat.partition] = mat.metadata["input_sha256"].value
            rows[mat.partition] = mat.metadata["dagster/row_count"].value
            assert "score_drift" in mat.metadata and "score_distribution" in mat.metadata
    assert per_partition == {d: 1 for d in days}  # every partition scored exactly once by version 2
    assert len(set(checksums.values())) == len(days)  # each partition its own figures, chunked or not
    with lake_connection(settings) as con:
        counted = dict(
            con.execute(
                "SELECT partition_date::VARCHAR, count(*) FROM predictions.risk_scores GROUP BY ALL"
            ).fetchall()
        )
    assert rows == counted
    storage = instance.event_log_storage
    for name in ("completeness", "dead_letters", "validity", "provenance", "score_drift"):
        history = storage.get_asset_check_execution_history(dg.AssetCheckKey(PREDS, name), limit=200)
        assert {h.partition for h in history} == set(days), name  # no chunk-level "—" result

    # the model asset's page agrees with `batch-assets rescore status` once the rollout is done
    said = []
    rescore.status(settings, instance, say=said.append)
    assert (
        f"version        2    {len(days)} partitions" in "\n".join(said) and "0 partitions behind" in said[-1]
    )
    observed = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["models", "risk_model"])), limit=1
    ).records[0]
    md = observed.asset_observation.metadata
    assert md["partitions_behind"].value == 0 and f"| 2 | {len(days)} |" in md["scored_by_version"].value

    # rollback to version 1: re-scored back the same way, with fresh run keys
    registry.promote("risk_model", "1")
    back = tick(defs, instance, done.cursor)
    assert [r.run_key for r in back.run_requests] == ["1:2026-09-14#2"]


def release_version_2(defs, instance, registry, tmp_path):
    """Promote a version 2, run its canary, submit the rollout's backfills; returns the releasing tick."""
    cursor = tick(defs, instance, None).cursor
    v2 = registry.register(
        "risk_model", write_artifact(tmp_path / "v2" / "m.safetensors", make_model(seed=2))
    )
    registry.promote("risk_model", v2.version)
    canary = tick(defs, instance, cursor)
    assert all(r.success for r in submit(defs, instance, canary.run_requests))
    rollout = tick(defs, instance, canary.cursor)
    submit(defs, instance, rollout.run_requests)
    return rollout


def test_cancel_pauses_the_rollout_and_resume_redoes_nothing_finished(world, instance, tmp_path):
    defs, days, settings, registry = world
    rollout = release_version_2(defs, instance, registry, tmp_path)
    run_backfills(defs, instance, limit=1)  # the newest chunk (10 partitions) finishes, then the cancel
    said = []
    cancelled = rescore.cancel(settings, instance, say=said.append)
    assert len(cancelled) == 1 and "cancelled" in said[0]
    assert [b.status for b in rescore.rollout_backfills(instance, "2#1")].count(
        BulkActionStatus.CANCELING
    ) == 1
    paused = tick(defs, instance, rollout.cursor)
    assert not paused.run_requests and "paused" in paused.skip_reason.skip_message
    assert not tick(defs, instance, paused.cursor).run_requests  # stays paused tick after tick
    rescore.resume(settings, instance, say=said.append)
    resumed = tick(defs, instance, paused.cursor)
    behind = [d for d, v in versions_in_table(settings).items() if v != "2"]
    assert sorted(chunk_partitions(resumed.run_requests)) == sorted(behind) and len(behind) == 3
    submit(defs, instance, resumed.run_requests)
    run_backfills(defs, instance)
    assert set(versions_in_table(settings).values()) == {"2"}
    finished = tick(defs, instance, resumed.cursor)
    assert "complete" in finished.skip_reason.skip_message
    scored_twice = [
        r.asset_materialization.partition
        for r in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=PREDS), limit=500).records
        if r.asset_materialization.metadata["model_version"].value == "2"
    ]
    assert sorted(scored_twice) == sorted(days)  # nothing re-scored twice by the resumed rollout


def test_stopping_and_starting_the_sensor_resumes_a_rollout_cancelled_in_the_ui(world, instance, tmp_path):
    defs, days, settings, registry = world
    rollout = release_version_2(defs, instance, registry, tmp_path)
    for backfill in rescore.rollout_backfills(instance, "2#1"):  # "Cancel backfill" in the UI
        instance.update_backfill(
            backfill.with_status(BulkActionStatus.CANCELED).with_end_timestamp(time.time())
        )
    paused = tick(defs, instance, rollout.cursor, started=time.time() - 3600)
    assert not paused.run_requests and "was cancelled" in paused.skip_reason.skip_message
    resumed = tick(defs, instance, paused.cursor, started=time.time())  # the sensor turned off and on
    assert sorted(chunk_partitions(resumed.run_requests)) == sorted(days[:-1])


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
    assert not any(r.success for r in submit(defs, instance, canary.run_requests))
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
