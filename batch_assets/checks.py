"""Per-partition asset checks of a scored dataset: one table of checks, built into two multi-check steps.

Each check is declared once in :data:`CHECKS`: its name, the asset it judges, whether it blocks, its
description and its judge (a call into the dagster-free ``core.partition_checks``). From that table:

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dagster as dg

from batch_assets.core import partition_checks as pc
from batch_assets.core.names import check_identifier, quote_table
from batch_assets.core.registry import ModelNotFound, ModelVersion
from batch_assets.core.spec_file import SpecFile
from batch_assets.errors import RETRY_POLICY
from batch_assets.history import latest_materializations
from batch_assets.keys import features_key, partition_value, partitions_of, scores_key
from batch_assets.observability import push_check_metrics
from batch_assets.predictions import MODEL_VERSION_TAG
from partitions import FEATURE_WINDOW_DAYS
from resources import MetricsResource, ModelRegistryResource, WarehouseResource

SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}
PREDICTIONS, FEATURES = "predictions", "features"
SNAPSHOT = "judged"  # in-memory schema of the step's DuckDB connection holding the partition being judged


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


@dataclass(frozen=True)
class Verdict:
    """One check's result for one partition (what an ``AssetCheckEvaluation`` records)."""

    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def to_verdict(outcome: pc.CheckOutcome) -> Verdict:
    metadata: dict[str, Any] = {k: v for k, v in outcome.metadata.items() if v is not None}
    for name, rows in outcome.tables.items():
        metadata[name] = dg.MetadataValue.md(markdown_table(rows))
    return Verdict(outcome.passed, SEVERITY[outcome.severity], outcome.description, metadata)


def not_judged(note: str, verdict: str = "not_judged") -> Verdict:
    return Verdict(True, dg.AssetCheckSeverity.WARN, note, {"verdict": verdict})


class StepLookups:
    """What every partition of a check step looks up, read once for the step: the latest materialization
    of each partition of an asset (one query for the whole run), and model manifests (immutable)."""

    def __init__(self, instance: dg.DagsterInstance, registry: ModelRegistryResource, keys: Sequence[str]):
        self.instance, self.registry, self.keys = instance, registry, list(keys)
        self._latest: dict[dg.AssetKey, dict[str, dg.EventLogRecord]] = {}
        self._models: dict[tuple[str, str], ModelVersion] = {}

    def latest(self, asset_key: dg.AssetKey, partition: str) -> dg.EventLogRecord | None:
        if asset_key not in self._latest:
            self._latest[asset_key] = latest_materializations(self.instance, asset_key, self.keys)
        return self._latest[asset_key].get(partition)

    def model(self, name: str, version: str) -> ModelVersion:
        if (name, version) not in self._models:
            self._models[name, version] = self.registry.get_registry().get(name, version)
        return self._models[name, version]


class Partition:
    """What the judges of one partition share: its day, the materialization that wrote it, the model
    version that scored it, and (for the prediction checks) tables to read instead of the lake's."""

    def __init__(
        self,
        spec: SpecFile,
        key: str,
        con: Any,
        lookups: StepLookups,
        tables: dict[str, str],
    ):
        self.spec, self.key, self.con, self.lookups = spec, key, con, lookups
        self.day = partition_value(spec, key)
        self.registry = lookups.registry
        self.features_table = tables.get("features", spec.features.table)
        self.output_table = tables.get("output", spec.output.table)
        self.dead_letter_table = tables.get("dead_letters", spec.output.dead_letter_table)

    @cached_property
    def scored(self) -> dict[str, Any] | None:
        """Model version, sha256 and run id of the partition's latest materialization (None: never)."""
        record = self.lookups.latest(scores_key(self.spec), self.key)
        if record is None:
            return None
        md = record.asset_materialization.metadata
        value = {k: (md[k].value if k in md else None) for k in ("model_version", "model_sha256")}
        value["run_id"] = record.run_id
        value["model_version"] = value["model_version"] or (record.asset_materialization.tags or {}).get(
            MODEL_VERSION_TAG
        )
        return value

    def model(self, version: str) -> ModelVersion:
        return self.lookups.model(self.spec.model.name, version)

    @cached_property
    def incomplete_window(self) -> str | None:
        """Why drift cannot be judged: the features were built on less history than their full window."""
        record = self.lookups.latest(features_key(self.spec), self.key)
        if record is None:
            return None
        md = record.asset_materialization.metadata
        if "window_complete" in md and not md["window_complete"].value:
            days = md.get("window_days")
            return (
                f"not judged: features of {self.key} use {days.value if days else '?'} of "
                f"{FEATURE_WINDOW_DAYS} days of history, unlike the model's reference"
            )
        return None

    def unscored(self) -> Verdict:
        return Verdict(False, dg.AssetCheckSeverity.ERROR, f"{self.key} has not been materialized")


