"""Scored datasets from spec files: everything the demo has, built from one YAML file per dataset.

For each spec the platform builds, exactly as for the demo: the features asset (from the spec's Parquet
folders, or an external asset when another tool writes the table), the model's observable source asset,
the partitioned predictions and summary assets, their checks, two jobs (``<name>_pipeline``: features ->
predictions -> summary; ``score_<name>``: feature checks, predictions and summary) and the model rollout
sensor. Spec files come from ``BATCH_ASSETS_SPECS`` (files or folders, separated by ``:``).
"""

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

from batch_assets.checks import build_checks
from batch_assets.core.spec_file import SpecError, SpecFile, load_spec_file, spec_paths
from batch_assets.errors import permanent_errors
from batch_assets.keys import (
    features_key,
    partition_value,
    partitions_of,
    pipeline_job_name,
    score_job_name,
)
from batch_assets.observability import Stopwatch
from batch_assets.predictions import build_model_source, build_scored_asset, build_summary_asset
from batch_assets.sensors import build_rollout_sensor
from batch_assets.storage.feature_files import partition_folder, read_feature_files, replace_feature_partition
from resources import LandingResource, WarehouseResource

# The demo pipeline, daily card-transaction risk scoring, is a spec file like any other.
DEMO_SPEC_FILE = Path(__file__).resolve().parent / "specs" / "risk_scores.yaml"


@cache
def demo_spec() -> SpecFile:
    """The demo's spec, read from ``specs/risk_scores.yaml`` on first use (not at import)."""
    return load_spec_file(DEMO_SPEC_FILE)


def load_datasets(locations: list[Path]) -> list[SpecFile]:
    """Every spec file at ``locations``; names, tables and models must not clash with each other or the demo."""
    specs = [load_spec_file(p) for p in spec_paths(locations)]
    seen: dict[tuple[str, str], str] = {}
    for spec, source in [(demo_spec(), "the demo"), *((s, str(s.source)) for s in specs)]:
        for field_name, value in [
            ("name", spec.name),
            ("output.table", spec.output.table),
            ("model.name", spec.model.name),
            ("features.asset", spec.features.asset),
        ]:
            other = seen.get((field_name, value))
            if other:
                raise SpecError(
                    f"{source}: invalid spec\n  {field_name}: {value!r} is already used by {other}"
                )
            seen[(field_name, value)] = source
    return specs


def build_file_features_asset(spec: SpecFile) -> dg.AssetsDefinition:
    """The features asset of a spec with ``features.files``: one partition folder of Parquet files per run."""
    features, path = spec.features, spec.source or Path("spec.yaml")
    columns = list(features.columns)
    base = path.parent

    @dg.asset(
        key=features_key(spec),
        group_name="features",
        partitions_def=partitions_of(spec),
        kinds={"deltalake", "parquet"},
        description=(
            f"{features.table}: {features.key} and {len(columns)} feature columns of each partition, loaded "
            f"from the Parquet files in {features.files} (relative to {base}); built from {path.name}."
        ),
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(features.key, "BIGINT"),
                    dg.TableColumn("partition_date", spec.partition_type),
                ]
                + [dg.TableColumn(c, "DOUBLE") for c in columns]
            ),
            "spec_file": str(path),
        },
    )
    def _features(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
    ) -> dg.MaterializeResult:
        watch = Stopwatch()
        key = context.partition_key
        value = partition_value(spec, key)
        with permanent_errors():
            folder = partition_folder(
                features.files or "",
                base=base,
                landing=landing.path,
                partition_key=key,
                start=context.partition_time_window.start,
            )
            rows = read_feature_files(folder, key=features.key, columns=columns)
        with warehouse.connect() as con, permanent_errors():
            n = replace_feature_partition(
                con,
                warehouse.lake(),
                table=features.table,
                key=features.key,
                columns=columns,
                partition_type=spec.partition_type,
                value=value,
                rows=rows,
                metadata={"run_id": context.run.run_id, "folder": str(folder)},
            )
        context.log.info("features %s: %d rows from %s", key, n, folder)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": n,
                "folder": str(folder),
                "duration_s": round(watch.seconds, 3),
                "table": features.table,
            }
        )

    return _features


def build_dataset(
    spec: SpecFile,
    *,
    window: int | None,
    max_per_tick: int,
    rollout_interval_s: int = 30,
    features: Sequence[dg.AssetsDefinition] | None = None,
    pipeline_job: str | None = None,
    score_job: str | None = None,
) -> dg.Definitions:
    """Assets, checks, jobs and the rollout sensor (ticking every ``rollout_interval_s``) of one dataset.

    The features asset comes from the spec (its Parquet folders, or an external asset when another tool
    writes the table) unless ``features`` gives the assets that compute it (the demo's raw and SQL
    feature assets); ``pipeline_job`` and ``score_job`` rename the two jobs.
    """
    materialized_features: list[Any] = list(features or [])
    if features is None and spec.features.files:
        materialized_features = [build_file_features_asset(spec)]
    declared: list[Any] = []
    if not materialized_features:  # another tool writes the table: the asset is declared, not materialized
        declared = [
            dg.AssetSpec(
                key=features_key(spec),
                group_name="features",
                partitions_def=partitions_of(spec),
                description=f"{spec.features.table}, written outside this code location (external asset).",
            )
        ]
    scored = build_scored_asset(spec)
    summary = build_summary_asset(spec)
    model = build_model_source(spec)
    pipeline = dg.define_asset_job(
        pipeline_job or pipeline_job_name(spec),
        selection=dg.AssetSelection.assets(scored, summary, *materialized_features)
        | dg.AssetSelection.checks_for_assets(features_key(spec)),
        description=f"The whole chain of {spec.name} for one partition: features -> predictions -> summary, "
        "with every check.",
    )
    score = dg.define_asset_job(
        score_job or score_job_name(spec),
        selection=dg.AssetSelection.assets(scored, summary)
        | dg.AssetSelection.checks_for_assets(features_key(spec)),
        description=f"Check one partition of {features_key(spec).to_user_string()}, score it with "
        f"{spec.model.name}@{spec.model.alias}, check the scores and publish the summary.",
    )
    return dg.Definitions(
        assets=[*materialized_features, *declared, model, scored, summary],
        asset_checks=build_checks(spec),
        jobs=[pipeline, score],
        sensors=[
            build_rollout_sensor(
                spec, window=window, max_per_tick=max_per_tick, minimum_interval_seconds=rollout_interval_s
            )
        ],
    )
