"""The daily schedule: after a day closes, run the whole chain for it."""

from typing import Any

import dagster as dg

from partitions import daily_partitions


def build_daily_schedule(job: Any, *, cron: str, timezone: str) -> dg.ScheduleDefinition:
    """Run ``job`` for the most recent closed day at ``cron`` in ``timezone``.

    The model version is resolved when the scoring step starts and recorded on every row, like any run.
    """

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Runs {job.name} for the last closed day at '{cron}' ({timezone}).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        key = daily_partitions.get_last_partition_key(current_time=context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason("no closed day yet")
        return dg.RunRequest(run_key=f"scheduled:{key}", partition_key=key)

    return _schedule