# -- the judges: one partition in, one verdict out -------------------------------------------------------


def judge_completeness(p: Partition) -> Verdict:
    return to_verdict(
        pc.completeness(
            p.con,
            day=p.day,
            features_table=p.features_table,
            output_table=p.output_table,
            dead_letter_table=p.dead_letter_table,
            key=p.spec.features.key,
        )
    )


def judge_dead_letters(p: Partition) -> Verdict:
    return to_verdict(
        pc.dead_letter_rate(
            p.con,
            day=p.day,
            features_table=p.features_table,
            dead_letter_table=p.dead_letter_table,
            max_fraction=p.spec.checks.max_dead_letter_fraction,
        )
    )


def judge_validity(p: Partition) -> Verdict:
    if p.scored is None:
        return p.unscored()
    low, high = p.model(p.scored["model_version"]).output_range
    return to_verdict(
        pc.validity(
            p.con, day=p.day, output_table=p.output_table, key=p.spec.features.key, low=low, high=high
        )
    )


def judge_provenance(p: Partition) -> Verdict:
    if p.scored is None:
        return p.unscored()
    try:
        manifest_sha = p.model(p.scored["model_version"]).sha256
    except ModelNotFound:
        manifest_sha = None
    return to_verdict(
        pc.provenance(
            p.con,
            day=p.day,
            output_table=p.output_table,
            key=p.spec.features.key,
            model_name=p.spec.model.name,
            model_version=p.scored["model_version"],
            run_id=p.scored["run_id"],
            recorded_sha256=p.scored["model_sha256"],
            manifest_sha256=manifest_sha,
        )
    )


def judge_score_drift(p: Partition) -> Verdict:
    if p.scored is None:
        return p.unscored()
    if p.incomplete_window:
        return not_judged(p.incomplete_window)
    manifest = p.model(p.scored["model_version"]).manifest
    return to_verdict(
        pc.score_drift(
            p.con,
            day=p.day,
            output_table=p.output_table,
            reference=manifest.get("reference", {}).get("score"),
            thresholds=p.spec.checks.score_drift,
        )
    )


def judge_feature_drift(p: Partition) -> Verdict:
    if p.incomplete_window:
        return not_judged(p.incomplete_window)
    try:
        info = p.registry.get_registry().resolve(p.spec.model.name, p.spec.model.alias)
    except ModelNotFound as exc:
        return not_judged(f"not judged: {exc}", "no_reference")
    outcome = pc.feature_drift(
        p.con,
        day=p.day,
        features_table=p.features_table,
        references=info.manifest.get("reference", {}).get("features", {}),
        thresholds=p.spec.checks.feature_drift,
        per_feature=p.spec.checks.feature_drift_overrides,
    )
    outcome.metadata["reference_model_version"] = info.version
    return to_verdict(outcome)


def judge_contract(p: Partition) -> Verdict:
    return to_verdict(
        pc.contract(p.con, day=p.day, features_table=p.features_table, feature_contract=p.spec.contract)
    )


@dataclass(frozen=True)
class Check:
    """A check, declared once: its name, the asset it judges, whether it blocks, what it says."""

    name: str
    asset: str  # PREDICTIONS or FEATURES
    blocking: bool
    judge: Callable[[Partition], Verdict]
    describe: Callable[[SpecFile], str]


