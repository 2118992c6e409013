"""The only Definitions of batch-assets: the demo and every spec file, each built by ``build_dataset``,
merged with the shared resources and executor.

``defs`` is built lazily by Dagster when the code location loads; ``build_definitions`` takes explicit
settings so tests can point everything at a temporary folder.
"""

from __future__ import annotations

import dagster as dg

from batch_assets.datasets import build_dataset, load_datasets
from batch_assets.demo.pipeline import build_demo
from batch_assets.executors import build_executor
from batch_assets.predictions import SCORING_POOL
from batch_assets.settings import Settings
from resources import build_resources


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions of the embedded default, with every path under ``settings.home``.

    The demo is always there; each scored-dataset spec file named by ``settings.spec_locations``
    (``BATCH_ASSETS_SPECS``) adds its assets, checks, jobs and rollout sensor.
    """
    datasets = [
        build_dataset(
            dataset,
            window=settings.rollout_window,
            max_per_tick=settings.rollout_max_per_tick,
            rollout_interval_s=settings.rollout_interval_s,
        )
        for dataset in load_datasets(list(settings.spec_locations))
    ]
    built = dg.Definitions.merge(build_demo(settings), *datasets)
    scoring_ops = [  # the steps that get the GPU profile on Kubernetes
        a.op.name
        for a in built.assets or []
        if isinstance(a, dg.AssetsDefinition) and a.is_executable and a.op.pool == SCORING_POOL
    ]
    observe = dg.define_asset_job(  # `batch-assets models observe`
        "observe_models",
        selection=dg.AssetSelection.assets(
            *(k for a in built.assets or [] for k in getattr(a, "keys", ()) if k.path[0] == "models")
        ),
        description="Record the model version behind each scored dataset's alias.",
    )
    return dg.Definitions.merge(
        built,
        dg.Definitions(
            jobs=[observe],
            resources=build_resources(settings),
            executor=build_executor(settings, scoring_ops),
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
