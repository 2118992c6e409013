"""The second example, hourly device telemetry, from its spec file alone: Parquet folders -> features ->
failure scores with every check, then a promotion and the rollout sensor's ticks re-scoring history."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import torch

from batch_assets.core import byo
from batch_assets.core.registry import ModelRegistry
from batch_assets.datasets import build_dataset, load_datasets
from batch_assets.demo import device_example
from batch_assets.local_runs import execute_for_partition, failure_detail
from batch_assets.sensors import ROLLOUT_CHUNK_TAG
from resources import build_resources
from tests.conftest import lake_connection

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "batch_assets" / "specs" / "examples" / "device_failures.yaml"
ARCH = "batch_assets.demo.device_example:FailureNet"
HOURS = ["2026-11-01-00:00", "2026-11-01-01:00", "2026-11-01-02:00"]


def telemetry_root(settings) -> Path:
    """Where the example spec's `files` template points: {landing}/device_telemetry."""
    return settings.landing / device_example.DATASET


def register(settings, tmp_path, seed: int) -> str:
    """Train on the first hour, save a weights_only state dict, register it as a user model, promote it."""
    hours = device_example.write_telemetry(telemetry_root(settings), hours=len(HOURS), devices=300)
    model = device_example.train_failure_model(hours[:1], devices=300, seed=seed, epochs=10)
    weights = tmp_path / f"failure-{seed}.pt"
    torch.save(model.state_dict(), weights)
    artifact = byo.build_artifact(
        weights,
        tmp_path / f"failure-{seed}.safetensors",
        architecture=ARCH,
        init_kwargs={},
        reference=device_example.hour_folder(telemetry_root(settings), hours[0]),
        features=list(device_example.FEATURES),
        output_range=(0.0, 1.0),
    )
    registry = ModelRegistry(settings.registry)
    info = registry.register("failure_model", artifact)
    registry.promote("failure_model", info.version, "champion")
    return info.version


def tick(defs, instance, cursor):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"model_registry": defs.resources["model_registry"]},
    )
    return defs.resolve_sensor_def("failure_model_champion_rollout")(context)


def scored_versions(settings) -> dict[str, str]:
    with lake_connection(settings) as con:
        return dict(
            con.execute(
                "SELECT strftime(partition_date, '%Y-%m-%d-%H:%M'), string_agg(DISTINCT model_version) "
                "FROM predictions.failure_scores GROUP BY ALL"
            ).fetchall()
        )


@pytest.mark.slow
def test_example_from_its_spec_alone(settings, instance, tmp_path):
    (spec,) = load_datasets([EXAMPLE])
    defs = dg.Definitions.merge(
        build_dataset(spec, window=None, max_per_tick=10),
        dg.Definitions(resources=build_resources(settings)),
    )
    assert register(settings, tmp_path, seed=1) == "1"

    pipeline = defs.resolve_job_def("failure_scores_pipeline")
    for key in HOURS:
        result = execute_for_partition(pipeline, instance, key)
        assert result.success, key
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {
        "contract",
        "feature_drift",
        "completeness",
        "dead_letters",
        "validity",
        "provenance",
        "score_drift",
    }
    for name in ("contract", "completeness", "dead_letters", "validity", "provenance"):
        assert checks[name].passed, (name, checks[name].description)
    assert checks["completeness"].partition == HOURS[-1]
    assert scored_versions(settings) == dict.fromkeys(HOURS, "1")

    first = tick(defs, instance, None)
    assert not first.run_requests and "already scored by version 1" in first.skip_reason.skip_message

    assert register(settings, tmp_path, seed=2) == "2"
    canary = tick(defs, instance, first.cursor)
    assert [(r.partition_key, r.run_key) for r in canary.run_requests] == [(HOURS[-1], f"2:{HOURS[-1]}")]
    score = defs.resolve_job_def("score_failure_scores")
    (request,) = canary.run_requests
    assert execute_for_partition(score, instance, request.partition_key, tags=dict(request.tags)).success

    rollout = tick(defs, instance, canary.cursor)  # the rest: one backfill, run as one chunk over its range
    (chunk,) = rollout.run_requests
    assert chunk.requires_backfill_daemon()
    hours = sorted(chunk.tags[ROLLOUT_CHUNK_TAG].split(","))
    assert hours == HOURS[:-1]
    tags = dict(chunk.tags) | {
        "dagster/asset_partition_range_start": hours[0],
        "dagster/asset_partition_range_end": hours[-1],
    }
    assert score.execute_in_process(instance=instance, tags=tags, raise_on_error=False).success
    assert scored_versions(settings) == dict.fromkeys(HOURS, "2")


def test_missing_feature_column_fails_the_partition_naming_it(settings, instance, tmp_path):
    (spec,) = load_datasets([EXAMPLE])
    defs = dg.Definitions.merge(
        build_dataset(spec, window=None, max_per_tick=10),
        dg.Definitions(resources=build_resources(settings)),
    )
    folder = device_example.hour_folder(telemetry_root(settings), device_example.START)
    folder.mkdir(parents=True)
    table, _ = device_example.telemetry(device_example.START, 20)
    pq.write_table(table.drop_columns(["rpm"]), folder / "part-0.parquet")
    result = execute_for_partition(defs.resolve_job_def("failure_scores_pipeline"), instance, HOURS[0])
    assert not result.success
    assert "have no feature column 'rpm'" in failure_detail(result)
