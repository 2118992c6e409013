"""Per-partition asset checks of a scored dataset: thin wiring around ``scoring.partition_checks``.

On the predictions asset: completeness, dead_letters, validity and provenance (blocking: a failure stops the
summary from being published) and score_drift (warn above the PSI warn threshold, error above the error one).
On the features asset: contract (blocking on a structural break or too many bad rows) and feature_drift
(warn). Every check is partitioned, so its result is stored against the partition it judged.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from batch_assets.errors import RETRY_POLICY
from batch_assets.history import latest_materialization
from batch_assets.observability import push_check_metrics
from batch_assets.predictions import MODEL_VERSION_TAG, ScoredDatasetSpec
from batch_assets.scoring import partition_checks as pc
from batch_assets.scoring.registry import ModelNotFound
from partitions import FEATURE_WINDOW_DAYS
from resources import MetricsResource, ModelRegistryResource, WarehouseResource

SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def to_result(outcome: pc.CheckOutcome) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {k: v for k, v in outcome.metadata.items() if v is not None}
    for name, rows in outcome.tables.items():
        metadata[name] = dg.MetadataValue.md(markdown_table(rows))
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=SEVERITY[outcome.severity],
        description=outcome.description,
        metadata=metadata,
    )


def _incomplete_window(instance: dg.DagsterInstance, features: dg.AssetKey, partition: str) -> str | None:
    """Why drift cannot be judged for a features partition built on less history than its full window."""
    record = latest_materialization(instance, features, partition)
    if record is None:
        return None
    md = record.asset_materialization.metadata
    if "window_complete" in md and not md["window_complete"].value:
        days = md.get("window_days")
        return (
            f"not judged: features of {partition} use {days.value if days else '?'} of {FEATURE_WINDOW_DAYS} "
            "days of history, unlike the model's reference"
        )
    return None


def judge_each_partition(
    context: dg.AssetCheckExecutionContext,
    judge: Callable[[str], dg.AssetCheckResult],
    metrics: MetricsResource | None = None,
) -> dg.AssetCheckResult:
    """Judge every partition of the step on its own.

    A run of one partition returns that partition's result. A run that covers a range of partitions (a
    chunked backfill) records one evaluation per partition, stored against that partition, and returns a
    summary result for the step, failing (and blocking) when any partition failed.
    """
    keys = list(context.partition_keys)
    results = {key: judge(key) for key in keys}
    if metrics is not None:
        push_check_metrics(context, metrics, results)
    if len(keys) == 1:
        return results[keys[0]]
    spec = context.check_specs[0]
    for key, r in results.items():
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=r.passed,
                metadata=r.metadata or {},
                severity=r.severity,
                description=r.description,
                blocking=spec.blocking,
                partition=key,
            )
        )
    failed = [k for k, r in results.items() if not r.passed]
    errors = [k for k in failed if results[k].severity == dg.AssetCheckSeverity.ERROR]
    rows = [
        {"partition": k, "passed": r.passed, "severity": r.severity.value, "description": r.description}
        for k, r in results.items()
    ]
    desc = f"{len(keys)} partitions ({keys[0]}..{keys[-1]}) judged one by one: " + (
        "all passed" if not failed else f"{len(failed)} failed ({', '.join(failed[:5])})"
    )
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
        description=desc,
        metadata={
            "partitions_judged": len(keys),
            "partitions_failed": len(failed),
            "per_partition": dg.MetadataValue.md(markdown_table(rows)),
        },
    )


def not_judged(note: str, verdict: str = "not_judged") -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=True, severity=dg.AssetCheckSeverity.WARN, description=note, metadata={"verdict": verdict}
    )


def build_checks(spec: ScoredDatasetSpec) -> list[dg.AssetChecksDefinition]:
    """The checks of ``spec``'s predictions asset and of the features asset it scores."""
    part = spec.partitions_def
    preds = spec.asset_key

    @dg.asset_check(
        retry_policy=RETRY_POLICY,
        asset=preds,
        name="completeness",
        blocking=True,
        partitions_def=part,
        description="Every feature row is scored exactly once or dead-lettered with a reason; no "
        "prediction without a feature row; no duplicate key.",
    )
    def completeness(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, metrics: MetricsResource
    ) -> dg.AssetCheckResult:
        def judge(key: str) -> dg.AssetCheckResult:
            with warehouse.connect() as con:
                return to_result(
                    pc.completeness(
                        con,
                        day=spec.partition_value(key),
                        features_table=spec.features_table,
                        output_table=spec.output_table,
                        dead_letter_table=spec.dead_letter_table,
                        key=spec.key_column,
                    )
                )

        return judge_each_partition(context, judge, metrics)

    @dg.asset_check(
        retry_policy=RETRY_POLICY,
        asset=preds,
        name="dead_letters",
        blocking=True,
        partitions_def=part,
        description=f"At most {spec.max_dead_letter_fraction:.0%} of the feature rows are "
        "dead-lettered; the reasons and a sample are attached.",
    )
    def dead_letters(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, metrics: MetricsResource
    ) -> dg.AssetCheckResult:
        def judge(key: str) -> dg.AssetCheckResult:
            with warehouse.connect() as con:
                return to_result(
                    pc.dead_letter_rate(
                        con,
                        day=spec.partition_value(key),
                        features_table=spec.features_table,
                        dead_letter_table=spec.dead_letter_table,
                        max_fraction=spec.max_dead_letter_fraction,
                    )
                )

        return judge_each_partition(context, judge, metrics)

    @dg.asset_check(
        retry_policy=RETRY_POLICY,
        asset=preds,
        name="validity",
        blocking=True,
        partitions_def=part,
        description="Scores are finite and inside the output range the model's manifest declares.",
    )
    def validity(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
        metrics: MetricsResource,
    ) -> dg.AssetCheckResult:
        def judge(key: str) -> dg.AssetCheckResult:
            scored = _scored_by(context.instance, spec, key)
            if isinstance(scored, dg.AssetCheckResult):
                return scored
            low, high = (
                model_registry.get_registry().get(spec.model_name, scored["model_version"]).output_range
            )
            with warehouse.connect() as con:
                return to_result(
                    pc.validity(
                        con,
                        day=spec.partition_value(key),
                        output_table=spec.output_table,
                        key=spec.key_column,
                        low=low,
                        high=high,
                    )
                )

        return judge_each_partition(context, judge, metrics)

    @dg.asset_check(
        retry_policy=RETRY_POLICY,
        asset=preds,
        name="provenance",
        blocking=True,
        partitions_def=part,
        description="Every row carries the model version and run id of this materialization, and "
        "the recorded sha256 matches the model registry's manifest.",
    )
    def provenance(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
        metrics: MetricsResource,
    ) -> dg.AssetCheckResult:
        def judge(key: str) -> dg.AssetCheckResult:
            scored = _scored_by(context.instance, spec, key)
            if isinstance(scored, dg.AssetCheckResult):
                return scored
            try:
                manifest_sha = (
                    model_registry.get_registry().get(spec.model_name, scored["model_version"]).sha256
                )
            except ModelNotFound:
                manifest_sha = None
            with warehouse.connect() as con:
                return to_result(
                    pc.provenance(
                        con,
                        day=spec.partition_value(key),
                        output_table=spec.output_table,
                        key=spec.key_column,
                        model_name=spec.model_name,
                        model_version=scored["model_version"],
                        run_id=scored["run_id"],
                        recorded_sha256=scored["model_sha256"],
                        manifest_sha256=manifest_sha,
                    )
                )

        return judge_each_partition(context, judge, metrics)

    @dg.asset_check(
        retry_policy=RETRY_POLICY,
        asset=preds,
        name="score_drift",
        partitions_def=part,
        description=f"PSI and KS of the scores against the model's reference scores: warn above PSI "
        f"{spec.score_drift.psi_warn}, error above {spec.score_drift.psi_error}; fewer than "
        f"{spec.score_drift.min_rows} rows are not judged.",
    )
    def score_drift(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
        metrics: MetricsResource,
    ) -> dg.AssetCheckResult:
        def judge(key: str) -> dg.AssetCheckResult:
            scored = _scored_by(context.instance, spec, key)
            if isinstance(scored, dg.AssetCheckResult):
                return scored
            note = _incomplete_window(context.instance, spec.features_asset, key)
            if note:
                return not_judged(note)
            manifest = model_registry.get_registry().get(spec.model_name, scored["model_version"]).manifest
            with warehouse.connect() as con:
                return to_result(
                    pc.score_drift(
                        con,
                        day=spec.partition_value(key),
                        output_table=spec.output_table,
                        reference=manifest.get("reference", {}).get("score"),
                        thresholds=spec.score_drift,
                    )
                )

        return judge_each_partition(context, judge, metrics)

    checks = [completeness, dead_letters, validity, provenance, score_drift]

    @dg.asset_check(
        retry_policy=RETRY_POLICY,
        asset=spec.features_asset,
        name="feature_drift",
        partitions_def=part,
        description=f"Per-column PSI/KS of the features against the reference in the "
        f"{spec.model_alias} model's manifest (warn only).",
    )
    def feature_drift(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
        metrics: MetricsResource,
    ) -> dg.AssetCheckResult:
        def judge(key: str) -> dg.AssetCheckResult:
            note = _incomplete_window(context.instance, spec.features_asset, key)
            if note:
                return not_judged(note)
            try:
                info = model_registry.get_registry().resolve(spec.model_name, spec.model_alias)
            except ModelNotFound as exc:
                return not_judged(f"not judged: {exc}", "no_reference")
            refs = info.manifest.get("reference", {}).get("features", {})
            with warehouse.connect() as con:
                outcome = pc.feature_drift(
                    con,
                    day=spec.partition_value(key),
                    features_table=spec.features_table,
                    references=refs,
                    thresholds=spec.feature_drift,
                    per_feature=spec.feature_drift_overrides,
                )
            outcome.metadata["reference_model_version"] = info.version
            return to_result(outcome)

        return judge_each_partition(context, judge, metrics)

    checks.append(feature_drift)

    if spec.contract is not None:
        feature_contract = spec.contract

        @dg.asset_check(
            retry_policy=RETRY_POLICY,
            asset=spec.features_asset,
            name="contract",
            blocking=True,
            partitions_def=part,
            description="The pandera contract of the feature table (columns, dtypes, nullability, "
            "hard limits): blocking on a structural break or more than "
            f"{feature_contract.max_bad_row_fraction:.0%} bad rows, a warning below that.",
        )
        def contract(
            context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, metrics: MetricsResource
        ) -> dg.AssetCheckResult:
            def judge(key: str) -> dg.AssetCheckResult:
                with warehouse.connect() as con:
                    return to_result(
                        pc.contract(
                            con,
                            day=spec.partition_value(key),
                            features_table=spec.features_table,
                            feature_contract=feature_contract,
                        )
                    )

            return judge_each_partition(context, judge, metrics)

        checks.append(contract)
    return checks


def _scored_by(
    instance: dg.DagsterInstance, spec: ScoredDatasetSpec, partition: str
) -> dict[str, Any] | dg.AssetCheckResult:
    """Model version, sha256 and run id recorded by the partition's latest materialization."""
    record = latest_materialization(instance, spec.asset_key, partition)
    if record is None:
        return dg.AssetCheckResult(passed=False, description=f"{partition} has not been materialized")
    md = record.asset_materialization.metadata
    value = {k: (md[k].value if k in md else None) for k in ("model_version", "model_sha256")}
    value["run_id"] = record.run_id
    value["model_version"] = value["model_version"] or (record.asset_materialization.tags or {}).get(
        MODEL_VERSION_TAG
    )
    return value
