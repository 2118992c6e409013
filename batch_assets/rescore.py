"""`batch-assets rescore status|plan|cancel|resume`: which partitions are behind the champion, what the
rollout sensor would request now, and the pause button of a rollout.

- ``status``: partitions by the version that scored them, and the rollout's backfills.
- ``plan``: the sensor's decision for this tick against its stored cursor, launching nothing.
- ``cancel``: cancel the rollout's active backfills (the backfill daemon terminates their runs) and its
  queued canary, and record the cancel, so the sensor requests nothing more until a resume.
- ``resume``: record a resume; on its next tick the sensor requests the partitions still scored by another
  version, never those already re-scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus

from batch_assets.core import rollout
from batch_assets.core.registry import ModelNotFound, ModelRegistry
from batch_assets.core.rollout import RolloutState
from batch_assets.core.spec_file import SpecError, SpecFile
from batch_assets.history import partitions_by_version
from batch_assets.keys import scores_key
from batch_assets.sensors import (
    ROLLOUT_ID_TAG,
    evaluate_rollout,
    promotion_count,
    read_control,
    rollout_backfills,
    rollout_waves,
    sensor_name,
    write_control,
)
from batch_assets.settings import Settings


class RescoreError(Exception):
    """A rescore command that cannot do what was asked (said in one line)."""


def dataset_spec(settings: Settings, name: str | None) -> SpecFile:
    """The demo's spec, or the spec named ``name`` among ``settings.spec_locations``."""
    from batch_assets.datasets import demo_spec, load_datasets

    if name is None or name == demo_spec().name:
        return demo_spec()

    specs = load_datasets(list(settings.spec_locations))
    for spec in specs:
        if spec.name == name:
            return spec
    known = [demo_spec().name, *(s.name for s in specs)]
    raise SpecError(f"no scored dataset {name!r} (known: {', '.join(known)}; set BATCH_ASSETS_SPECS)")


def registry_of(settings: Settings) -> ModelRegistry:
    """The registry the runs read, through the same resource and settings."""
    from resources.builder import shell_resources

    return shell_resources(settings)["model_registry"].get_registry()


def stored_cursor(instance: dg.DagsterInstance, name: str) -> str | None:
    """The cursor the daemon stored for sensor ``name`` (None before its first tick)."""
    for state in instance.all_instigator_state():
        if state.name == name and state.instigator_data is not None:
            return getattr(state.instigator_data, "cursor", None)
    return None


def current_rollout(registry: ModelRegistry, spec: SpecFile) -> str | None:
    """The id of the rollout the alias asks for now (``{version}#{promotion}``)."""
    try:
        info = registry.resolve(spec.model.name, spec.model.alias)
    except ModelNotFound:
        return None
    return rollout.rollout_id(
        info.version, promotion_count(registry, spec.model.name, spec.model.alias, info.version)
    )


def require_rollout(settings: Settings, spec: SpecFile, verb: str) -> str:
    rid = current_rollout(registry_of(settings), spec)
    if rid is None:
        raise RescoreError(f"no version behind {spec.model.name}@{spec.model.alias}: no rollout to {verb}")
    return rid


