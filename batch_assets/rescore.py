"""`batch-assets rescore status|plan`: which partitions are behind the champion, and what the rollout
sensor would request now (run keys included), without launching anything."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from batch_assets.history import partitions_by_version
from batch_assets.predictions import RISK_SCORES, ScoredDatasetSpec
from batch_assets.scoring.registry import ModelNotFound, ModelRegistry
from batch_assets.scoring.rollout import RolloutState
from batch_assets.scoring.spec_file import SpecError
from batch_assets.sensors import evaluate_rollout
from batch_assets.settings import Settings, s3_options_from_env


def dataset_spec(settings: Settings, name: str | None) -> ScoredDatasetSpec:
    """The demo's spec, or the spec named ``name`` among ``settings.spec_locations``."""
    if name is None or name == RISK_SCORES.name:
        return RISK_SCORES
    from batch_assets.datasets import load_datasets

    datasets = load_datasets(list(settings.spec_locations))
    for dataset in datasets:
        if dataset.spec.name == name:
            return dataset.spec
    known = [RISK_SCORES.name, *(d.spec.name for d in datasets)]
    raise SpecError(f"no scored dataset {name!r} (known: {', '.join(known)}; set BATCH_ASSETS_SPECS)")


def sensor_name(spec: ScoredDatasetSpec) -> str:
    return f"{spec.model_name}_{spec.model_alias}_rollout"


def stored_cursor(instance: dg.DagsterInstance, name: str) -> str | None:
    """The cursor the daemon stored for sensor ``name`` (None before its first tick)."""
    for state in instance.all_instigator_state():
        if state.name == name and state.instigator_data is not None:
            return getattr(state.instigator_data, "cursor", None)
    return None


def status(
    settings: Settings,
    instance: dg.DagsterInstance,
    say: Callable[[str], None],
    spec: ScoredDatasetSpec = RISK_SCORES,
) -> dict[str, list[str]]:
    """Partitions grouped by the model version of their latest materialization."""
    registry = ModelRegistry(settings.registry_location, s3_options_from_env())
    try:
        champion = registry.resolve(spec.model_name, spec.model_alias).version
    except ModelNotFound:
        champion = None
    by_version = partitions_by_version(instance, spec.asset_key)
    say(f"{spec.model_name}@{spec.model_alias} -> version {champion or '(none)'}")
    if not by_version:
        say(f"no partitions of {spec.asset_key.to_user_string()} materialized yet")
    for version, parts in sorted(by_version.items()):
        mark = "champion" if version == champion else "behind"
        say(f"version {version:>8}  {len(parts):4d} partitions  {parts[0]}..{parts[-1]}  ({mark})")
    behind = sum(len(p) for v, p in by_version.items() if v != champion)
    say(f"{behind} partitions behind the {spec.model_alias}")
    state = RolloutState.from_cursor(stored_cursor(instance, sensor_name(spec)))
    if state:
        say(
            f"rollout sensor: version {state.version} phase {state.phase}"
            + (f" ({state.reason})" if state.reason else "")
            + f", {len(state.requested)} partitions requested"
        )
    return by_version


def plan(
    settings: Settings,
    instance: dg.DagsterInstance,
    say: Callable[[str], None],
    spec: ScoredDatasetSpec = RISK_SCORES,
) -> list[dg.RunRequest]:
    """Evaluate the rollout sensor once against its stored cursor and print the requests; launch nothing."""
    cursor = stored_cursor(instance, sensor_name(spec))
    requests, new_cursor, skip = evaluate_rollout(
        instance,
        ModelRegistry(settings.registry_location, s3_options_from_env()),
        spec,
        cursor,
        window=settings.rollout_window,
        max_per_tick=settings.rollout_max_per_tick,
    )
    if skip:
        say(f"nothing to request: {skip}")
    for r in requests:
        say(
            f"{r.run_key}\tpartition {r.partition_key}\t{r.tags.get('batch-assets/rollout')}\t"
            f"model_version={r.tags.get('batch-assets/model_version')}"
        )
    state = RolloutState.from_cursor(new_cursor)
    if state:
        say(f"sensor state after this tick: version {state.version}, phase {state.phase}")
    return requests
