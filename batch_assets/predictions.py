"""Stage 3, predictions: a factory that builds a scored-predictions asset (and its model source) from a spec.

The demo's ``predictions/risk_scores`` and ``predictions/risk_summary`` are one instance of it, read from
``specs/risk_scores.yaml`` when the definitions are built (``datasets.demo_spec``), never at import. A
user scores their own dataset by writing such a spec file (a ``core.spec_file.SpecFile``, wired by
``batch_assets.datasets``), not by copying code.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
import torch
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from batch_assets.core.registry import ModelNotFound, ModelVersion
from batch_assets.core.report import score_report
from batch_assets.core.scorer import ScoreStats
from batch_assets.core.spec_file import SpecFile
from batch_assets.errors import RETRY_POLICY, permanent_errors
from batch_assets.history import scored_versions
from batch_assets.k8s import scoring_op_tags
from batch_assets.keys import features_key, model_key, partition_value, partitions_of, scores_key, summary_key
from batch_assets.observability import Stopwatch, peak_rss_mb, push_partition_metrics
from batch_assets.storage.warehouse import replace_predictions_partition, replace_summary_partition
from resources import (
    ComputeResource,
    MetricsResource,
    ModelRegistryResource,
    WarehouseResource,
)

# Run tags that pin the model of a run; a run that carries them never re-resolves the alias.
MODEL_VERSION_TAG = "batch-assets/model_version"
MODEL_SHA_TAG = "batch-assets/model_sha256"
# The pool of scoring steps: its limit (dagster.yaml, `concurrency.pools`) is how many partitions are scored
# at once, i.e. the number of scoring processes or pods. Writes need no pool: the lake takes concurrent
# writers.
SCORING_POOL = "scoring"


def resolve_model_version(
    context: dg.AssetExecutionContext, registry: ModelRegistryResource, spec: SpecFile
) -> ModelVersion:
    """The version this run scores with: pinned by run tag when present, else the alias, resolved once."""
    reg = registry.get_registry()
    pinned = context.run.tags.get(MODEL_VERSION_TAG)
    info = reg.get(spec.model.name, pinned) if pinned else reg.resolve(spec.model.name, spec.model.alias)
    pinned_sha = context.run.tags.get(MODEL_SHA_TAG)
    if pinned_sha and pinned_sha != info.sha256:
        raise dg.Failure(
            f"run pins {spec.model.name}/{info.version} with sha256 {pinned_sha}, but the registry manifest "
            f"says {info.sha256}: refusing to score",
            allow_retries=False,
        )
    return info


def model_observation(
    instance: dg.DagsterInstance,
    model_registry: ModelRegistryResource,
    spec: SpecFile,
    just_scored: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The model asset's data version (``<version>@<sha256>`` of the alias) and what its page shows: which
    version scored which partitions, how many are behind, the promotions. ``just_scored`` (partition ->
    version) adds what the running step wrote, which the instance records only once the step ends."""
    reg = model_registry.get_registry()
    info = reg.resolve(spec.model.name, spec.model.alias)
    promotions = [e for e in reg.events(spec.model.name) if e.get("event") == "promote"]
    scored = scored_versions(instance, scores_key(spec)) | dict(just_scored or {})
    by_version: dict[str, list[str]] = {}
    for partition, version in sorted(scored.items()):
        by_version.setdefault(version, []).append(partition)
    return f"{info.version}@{info.sha256}", {
        "model_name": spec.model.name,
        "alias": spec.model.alias,
        "model_version": info.version,
        "model_sha256": info.sha256,
        "registered_at": info.manifest["created_at"],
        "partitions_behind": sum(len(p) for v, p in by_version.items() if v != info.version),
        "scored_by_version": dg.MetadataValue.md(
            "| version | partitions | first | last |\n|---|---|---|---|\n"
            + "\n".join(f"| {v} | {len(p)} | {p[0]} | {p[-1]} |" for v, p in sorted(by_version.items()))
        ),
        "promotions": dg.MetadataValue.md(
            "| at | alias | version | previous |\n|---|---|---|---|\n"
            + "\n".join(
                f"| {e['at']} | {e['alias']} | {e['version']} | {e.get('previous') or ''} |"
                for e in promotions[-20:]
            )
        ),
    }


