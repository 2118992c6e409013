"""The daily schedule: after a day closes, run the whole chain for it."""

import datetime as dt
from typing import Any

import dagster as dg

from batch_assets.core.registry import ModelNotFound
from batch_assets.core.spec_file import SpecFile
from batch_assets.predictions import MODEL_SHA_TAG, MODEL_VERSION_TAG
from partitions import DAILY_START_DATE
from resources import ModelRegistryResource


def build_daily_schedule(job: Any, spec: SpecFile, *, cron: str, timezone: str) -> dg.ScheduleDefinition:
    """Run ``job`` for the most recent closed day at ``cron`` in ``timezone``.

    The model version behind the alias is resolved when the run is requested and pinned on it as tags, so
    the run scores with that version even if the alias moves before its scoring step starts.
    """

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Runs {job.name} for the last closed day at '{cron}' ({timezone}), pinned to the version "
        f"behind {spec.model.name}@{spec.model.alias} at that moment.",
    )
    def _schedule(
        context: dg.ScheduleEvaluationContext, model_registry: ModelRegistryResource
    ) -> dg.RunRequest | dg.SkipReason:
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        key = (tick.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()  # the last closed UTC day
        if key < DAILY_START_DATE:
            return dg.SkipReason(f"{key} is before the first partition {DAILY_START_DATE}")
        try:
            info = model_registry.get_registry().resolve(spec.model.name, spec.model.alias)
        except ModelNotFound as exc:
            return dg.SkipReason(f"cannot score {key}: {exc}")
        return dg.RunRequest(
            run_key=f"scheduled:{key}",
            partition_key=key,
            tags={MODEL_VERSION_TAG: info.version, MODEL_SHA_TAG: info.sha256},
        )

    return _schedule
