"""The model-rollout sensor: re-score history when the version behind an alias changes.

Thin wiring: it reads the alias from the registry, which version scored each partition (materialization
metadata), how the canary run went and which backfills the rollout already has, then asks
``core.rollout.decide`` what to request: the canary as a run with a run key, the rest as chunked
backfills of the predictions and summary assets (``RunRequest.for_asset_graph_subset``: the assets'
backfill policy makes each chunk one run that loads the model once). Runs and backfills carry the version
and sha256 as tags, so they score with that version whatever the alias says by the time they start.
"""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

from batch_assets.core import rollout
from batch_assets.core.check_table import BLOCKING_PREDICTION_CHECKS
from batch_assets.core.registry import ModelNotFound, ModelRegistry
from batch_assets.core.rollout import RolloutState, Wave, decide
from batch_assets.core.spec_file import SpecFile
from batch_assets.history import scored_versions
from batch_assets.keys import features_key, partitions_of, scores_key, summary_key
from batch_assets.predictions import MODEL_SHA_TAG, MODEL_VERSION_TAG
from resources import ModelRegistryResource

ROLLOUT_ROLE_TAG = "batch-assets/rollout"
ROLLOUT_KEY_TAG = "batch-assets/rollout_key"
ROLLOUT_ID_TAG = "batch-assets/rollout_id"  # {version}#{promotion}, on the canary and every backfill
ROLLOUT_CHUNK_TAG = "batch-assets/rollout_partitions"  # the chunk's partition keys, comma-separated
BLOCKING_CHECKS = BLOCKING_PREDICTION_CHECKS
CONTROL_KEY = "batch-assets/rollout-control/{sensor}"  # the instance's key-value store: cancel and resume

_WAVE_STATUS = {
    BulkActionStatus.REQUESTED: rollout.ACTIVE,
    BulkActionStatus.CANCELING: rollout.CANCELED,
    BulkActionStatus.CANCELED: rollout.CANCELED,
    BulkActionStatus.COMPLETED: rollout.FINISHED,
    BulkActionStatus.COMPLETED_SUCCESS: rollout.FINISHED,
    BulkActionStatus.COMPLETED_FAILED: rollout.BROKEN,
    BulkActionStatus.FAILING: rollout.BROKEN,
    BulkActionStatus.FAILED: rollout.BROKEN,
}


def sensor_name(spec: SpecFile) -> str:
    return f"{spec.model.name}_{spec.model.alias}_rollout"


def rollout_backfills(instance: dg.DagsterInstance, rollout_id: str) -> list[Any]:
    """Every backfill of one rollout (newest first)."""
    return list(instance.get_backfills(filters=BulkActionsFilter(tags={ROLLOUT_ID_TAG: rollout_id})))


def rollout_waves(instance: dg.DagsterInstance, rollout_id: str) -> list[Wave]:
    return [
        Wave(
            backfill_id=b.backfill_id,
            partitions=tuple(p for p in b.tags.get(ROLLOUT_CHUNK_TAG, "").split(",") if p),
            status=_WAVE_STATUS.get(b.status, rollout.ACTIVE),
            at=b.backfill_end_timestamp or b.backfill_timestamp,
        )
        for b in rollout_backfills(instance, rollout_id)
    ]


def read_control(instance: dg.DagsterInstance, spec: SpecFile) -> dict[str, Any]:
    """The last cancel and resume the CLI recorded for ``spec``'s rollout sensor."""
    key = CONTROL_KEY.format(sensor=sensor_name(spec))
    raw = instance.run_storage.get_cursor_values({key}).get(key)
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}


def write_control(instance: dg.DagsterInstance, spec: SpecFile, **values: Any) -> dict[str, Any]:
    control = read_control(instance, spec) | values
    key = CONTROL_KEY.format(sensor=sensor_name(spec))
    instance.run_storage.set_cursor_values({key: json.dumps(control, sort_keys=True)})
    return control


def promotion_count(registry: ModelRegistry, name: str, alias: str, version: str) -> int:
    """How many times ``alias`` has been pointed at ``version`` (1 for a first promotion)."""
    events = [e for e in registry.events(name) if e.get("event") == "promote" and e.get("alias") == alias]
    return max(1, sum(1 for e in events if e.get("version") == version))