def build_model_source(spec: SpecFile) -> dg.AssetsDefinition:
    """An observable source asset whose data version is the aliased version and its sha256."""

    # an AssetSpec keeps the owners, which observable_source_asset (a SourceAsset) drops in Dagster 1.13
    @dg.multi_observable_source_asset(
        name=f"observe_{spec.model.name}",
        specs=[
            dg.AssetSpec(
                model_key(spec),
                group_name="models",
                description=(
                    f"The {spec.model.name!r} model version behind alias {spec.model.alias!r} in the model "
                    "registry. Its data version is `<version>@<sha256>` (a code span, so the UI's markdown shows it "
                    "as written), so a promotion marks the scores downstream stale."
                ),
                owners=["team:ml"],
                kinds={"pytorch"},
            )
        ],
    )
    def _model(context: dg.AssetExecutionContext, model_registry: ModelRegistryResource) -> dg.ObserveResult:
        version, metadata = model_observation(context.instance, model_registry, spec)
        return dg.ObserveResult(
            asset_key=model_key(spec), data_version=dg.DataVersion(version), metadata=metadata
        )

    return _model


def build_scored_asset(spec: SpecFile) -> dg.AssetsDefinition:
    """The partitioned predictions asset of ``spec``: score one features partition, replace it atomically."""

    @dg.asset(
        retry_policy=RETRY_POLICY,
        key=scores_key(spec),
        group_name=spec.group,
        partitions_def=partitions_of(spec),
        deps=[features_key(spec), model_key(spec)],
        pool=SCORING_POOL,  # sizes parallel scoring (limit set in dagster.yaml); not a writer lock
        op_tags=scoring_op_tags(),  # pod resources under k8s_job_executor (batch_assets/k8s.py)
        kinds={"deltalake", "pytorch"},
        owners=["team:ml"],
        # a backfill scores up to backfill_chunk partitions per run, loading the model once per run
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=spec.scoring.backfill_chunk),
        description=spec.description
        or (
            f"Scores of {spec.features.table} by model {spec.model.name!r} (alias {spec.model.alias!r}), one "
            f"row per {spec.features.key} and partition in {spec.output.table}; rows that cannot be scored go "
            "to predictions.dead_letters with a reason."
        ),
    )
    def _scored(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
        compute: ComputeResource,
        metrics: MetricsResource,
    ) -> dg.MaterializeResult:
        watch = Stopwatch()
        device = compute.setup()
        days = [partition_value(spec, key) for key in context.partition_keys]
        with permanent_errors():
            info = resolve_model_version(context, model_registry, spec)
            loaded = model_registry.get_registry().load(spec.model.name, info.version)
            module = loaded.module.to(device)
        load_s = watch.seconds
        context.log.info(
            "scoring %s %s..%s (%d partitions) with %s/%s (sha256 %s), model loaded once in %.3f s",
            scores_key(spec).to_user_string(),
            days[0],
            days[-1],
            len(days),
            spec.model.name,
            info.version,
            info.sha256[:12],
            load_s,
        )
        done: list[tuple[dt.date, ScoreStats, float]] = []
        reports: list[dict[str, str]] = []
        lake = warehouse.lake()
        with warehouse.connect(tables=[spec.features.table]) as con, permanent_errors():
            for day in days:  # each partition in its own commits
                part_watch = Stopwatch()
                stats = replace_predictions_partition(
                    con,
                    lake,
                    day=day,
                    module=module,
                    features_table=spec.features.table,
                    key=spec.features.key,
                    feature_columns=info.feature_names,
                    output_table=spec.output.table,
                    model_name=spec.model.name,
                    model_version=info.version,
                    model_sha256=info.sha256,
                    run_id=context.run.run_id,
                    scored_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    dead_letter_table=spec.output.dead_letter_table,
                    limits=spec.contract.limits(),
                    batch_rows=spec.scoring.batch_rows,
                    batch_memory_mb=compute.batch_memory_mb,
                    device=str(device),
                    partition_type=spec.partition_type,
                    refresh=False,  # nothing on this connection reads the tables back
                )
                done.append((day, stats, part_watch.seconds))
                # each partition's own figures, drift table and score plot, read back from its commit
                scores = lake.read_partition(spec.output.table, day, ["score"]).column("score")
                reports.append(
                    score_report(
                        scores.to_numpy(),
                        day=day,
                        reference=info.manifest.get("reference", {}).get("score"),
                        thresholds=spec.checks.score_drift,
                        output_range=info.output_range,
                    )
                )
        seconds = watch.seconds
        rows_read = sum(s.rows_read for _, s, _ in done)
        metadata: dict[str, Any] = {
            "model_name": spec.model.name,
            "model_version": info.version,
            "model_sha256": info.sha256,
            "duration_s": round(seconds, 3),
            "model_load_s": round(load_s, 3),
            "rows_per_s": round(rows_read / max(seconds - load_s, 1e-9), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "table": spec.output.table,
        }
        per_partition = {
            key: partition_metadata(stats, part_s, report)
            for key, (_, stats, part_s), report in zip(context.partition_keys, done, reports, strict=True)
        }
        if len(done) > 1:
            # A run of a chunk (a backfill or a rollout): Dagster records one materialization per partition;
            # each gets its own figures (add_asset_metadata by partition key), the run's figures on all.
            for key, figures in per_partition.items():
                context.add_asset_metadata(figures, partition_key=key)
            metadata |= {
                "partitions_in_run": len(done),
                "rows_in_run": rows_read,
                "chunk": f"{context.partition_keys[0]}..{context.partition_keys[-1]}",
            }
        else:
            metadata |= per_partition[context.partition_keys[0]]
        push_partition_metrics(  # Prometheus figures per partition, when a Pushgateway is configured
            context,
            metrics,
            scores_key(spec),
            info.version,
            [(k, s) for k, (_, s, _) in zip(context.partition_keys, done, strict=True)],
            metadata,
        )
        # keep the model asset's page true after every scoring run (a rollout's chunks included): which
        # version scored which partitions, and how many are behind
        try:
            version_tag, observed = model_observation(
                context.instance,
                model_registry,
                spec,
                dict.fromkeys(context.partition_keys, info.version),
            )
            context.log_event(
                dg.AssetObservation(
                    asset_key=model_key(spec), metadata=observed, tags={DATA_VERSION_TAG: version_tag}
                )
            )
        except ModelNotFound:  # a pinned run after the alias was removed: nothing to observe
            pass
        return dg.MaterializeResult(metadata=metadata, tags={MODEL_VERSION_TAG: info.version})

    return _scored


def partition_metadata(stats: ScoreStats, seconds: float, report: Mapping[str, str]) -> dict[str, Any]:
    """What the UI shows for one scored partition, whether a run scored it alone or in a chunk."""
    return {
        "dagster/row_count": stats.rows_scored,
        "rows_read": stats.rows_read,
        "dead_letters": stats.dead_letters,
        "dead_letter_fraction": round(stats.dead_letters / stats.rows_read, 6) if stats.rows_read else 0.0,
        "dead_letter_reasons": json.dumps(stats.dead_reasons, sort_keys=True),
        "input_sha256": stats.input_sha256,
        "partition_s": round(seconds, 3),
    } | {name: dg.MetadataValue.md(text) for name, text in report.items()}


def build_summary_asset(spec: SpecFile) -> dg.AssetsDefinition:
    """Daily summary of a scored partition (counts, mean and quantiles of scores, high-risk count).

    It runs after the blocking checks of the scores: a failing completeness, validity, provenance or
    dead-letter check stops it, so a bad partition is never published.
    """
    high_risk_threshold = spec.output.high_score_threshold

    @dg.asset(
        retry_policy=RETRY_POLICY,
        key=summary_key(spec),
        group_name=spec.group,
        partitions_def=partitions_of(spec),
        deps=[scores_key(spec)],
        kinds={"deltalake"},
        owners=["team:risk"],
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=spec.scoring.backfill_chunk),
        description=(
            f"Published daily summary of {spec.output.table}: rows, dead letters, mean/p50/p95 score and the "
            f"count at or above {high_risk_threshold}. Runs only after the scores it summarises."
        ),
    )
    def _summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        rows = []
        with warehouse.connect(tables=[spec.output.table, spec.output.dead_letter_table]) as con:
            for key in context.partition_keys:
                rows.append(
                    replace_summary_partition(
                        con,
                        warehouse.lake(),
                        refresh=False,  # nothing on this connection reads the summaries back
                        day=partition_value(spec, key),
                        predictions_table=spec.output.table,
                        high_risk_threshold=high_risk_threshold,
                        run_id=context.run.run_id,
                        computed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                        summary_table=spec.summary_table,
                        dead_letter_table=spec.output.dead_letter_table,
                        partition_type=spec.partition_type,
                    )
                )
        figures = {
            key: {
                "dagster/row_count": 1,
                "scored_rows": row["rows"],
                "dead_letters": row["dead_letters"],
                "model_version": row["model_version"],
                "mean_score": round(row["mean_score"], 6),
                "p95_score": round(row["p95_score"], 6),
                "high_risk_count": row["high_risk_count"],
            }
            for key, row in zip(context.partition_keys, rows, strict=True)
        }
        if len(rows) == 1:
            return dg.MaterializeResult(metadata=figures[context.partition_keys[0]])
        for key, md in figures.items():  # each partition of a chunk keeps its own figures
            context.add_asset_metadata(md, partition_key=key)
        return dg.MaterializeResult(metadata={"partitions_in_run": len(rows)})

    return _summary
