"""Runs on the embedded default from the shell: one in-process run per partition, recorded in the instance
under ``$BATCH_ASSETS_HOME/dagster_home`` so the UI shows them like runs it launched itself."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import dagster as dg

from batch_assets.core.check_table import ANY_BLOCKING_CHECK
from batch_assets.settings import REPO_ROOT, Settings
from partitions import daily_partitions

# Runs log to the instance (the UI shows them); the console gets warnings and errors only.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def prepare_dagster_home(settings: Settings) -> Path:
    """Create the state folder and DAGSTER_HOME with the embedded default's dagster.yaml."""
    settings.ensure()
    target = settings.dagster_home / "dagster.yaml"
    if target.exists() and "duckdb_warehouse" in target.read_text():
        # The copy shipped before the lake: its pool limit of 1 (a DuckDB writer lock) would score one
        # partition at a time. Kept beside the new one, in case it was edited.
        target.replace(target.with_name("dagster.yaml.before-lake"))
    if not target.exists():
        shutil.copyfile(REPO_ROOT / "deployments" / "local" / "dagster.yaml", target)
    return settings.dagster_home


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance of the state folder (the one `make ui` serves)."""
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(settings)))


def execute_for_partition(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    partition_key: str,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """One in-process run of ``job`` for ``partition_key``.

    A checks-only job (``check_daily``) selects no asset, so Dagster 1.13 cannot infer its partitions to
    validate the key; its partition travels as the ``dagster/partition`` tag instead, after validating it
    against the shared partitions definition here.
    """
    if job.is_asset_job:
        return job.execute_in_process(
            instance=instance, partition_key=partition_key, tags=tags, raise_on_error=False, run_config=QUIET
        )
    if not daily_partitions.has_partition_key(partition_key):
        raise RunFailed(f"{partition_key} is not a partition of {job.name}")
    return job.execute_in_process(
        instance=instance,
        tags={**(tags or {}), "dagster/partition": partition_key},
        raise_on_error=False,
        run_config=QUIET,
    )


def run_partitions(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    partition_keys: Iterable[str],
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """Run ``job_name`` once per partition key, in order; stop at the first failure with its message."""
    job = defs.resolve_job_def(job_name)
    for key in partition_keys:
        result = execute_for_partition(job, instance, key)
        if not result.success:
            raise RunFailed(
                f"{job_name} failed for partition {key} (run {result.run_id}): {failure_detail(result)}"
            )
        say(f"{job_name} {key}: ok (run {result.run_id[:8]})")


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each blocking check (by the check table) that failed with ERROR in the run: what it judged, why it
    failed (its own description) and its key figures, one line each."""
    lines = []
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        ev = event.event_specific_data
        if ev.passed or ev.check_name not in ANY_BLOCKING_CHECK or ev.severity != dg.AssetCheckSeverity.ERROR:
            continue
        figures = [
            f"{k}={v.value}"
            for k, v in ev.metadata.items()
            if isinstance(v.value, int | float | bool) and not k.startswith("dagster/")
        ][:6]
        where = f"{ev.asset_key.to_user_string()} {ev.partition or ''}".strip()
        lines.append(
            f"{where}: {ev.check_name} failed: {ev.description}"
            + (f" ({', '.join(figures)})" if figures else "")
        )
    return lines


def failure_detail(result: dg.ExecuteInProcessResult) -> str:
    """The root cause of the first failed step, in one line of text, and the reason of each failed
    blocking check on lines of their own."""
    checks = failed_checks(result)
    if checks:
        return "blocking checks failed:\n  " + "\n  ".join(checks)
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None or failure.step_failure_data.error is None:
        return "see the run in the UI"
    error = failure.step_failure_data.error
    while error.cause is not None:  # the step wrapper says only "Error occurred while executing op"
        error = error.cause
    return f"{failure.step_key}: {error.message.strip()}"


class RunFailed(RuntimeError):
    """A run launched from the shell failed; the message carries the step's error."""
