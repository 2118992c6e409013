"""Per-partition asset checks of a scored dataset: one table of checks, built into two multi-check steps.

Each check is declared once, in the dagster-free table ``core.check_table.CHECKS``: its name, the asset it
judges, whether it blocks, its description and its judge. From that table this module builds:

- ``{dataset}_prediction_checks``, one step that judges completeness, dead_letters, validity, provenance
  and score_drift of every partition of the run. Each partition's predictions, dead letters and feature
  keys are read from the lake once (into memory) and every check judges that same snapshot.
- ``{dataset}_feature_checks``, one step for contract and feature_drift on the features asset.

Every check stays its own named, partitioned check with its own severity and blocking flag: the step
yields one ``AssetCheckEvaluation`` per check and partition, stored against that partition, for a run of
one partition and for a chunk alike (no chunk-level summary result). A failed blocking check with ERROR
severity fails the step after every evaluation is stored, so downstream assets (the summary) do not run.
"""

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from batch_assets.core.check_table import (
    CHECKS,
    FEATURES,
    PREDICTIONS,
    Check,
    PartitionView,
    Scored,
    snapshot_partition,
)
from batch_assets.core.partition_checks import CheckOutcome
from batch_assets.core.registry import ModelVersion
from batch_assets.core.spec_file import SpecFile
from batch_assets.errors import RETRY_POLICY
from batch_assets.history import latest_materializations
from batch_assets.keys import features_key, partition_value, partitions_of, scores_key
from batch_assets.observability import push_check_metrics
from batch_assets.predictions import MODEL_VERSION_TAG
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


def evaluation(
    asset_key: dg.AssetKey, check: Check, partition: str, outcome: CheckOutcome
) -> dg.AssetCheckEvaluation:
    """One outcome, stored against its partition, with its tables rendered as markdown."""
    metadata: dict[str, Any] = {k: v for k, v in outcome.metadata.items() if v is not None}
    for name, rows in outcome.tables.items():
        metadata[name] = dg.MetadataValue.md(markdown_table(rows))
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check.name,
        passed=outcome.passed,
        metadata=metadata,
        severity=SEVERITY[outcome.severity],
        description=outcome.description,
        blocking=check.blocking,
        partition=partition,
    )


class StepLookups:
    """What the partitions of a check step look up in Dagster and the registry, read once for the step: the
    latest materialization of each partition of an asset (one query for the run), model manifests."""

    def __init__(
        self,
        spec: SpecFile,
        instance: dg.DagsterInstance,
        registry: ModelRegistryResource,
        keys: Sequence[str],
    ):
        self.spec, self.instance, self.registry, self.keys = spec, instance, registry, list(keys)
        self._latest: dict[dg.AssetKey, dict[str, dg.EventLogRecord]] = {}
        self._models: dict[str, ModelVersion] = {}

    def latest(self, asset_key: dg.AssetKey, partition: str) -> dg.EventLogRecord | None:
        if asset_key not in self._latest:
            self._latest[asset_key] = latest_materializations(self.instance, asset_key, self.keys)
        return self._latest[asset_key].get(partition)

    def model(self, version: str) -> ModelVersion:
        if version not in self._models:
            self._models[version] = self.registry.get_registry().get(self.spec.model.name, version)
        return self._models[version]

    def aliased(self) -> ModelVersion:
        return self.registry.get_registry().resolve(self.spec.model.name, self.spec.model.alias)

    def scored(self, partition: str) -> Scored | None:
        """Model version, sha256 and run id of the partition's latest materialization (None: never)."""
        record = self.latest(scores_key(self.spec), partition)
        if record is None:
            return None
        md = record.asset_materialization.metadata
        version = md["model_version"].value if "model_version" in md else None
        return Scored(
            model_version=version or (record.asset_materialization.tags or {}).get(MODEL_VERSION_TAG),
            model_sha256=md["model_sha256"].value if "model_sha256" in md else None,
            run_id=record.run_id,
        )

    def window_note(self, partition: str) -> str | None:
        """Why drift cannot be judged: the features were built on less history than their full window."""
        record = self.latest(features_key(self.spec), partition)
        if record is None:
            return None
        md = record.asset_materialization.metadata
        if "window_complete" in md and not md["window_complete"].value:
            days = md.get("window_days")
            return (
                f"not judged: features of {partition} use {days.value if days else '?'} of "
                f"{FEATURE_WINDOW_DAYS} days of history, unlike the model's reference"
            )
        return None

    def view(self, key: str, con: Any, tables: dict[str, str]) -> PartitionView:
        return PartitionView(
            self.spec,
            key,
            partition_value(self.spec, key),
            con,
            tables=tables,
            scored=lambda: self.scored(key),
            window_note=lambda: self.window_note(key),
            model=self.model,
            aliased=self.aliased,
        )


def build_multi_check(spec: SpecFile, asset: str, checks: Sequence[Check]) -> dg.AssetChecksDefinition:
    """One step judging ``checks`` for every partition of its run."""
    asset_key = scores_key(spec) if asset == PREDICTIONS else features_key(spec)
    by_name = {c.name: c for c in checks}
    with warnings.catch_warnings():  # partitioned check specs are a preview in 1.13 (checks per partition)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                c.name,
                asset=asset_key,
                blocking=c.blocking,
                description=c.describe(spec),
                partitions_def=partitions_of(spec),
            )
            for c in checks
        ]
    outputs = {s.name: s.get_python_identifier() for s in specs}

    @dg.multi_asset_check(
        name=f"{spec.name}_{asset}_checks".replace("-", "_"),
        specs=specs,
        can_subset=True,  # the checks of a selection (the UI's "execute checks") judge only those
        retry_policy=RETRY_POLICY,
        description=f"The {asset} checks of {spec.name} ({', '.join(by_name)}), judged per partition in one step.",
    )
    def _checks(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
        metrics: MetricsResource,
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        selected = [by_name[k.name] for k in context.selected_asset_check_keys if k.name in by_name]
        selected.sort(key=lambda c: list(by_name).index(c.name))
        outcomes: dict[str, dict[str, CheckOutcome]] = {c.name: {} for c in selected}
        lookups = StepLookups(spec, context.instance, model_registry, context.partition_keys)
        reads = [spec.features.table]
        if asset == PREDICTIONS:
            reads += [spec.output.table, spec.output.dead_letter_table]
        with warehouse.connect(tables=reads) as con:
            for key in context.partition_keys:
                day = partition_value(spec, key)
                tables = snapshot_partition(con, spec, day) if asset == PREDICTIONS else {}
                view = lookups.view(key, con, tables)
                for check in selected:
                    outcomes[check.name][key] = check.judge(view)
        for check in selected:
            evaluations = {
                key: evaluation(asset_key, check, key, o) for key, o in outcomes[check.name].items()
            }
            push_check_metrics(context, metrics, asset_key, check.name, evaluations)
            yield from evaluations.values()
        for check in selected:  # the step's check outputs: downstream steps gate on the evaluations above
            yield dg.Output(None, output_name=outputs[check.name])

    return _checks


def build_checks(spec: SpecFile) -> list[dg.AssetChecksDefinition]:
    """The checks of ``spec``'s predictions asset and of the features asset it scores, two steps."""
    return [
        build_multi_check(spec, asset, [c for c in CHECKS if c.asset == asset])
        for asset in (PREDICTIONS, FEATURES)
    ]