CHECKS: tuple[Check, ...] = (
    Check(
        "completeness",
        PREDICTIONS,
        True,
        judge_completeness,
        lambda s: (
            "Every feature row is scored exactly once or dead-lettered with a reason; no prediction "
            "without a feature row; no duplicate key; predictions and dead letters written by one run."
        ),
    ),
    Check(
        "dead_letters",
        PREDICTIONS,
        True,
        judge_dead_letters,
        lambda s: (
            f"At most {s.checks.max_dead_letter_fraction:.0%} of the feature rows are dead-lettered; the "
            "reasons and a sample are attached."
        ),
    ),
    Check(
        "validity",
        PREDICTIONS,
        True,
        judge_validity,
        lambda s: "Scores are finite and inside the output range the model's manifest declares.",
    ),
    Check(
        "provenance",
        PREDICTIONS,
        True,
        judge_provenance,
        lambda s: (
            "Every row carries the model version and run id of this materialization, and the "
            "recorded sha256 matches the model registry's manifest."
        ),
    ),
    Check(
        "score_drift",
        PREDICTIONS,
        False,
        judge_score_drift,
        lambda s: (
            f"PSI and KS of the scores against the model's reference scores: warn above PSI "
            f"{s.checks.score_drift.psi_warn}, error above {s.checks.score_drift.psi_error}; fewer than "
            f"{s.checks.score_drift.min_rows} rows are not judged."
        ),
    ),
    Check(
        "feature_drift",
        FEATURES,
        False,
        judge_feature_drift,
        lambda s: (
            f"Per-column PSI/KS of the features against the reference in the {s.model.alias} "
            "model's manifest (warn only)."
        ),
    ),
    Check(
        "contract",
        FEATURES,
        True,
        judge_contract,
        lambda s: (
            "The pandera contract of the feature table (columns, dtypes, nullability, hard limits): "
            "blocking on a structural break or more than "
            f"{s.features.max_bad_row_fraction:.0%} bad rows, a warning below that."
        ),
    ),
)

# The blocking checks of the predictions: what a canary must pass before a rollout goes on.
BLOCKING_PREDICTION_CHECKS = tuple(c.name for c in CHECKS if c.blocking and c.asset == PREDICTIONS)


def snapshot_partition(con: Any, spec: SpecFile, day: Any) -> dict[str, str]:
    """Read one partition's predictions, dead letters and feature keys from the lake once, into tables of
    the connection's in-memory database; the prediction checks then judge that one snapshot."""
    key = f'"{check_identifier(spec.features.key)}"'
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{SNAPSHOT}"')
    # names are validated identifiers, quoted; the day is a parameter
    reads = {
        "output": f"SELECT * FROM {quote_table(spec.output.table)}",  # noqa: S608
        "dead_letters": f"SELECT * FROM {quote_table(spec.output.dead_letter_table)}",  # noqa: S608
        "features": f"SELECT {key}, partition_date FROM {quote_table(spec.features.table)}",  # noqa: S608
    }
    tables = {}
    for name, select in reads.items():
        con.execute(
            f'CREATE OR REPLACE TABLE "{SNAPSHOT}"."{name}" AS {select} WHERE partition_date = $day',  # noqa: S608
            {"day": day},
        )
        tables[name] = f"{SNAPSHOT}.{name}"
    return tables


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
        verdicts: dict[str, dict[str, Verdict]] = {c.name: {} for c in selected}
        lookups = StepLookups(context.instance, model_registry, context.partition_keys)
        reads = [spec.features.table]
        if asset == PREDICTIONS:
            reads += [spec.output.table, spec.output.dead_letter_table]
        with warehouse.connect(tables=reads) as con:
            for key in context.partition_keys:
                day = partition_value(spec, key)
                tables = snapshot_partition(con, spec, day) if asset == PREDICTIONS else {}
                part = Partition(spec, key, con, lookups, tables)
                for check in selected:
                    verdicts[check.name][key] = check.judge(part)
        for check in selected:
            push_check_metrics(context, metrics, asset_key, check.name, verdicts[check.name])
            for key, v in verdicts[check.name].items():
                yield dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=check.name,
                    passed=v.passed,
                    metadata=v.metadata,
                    severity=v.severity,
                    description=v.description,
                    blocking=check.blocking,
                    partition=key,
                )
        for check in selected:  # the step's check outputs: downstream steps gate on the evaluations above
            yield dg.Output(None, output_name=outputs[check.name])

    return _checks


def build_checks(spec: SpecFile) -> list[dg.AssetChecksDefinition]:
    """The checks of ``spec``'s predictions asset and of the features asset it scores, two steps."""
    return [
        build_multi_check(spec, asset, [c for c in CHECKS if c.asset == asset])
        for asset in (PREDICTIONS, FEATURES)
    ]
