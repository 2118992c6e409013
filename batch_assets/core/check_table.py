"""The check table: every per-partition check declared once, with its dagster-free judge.

Each :class:`Check` names the asset it judges (predictions or features), whether it blocks, what it says
(from the spec's thresholds) and its judge: one :class:`PartitionView` in, one ``CheckOutcome`` out (its
severity is the severity rule: "error" or "warn"). ``batch_assets.checks`` builds the partitioned Dagster
checks from this table; the rollout sensor and the CLI read :data:`BLOCKING_PREDICTION_CHECKS` from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from batch_assets.core import partition_checks as pc
from batch_assets.core.names import check_identifier, quote_table
from batch_assets.core.partition_checks import CheckOutcome
from batch_assets.core.registry import ModelNotFound, ModelVersion
from batch_assets.core.spec_file import SpecFile

PREDICTIONS, FEATURES = "predictions", "features"
SNAPSHOT = "judged"  # in-memory schema of the step's DuckDB connection holding the partition being judged


@dataclass(frozen=True)
class Scored:
    """What the latest write of a predictions partition recorded: the model version, sha256 and run."""

    model_version: str | None
    model_sha256: str | None
    run_id: str


class PartitionView:
    """What the judges of one partition read: its day, the DuckDB connection (and, for the prediction
    checks, the snapshot tables to read instead of the lake's), and lookups the caller provides: the
    partition's latest write, why its features cannot be compared with a reference, and model versions."""

    def __init__(
        self,
        spec: SpecFile,
        key: str,
        day: Any,
        con: Any,
        *,
        tables: dict[str, str],
        scored: Callable[[], Scored | None],
        window_note: Callable[[], str | None],
        model: Callable[[str], ModelVersion],
        aliased: Callable[[], ModelVersion],
    ):
        self.spec, self.key, self.day, self.con = spec, key, day, con
        self.features_table = tables.get("features", spec.features.table)
        self.output_table = tables.get("output", spec.output.table)
        self.dead_letter_table = tables.get("dead_letters", spec.output.dead_letter_table)
        self._scored, self._window_note, self.model, self.aliased = scored, window_note, model, aliased

    @cached_property
    def scored(self) -> Scored | None:
        return self._scored()

    @cached_property
    def incomplete_window(self) -> str | None:
        return self._window_note()


def not_judged(note: str, verdict: str = "not_judged") -> CheckOutcome:
    return CheckOutcome(True, "warn", note, {"verdict": verdict})


def unscored(p: PartitionView) -> CheckOutcome:
    return CheckOutcome(False, "error", f"{p.key} has not been materialized")


# -- the judges: one partition in, one outcome out -------------------------------------------------------


def judge_completeness(p: PartitionView) -> CheckOutcome:
    return pc.completeness(
        p.con,
        day=p.day,
        features_table=p.features_table,
        output_table=p.output_table,
        dead_letter_table=p.dead_letter_table,
        key=p.spec.features.key,
    )


def judge_dead_letters(p: PartitionView) -> CheckOutcome:
    return pc.dead_letter_rate(
        p.con,
        day=p.day,
        features_table=p.features_table,
        dead_letter_table=p.dead_letter_table,
        max_fraction=p.spec.checks.max_dead_letter_fraction,
    )


def judge_validity(p: PartitionView) -> CheckOutcome:
    if p.scored is None:
        return unscored(p)
    low, high = p.model(p.scored.model_version).output_range
    return pc.validity(
        p.con, day=p.day, output_table=p.output_table, key=p.spec.features.key, low=low, high=high
    )


def judge_provenance(p: PartitionView) -> CheckOutcome:
    if p.scored is None:
        return unscored(p)
    try:
        manifest_sha = p.model(p.scored.model_version).sha256
    except ModelNotFound:
        manifest_sha = None
    return pc.provenance(
        p.con,
        day=p.day,
        output_table=p.output_table,
        key=p.spec.features.key,
        model_name=p.spec.model.name,
        model_version=p.scored.model_version,
        run_id=p.scored.run_id,
        recorded_sha256=p.scored.model_sha256,
        manifest_sha256=manifest_sha,
    )


def judge_score_drift(p: PartitionView) -> CheckOutcome:
    if p.scored is None:
        return unscored(p)
    if p.incomplete_window:
        return not_judged(p.incomplete_window)
    manifest = p.model(p.scored.model_version).manifest
    return pc.score_drift(
        p.con,
        day=p.day,
        output_table=p.output_table,
        reference=manifest.get("reference", {}).get("score"),
        thresholds=p.spec.checks.score_drift,
    )


def judge_feature_drift(p: PartitionView) -> CheckOutcome:
    if p.incomplete_window:
        return not_judged(p.incomplete_window)
    try:
        info = p.aliased()
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
    return outcome


def judge_contract(p: PartitionView) -> CheckOutcome:
    return pc.contract(p.con, day=p.day, features_table=p.features_table, feature_contract=p.spec.contract)


@dataclass(frozen=True)
class Check:
    """A check, declared once: its name, the asset it judges, whether it blocks, what it says, its judge."""

    name: str
    asset: str  # PREDICTIONS or FEATURES
    blocking: bool
    judge: Callable[[PartitionView], CheckOutcome]
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
            f"At most {s.checks.max_dead_letter_fraction:.0%} of the feature rows are dead-lettered; "
            "the reasons and a sample are attached."
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
            f"blocking on a structural break or more than {s.features.max_bad_row_fraction:.0%} bad rows, a "
            "warning below that."
        ),
    ),
)

# The blocking checks: a failure with ERROR stops what is downstream (the CLI names each one and says why);
# those of the predictions are what a canary must pass before a rollout goes on.
ANY_BLOCKING_CHECK = tuple(c.name for c in CHECKS if c.blocking)
BLOCKING_PREDICTION_CHECKS = tuple(c.name for c in CHECKS if c.blocking and c.asset == PREDICTIONS)


def snapshot_partition(con: Any, spec: SpecFile, day: Any) -> dict[str, str]:
    """Read one partition's predictions, dead letters and feature keys from the lake once, into tables of
    the connection's in-memory database; the prediction checks then judge that one snapshot."""
    key = f'"{check_identifier(spec.features.key)}"'
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{SNAPSHOT}"')
    # names are validated identifiers, quoted; the day is a parameter
    reads = {
        "output": f"SELECT * FROM {quote_table(spec.output.table)}",
        "dead_letters": f"SELECT * FROM {quote_table(spec.output.dead_letter_table)}",
        "features": f"SELECT {key}, partition_date FROM {quote_table(spec.features.table)}",
    }
    tables = {}
    for name, select in reads.items():
        con.execute(
            f'CREATE OR REPLACE TABLE "{SNAPSHOT}"."{name}" AS {select} WHERE partition_date = $day',
            {"day": day},
        )
        tables[name] = f"{SNAPSHOT}.{name}"
    return tables
