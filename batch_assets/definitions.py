"""The only Definitions of batch-assets: assets, jobs and resources, bound once here.

``defs`` is built lazily by Dagster when the code location loads; ``build_definitions`` takes explicit
settings so tests can point everything at a temporary folder.
"""

from __future__ import annotations

import dagster as dg

from batch_assets.features import customer_daily_features
from batch_assets.predictions import risk_model, risk_scores, risk_summary
from batch_assets.raw import raw_transactions
from batch_assets.settings import Settings
from partitions import daily_partitions
from resources import build_resources

ASSETS = [raw_transactions, customer_daily_features, risk_model, risk_scores, risk_summary]

ingest_job = dg.define_asset_job(
    "ingest_daily",
    selection=dg.AssetSelection.assets(raw_transactions, customer_daily_features),
    partitions_def=daily_partitions,
    description="Load one day of landing files and compute its features.",
)
score_job = dg.define_asset_job(
    "score_daily",
    selection=dg.AssetSelection.assets(risk_scores, risk_summary),
    partitions_def=daily_partitions,
    description="Score one day of features with the champion model and publish its summary.",
)
daily_pipeline_job = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.assets(raw_transactions, customer_daily_features, risk_scores, risk_summary),
    partitions_def=daily_partitions,
    description="The whole chain for one day: raw -> features -> predictions -> summary.",
)
observe_models_job = dg.define_asset_job(
    "observe_models",
    selection=dg.AssetSelection.keys(risk_model.key),
    description="Record the model version behind the champion alias.",
)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions of the embedded default, with every path under ``settings.home``."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=[ingest_job, score_job, daily_pipeline_job, observe_models_job],
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
