"""The model-rollout sensor: re-score history when the version behind an alias changes.

Thin wiring: it reads the alias from the registry, which version scored each partition (materialization
metadata) and how the canary run went, then asks ``scoring.rollout.decide`` what to request. The requested
runs carry the version and sha256 as tags, so they score with that version whatever the alias says by the
time they start, and retries never re-resolve it.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from batch_assets.history import scored_versions
from batch_assets.predictions import MODEL_SHA_TAG, MODEL_VERSION_TAG, ScoredDatasetSpec
from batch_assets.scoring.registry import ModelNotFound, ModelRegistry
from batch_assets.scoring.rollout import RolloutState, decide
from resources import ModelRegistryResource

ROLLOUT_ROLE_TAG = "batch-assets/rollout"
ROLLOUT_KEY_TAG = "batch-assets/rollout_key"
BLOCKING_CHECKS = ("completeness", "dead_letters", "validity", "provenance")


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
    if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
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
    spec: ScoredDatasetSpec,
    cursor: str | None,
    *,
    window: int | None,
    max_per_tick: int,
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """Run requests, new cursor and skip reason for one tick (shared by the sensor and ``rescore plan``)."""
    try:
        info = registry.resolve(spec.model_name, spec.model_alias)
    except ModelNotFound:
        info = None
    state = RolloutState.from_cursor(cursor)
    outcome = None
    if state is not None and state.phase == "canary" and state.canary_partition:
        outcome = canary_outcome(instance, state.run_key(state.canary_partition))
    decision = decide(
        alias_version=info.version if info else None,
        alias_sha256=info.sha256 if info else None,
        promotion=promotion_count(registry, spec.model_name, spec.model_alias, info.version) if info else 1,
        scored_by=scored_versions(instance, spec.asset_key),
        state=state,
        canary_outcome=outcome,
        window=window,
        max_per_tick=max_per_tick,
    )
    requests = [
        dg.RunRequest(
            run_key=r.run_key,
            partition_key=r.partition,
            tags={
                MODEL_VERSION_TAG: decision.state.version,
                MODEL_SHA_TAG: decision.state.sha256,
                ROLLOUT_ROLE_TAG: r.role,
                ROLLOUT_KEY_TAG: r.run_key,
            },
        )
        for r in decision.requests
    ]
    return requests, decision.state.to_cursor() if decision.state else cursor, decision.skip_reason


def build_rollout_sensor(
    spec: ScoredDatasetSpec,
    job: Any,
    *,
    window: int | None = None,
    max_per_tick: int = 10,
    tags: Mapping[str, str] | None = None,
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """A sensor that re-scores ``spec``'s partitions, canary first, when its model alias moves."""

    @dg.sensor(
        name=f"{spec.model_name}_{spec.model_alias}_rollout",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"When {spec.model_name}@{spec.model_alias} moves to another version: re-score the latest partition "
            f"as a canary, then, if its run and blocking checks pass, every partition still scored by another "
            f"version ({'all' if window is None else f'the newest {window}'}), at most {max_per_tick} runs per tick."
        ),
        tags=tags,
    )
    def _sensor(
        context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource
    ) -> dg.SensorResult:
        requests, cursor, skip = evaluate_rollout(
            context.instance,
            model_registry.get_registry(),
            spec,
            context.cursor,
            window=window,
            max_per_tick=max_per_tick,
        )
        if skip:
            context.log.info(skip)
            return dg.SensorResult(skip_reason=dg.SkipReason(skip), cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return _sensor