def canary_outcome(instance: dg.DagsterInstance, run_key: str) -> str | None:
    """None while the canary run is missing or running; "success"; or why it failed."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={ROLLOUT_KEY_TAG: run_key}), limit=1)
    if not runs:
        return None
    run = runs[0]
    if run.status == dg.DagsterRunStatus.SUCCESS:
        failed = []
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.get_dagster_event().event_specific_data
            if evaluation.check_name in BLOCKING_CHECKS and not evaluation.passed:
                failed.append(f"{evaluation.check_name}: {evaluation.description}")
        return "success" if not failed else "blocking check failed: " + "; ".join(failed)
    if run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING):
        return rollout.CANCELLED_RUN
    if run.status == dg.DagsterRunStatus.FAILURE:
        failures = [
            e.get_dagster_event()
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
        detail = "; ".join(
            f"{f.step_key}: {f.step_failure_data.error.message.strip().splitlines()[-1] if f.step_failure_data.error else ''}"
            for f in failures
        )
        return f"run {run.run_id[:8]} {run.status.value.lower()}" + (f" ({detail})" if detail else "")
    return None


def evaluate_rollout(
    instance: dg.DagsterInstance,
    registry: ModelRegistry,
    spec: SpecFile,
    cursor: str | None,
    *,
    window: int | None,
    max_per_tick: int,
    last_started: float | None = None,
) -> tuple[list[rollout.Request], RolloutState | None, str | None]:
    """Requests, new state and skip reason for one tick (shared by the sensor and ``rescore plan``)."""
    try:
        info = registry.resolve(spec.model.name, spec.model.alias)
    except ModelNotFound:
        info = None
    state = RolloutState.from_cursor(cursor)
    promotion = promotion_count(registry, spec.model.name, spec.model.alias, info.version) if info else 1
    outcome = None
    if state is not None and state.phase == rollout.CANARY and state.canary_partition:
        outcome = canary_outcome(instance, state.run_key(state.canary_partition))
    waves = rollout_waves(instance, rollout.rollout_id(info.version, promotion)) if info else []
    control = read_control(instance, spec)
    this = info is not None and control.get("rollout") == rollout.rollout_id(info.version, promotion)
    resumed = [t for t in (last_started, control.get("resumed_at") if this else None) if t]
    decision = decide(
        alias_version=info.version if info else None,
        alias_sha256=info.sha256 if info else None,
        promotion=promotion,
        scored_by=scored_versions(instance, scores_key(spec)),
        state=state,
        canary_outcome=outcome,
        waves=waves,
        window=window,
        chunk=spec.scoring.backfill_chunk,
        max_per_tick=max_per_tick,
        resumed_at=max(resumed) if resumed else None,
        cancelled_at=control.get("cancelled_at") if this else None,
    )
    return decision.requests, decision.state or state, decision.skip_reason


def to_run_request(spec: SpecFile, state: RolloutState, request: rollout.Request) -> dg.RunRequest:
    """The canary as a run of one partition; a chunk as a backfill of predictions and summary."""
    tags = {
        MODEL_VERSION_TAG: state.version,
        MODEL_SHA_TAG: state.sha256,
        ROLLOUT_ROLE_TAG: request.role,
        ROLLOUT_KEY_TAG: request.key,
        ROLLOUT_ID_TAG: state.rollout_id,
    }
    if request.role == rollout.CANARY:
        return dg.RunRequest(run_key=request.key, partition_key=request.partition, tags=tags)
    subset = partitions_of(spec).subset_with_partition_keys(request.partitions)
    return dg.RunRequest.for_asset_graph_subset(
        AssetGraphSubset(
            partitions_subsets_by_asset_key={scores_key(spec): subset, summary_key(spec): subset}
        ),
        tags=tags | {ROLLOUT_CHUNK_TAG: ",".join(request.partitions)},
    )


def rollout_selection(spec: SpecFile) -> dg.AssetSelection:
    """What a rollout re-materializes: the predictions and the summary, with their checks and the feature
    checks the score job runs (the canary is a run of this selection; the chunks are backfills of it)."""
    return dg.AssetSelection.assets(
        scores_key(spec), summary_key(spec)
    ) | dg.AssetSelection.checks_for_assets(features_key(spec))


def build_rollout_sensor(
    spec: SpecFile,
    *,
    window: int | None = None,
    max_per_tick: int = 10,
    tags: Mapping[str, str] | None = None,
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """A sensor that re-scores ``spec``'s partitions, canary first, when its model alias moves."""

    @dg.sensor(
        name=sensor_name(spec),
        # an asset selection, not a job: a sensor may request backfills only of its asset selection
        asset_selection=rollout_selection(spec),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"When {spec.model.name}@{spec.model.alias} moves to another version: re-score the latest partition "
            f"as a canary, then, if its run and blocking checks pass, every partition still scored by another "
            f"version ({'all' if window is None else f'the newest {window}'}), newest first, as backfills of "
            f"at most {spec.scoring.backfill_chunk} partitions (one run each), at most {max_per_tick} per tick. "
            "Pause: cancel the rollout's backfill (or `batch-assets rescore cancel`); resume: stop and start "
            "this sensor (or `batch-assets rescore resume`)."
        ),
        tags=tags,
    )
    def _sensor(
        context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource
    ) -> dg.SensorResult:
        requests, state, skip = evaluate_rollout(
            context.instance,
            model_registry.get_registry(),
            spec,
            context.cursor,
            window=window,
            max_per_tick=max_per_tick,
            last_started=context.last_sensor_start_time,
        )
        cursor = state.to_cursor() if state else context.cursor
        if skip:
            context.log.info(skip)
            return dg.SensorResult(skip_reason=dg.SkipReason(skip), cursor=cursor)
        assert state is not None
        return dg.SensorResult(run_requests=[to_run_request(spec, state, r) for r in requests], cursor=cursor)

    return _sensor
