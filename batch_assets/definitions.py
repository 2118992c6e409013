"""The only Definitions of batch-assets: assets, jobs and resources, bound once here.

``defs`` is built lazily by Dagster when the code location loads; ``build_definitions`` takes explicit
settings so tests can point everything at a temporary folder.
"""

from __future__ import annotations

import dagster as dg

from batch_assets.checks import build_checks
from batch_assets.datasets import build_dataset, load_datasets
from batch_assets.features import customer_daily_features
from batch_assets.observability import build_failure_metrics_sensor
from batch_assets.predictions import (
    MODEL_VERSION_TAG,
    RISK_SCORES,
    risk_model,
    risk_scores,
    risk_summary,
)
from batch_assets.raw import raw_transactions
from batch_assets.schedules import build_daily_schedule
from batch_assets.sensors import build_rollout_sensor
from batch_assets.settings import Settings
from partitions import daily_partitions
from resources import build_resources

ASSETS = [raw_transactions, customer_daily_features, risk_model, risk_scores, risk_summary]
CHECKS = build_checks(RISK_SCORES)
FEATURE_CHECKS = dg.AssetSelection.checks_for_assets(customer_daily_features)

ingest_job = dg.define_asset_job(
    "ingest_daily",
    selection=dg.AssetSelection.assets(raw_transactions, customer_daily_features).without_checks()
    | dg.AssetSelection.checks(dg.AssetCheckKey(customer_daily_features.key, "contract")),
    description="Load one day of landing files, compute its features and check their contract.",
)
score_job = dg.define_asset_job(
    "score_daily",
    selection=dg.AssetSelection.assets(risk_scores, risk_summary) | FEATURE_CHECKS,
    description="Check one day of features, score it with the champion model, check the scores and publish "
    "the summary when the blocking checks pass.",
)
daily_pipeline_job = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.assets(raw_transactions, customer_daily_features, risk_scores, risk_summary),
    description="The whole chain for one day: raw -> features -> predictions -> summary.",
)
check_job = dg.define_asset_job(
    "check_daily",
    selection=dg.AssetSelection.checks_for_assets(customer_daily_features, risk_scores),
    partitions_def=daily_partitions,
    description="Re-run every check of one day's features and scores without rematerializing them.",
)
observe_models_job = dg.define_asset_job(
    "observe_models",
    selection=dg.AssetSelection.assets(risk_model.key),
    description="Record the model version behind the champion alias.",
)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions of the embedded default, with every path under ``settings.home``.

    The demo is always there; each scored-dataset spec file named by ``settings.spec_locations``
    (``BATCH_ASSETS_SPECS``) adds its assets, checks, jobs and rollout sensor.
    """
    extra: dict[str, list] = {"assets": [], "asset_checks": [], "jobs": [], "sensors": []}
    for dataset in load_datasets(list(settings.spec_locations)):
        built = build_dataset(
            dataset,
            window=settings.rollout_window,
            max_per_tick=settings.rollout_max_per_tick,
            rollout_interval_s=settings.rollout_interval_s,
        )
        for kind, defs_of_kind in built.items():
            extra[kind] += defs_of_kind
    return dg.Definitions(
        assets=ASSETS + extra["assets"],
        asset_checks=CHECKS + extra["asset_checks"],
        jobs=[ingest_job, score_job, daily_pipeline_job, check_job, observe_models_job, *extra["jobs"]],
        sensors=[
            build_rollout_sensor(
                RISK_SCORES,
                window=settings.rollout_window,
                max_per_tick=settings.rollout_max_per_tick,
                minimum_interval_seconds=settings.rollout_interval_s,
            ),
            build_failure_metrics_sensor(
                RISK_SCORES.asset_key, RISK_SCORES.partitions_def, MODEL_VERSION_TAG
            ),
            *extra["sensors"],
        ],
        schedules=[
            build_daily_schedule(
                daily_pipeline_job,
                RISK_SCORES,
                cron=settings.schedule_cron,
                timezone=settings.schedule_timezone,
            )
        ],
        resources=build_resources(settings),
        executor=build_executor(settings),
    )


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """``BATCH_ASSETS_EXECUTOR``: in_process (default), multiprocess, or k8s (one pod per step)."""
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "multiprocess":
        # Step processes fork from a server that has already imported this module (dagster, torch,
        # duckdb): a step starts in well under a second instead of paying the imports again.
        return dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["batch_assets.definitions"]}}},
            name="multiprocess",
        )
    from dagster_k8s import k8s_job_executor

    from batch_assets.k8s import executor_config, parse_node_selector

    scoring_op = risk_scores.op.name
    config = executor_config(
        scoring_op, settings.k8s_scoring_gpu, parse_node_selector(settings.k8s_gpu_node_selector)
    )
    return k8s_job_executor.configured(config, name="k8s")


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
