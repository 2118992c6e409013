"""The demo's Definitions: its spec (``specs/risk_scores.yaml``) built by ``build_dataset`` like any other,
with its features computed in SQL from raw transactions, plus what only the demo has: the ingest job, the
check job, the model observation job, the daily schedule and the failure-metrics sensor."""

from __future__ import annotations

import dagster as dg

from batch_assets.datasets import build_dataset, demo_spec
from batch_assets.features import customer_daily_features
from batch_assets.keys import partitions_of, scores_key
from batch_assets.observability import build_failure_metrics_sensor
from batch_assets.predictions import MODEL_VERSION_TAG
from batch_assets.raw import raw_transactions
from batch_assets.schedules import build_daily_schedule
from batch_assets.settings import Settings
from partitions import daily_partitions

PIPELINE_JOB, SCORE_JOB = "daily_pipeline", "score_daily"


def build_demo(settings: Settings) -> dg.Definitions:
    spec = demo_spec()
    scoring = build_dataset(
        spec,
        window=settings.rollout_window,
        max_per_tick=settings.rollout_max_per_tick,
        rollout_interval_s=settings.rollout_interval_s,
        features=[raw_transactions, customer_daily_features],
        pipeline_job=PIPELINE_JOB,
        score_job=SCORE_JOB,
    )
    ingest = dg.define_asset_job(
        "ingest_daily",
        selection=dg.AssetSelection.assets(raw_transactions, customer_daily_features).without_checks()
        | dg.AssetSelection.checks(dg.AssetCheckKey(customer_daily_features.key, "contract")),
        description="Load one day of landing files, compute its features and check their contract.",
    )
    check = dg.define_asset_job(
        "check_daily",
        selection=dg.AssetSelection.checks_for_assets(customer_daily_features.key, scores_key(spec)),
        partitions_def=daily_partitions,
        description="Re-run every check of one day's features and scores without rematerializing them.",
    )
    (pipeline,) = [job for job in scoring.jobs or [] if job.name == PIPELINE_JOB]
    return dg.Definitions.merge(
        scoring,
        dg.Definitions(
            jobs=[ingest, check],
            sensors=[build_failure_metrics_sensor(scores_key(spec), partitions_of(spec), MODEL_VERSION_TAG)],
            schedules=[
                build_daily_schedule(
                    pipeline, spec, cron=settings.schedule_cron, timezone=settings.schedule_timezone
                )
            ],
        ),
    )