def status(
    settings: Settings,
    instance: dg.DagsterInstance,
    say: Callable[[str], None],
    spec: SpecFile | None = None,
) -> dict[str, list[str]]:
    """Partitions grouped by the model version of their latest materialization, and the rollout."""
    spec = spec or dataset_spec(settings, None)
    registry = registry_of(settings)
    try:
        champion = registry.resolve(spec.model.name, spec.model.alias).version
    except ModelNotFound:
        champion = None
    by_version = partitions_by_version(instance, scores_key(spec))
    say(f"{spec.model.name}@{spec.model.alias} -> version {champion or '(none)'}")
    if not by_version:
        say(f"no partitions of {scores_key(spec).to_user_string()} materialized yet")
    for version, parts in sorted(by_version.items()):
        mark = "champion" if version == champion else "behind"
        say(f"version {version:>8}  {len(parts):4d} partitions  {parts[0]}..{parts[-1]}  ({mark})")
    behind = sum(len(p) for v, p in by_version.items() if v != champion)
    say(f"{behind} partitions behind the {spec.model.alias}")
    state = RolloutState.from_cursor(stored_cursor(instance, sensor_name(spec)))
    if state:
        waves = rollout_waves(instance, state.rollout_id)
        counts = {s: sum(1 for w in waves if w.status == s) for s in {w.status for w in waves}}
        say(
            f"rollout {state.rollout_id}: phase {state.phase}"
            + (f" ({state.reason})" if state.reason else "")
            + f", {len(waves)} backfills"
            + (f" ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})" if counts else "")
        )
    control = read_control(instance, spec)
    if control.get("cancelled_at") and control.get("cancelled_at", 0) > control.get("resumed_at", 0):
        say(f"rollout {control.get('rollout')} cancelled from the CLI: `batch-assets rescore resume` goes on")
    return by_version


def plan(
    settings: Settings,
    instance: dg.DagsterInstance,
    say: Callable[[str], None],
    spec: SpecFile | None = None,
) -> list[rollout.Request]:
    """Evaluate the rollout sensor once against its stored cursor and print the requests; launch nothing."""
    spec = spec or dataset_spec(settings, None)
    cursor = stored_cursor(instance, sensor_name(spec))
    requests, state, skip = evaluate_rollout(
        instance,
        registry_of(settings),
        spec,
        cursor,
        window=settings.rollout_window,
        max_per_tick=settings.rollout_max_per_tick,
    )
    if skip:
        say(f"nothing to request: {skip}")
    for r in requests:
        what = f"partition {r.partition}" if r.role == rollout.CANARY else f"backfill of {len(r.partitions)}"
        say(
            f"{r.key}\t{what}\t{r.role}\tmodel_version={state.version if state else ''}"
            + ("" if r.role == rollout.CANARY else f"\t{r.partitions[-1]}..{r.partitions[0]}")
        )
    if state:
        say(f"sensor state after this tick: version {state.version}, phase {state.phase}")
    return requests


def cancel(
    settings: Settings,
    instance: dg.DagsterInstance,
    say: Callable[[str], None],
    spec: SpecFile | None = None,
) -> list[str]:
    """Cancel the current rollout: its active backfills and a canary run not yet finished."""
    spec = spec or dataset_spec(settings, None)
    rid = require_rollout(settings, spec, "cancel")
    write_control(instance, spec, rollout=rid, cancelled_at=time.time())
    cancelled = []
    for backfill in rollout_backfills(instance, rid):
        if backfill.status == BulkActionStatus.REQUESTED:
            instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))
            cancelled.append(backfill.backfill_id)
    unfinished = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    for run in instance.get_runs(filters=dg.RunsFilter(tags={ROLLOUT_ID_TAG: rid}, statuses=unfinished)):
        if run.tags.get("dagster/backfill"):
            continue  # the backfill daemon terminates the runs of a cancelled backfill
        instance.run_coordinator.cancel_run(run.run_id)
        cancelled.append(run.run_id)
    say(
        f"rollout {rid} cancelled: {len(cancelled)} backfills and runs stopped; partitions already "
        "re-scored stay so. `batch-assets rescore resume` goes on with the rest."
    )
    return cancelled


def resume(
    settings: Settings,
    instance: dg.DagsterInstance,
    say: Callable[[str], None],
    spec: SpecFile | None = None,
) -> None:
    """Record a resume: the sensor's next tick requests what is still behind, nothing already re-scored."""
    spec = spec or dataset_spec(settings, None)
    rid = require_rollout(settings, spec, "resume")
    write_control(instance, spec, rollout=rid, resumed_at=time.time())
    behind = sum(
        len(p) for v, p in partitions_by_version(instance, scores_key(spec)).items() if v != rid.split("#")[0]
    )
    say(f"rollout {rid} resumed: the sensor requests the {behind} partitions still behind on its next tick")
