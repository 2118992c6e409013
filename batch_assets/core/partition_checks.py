"""The arithmetic of the per-partition checks, as SQL over the warehouse and plain numpy.

Each function returns a :class:`CheckOutcome`: pass or fail, a severity, a one-line description, the
statistic and its threshold, and sample rows. The Dagster wiring (``batch_assets/checks.py``) only turns
outcomes into ``AssetCheckResult``s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from batch_assets.core.contracts import FeatureContract, validate_batches
from batch_assets.core.drift import DriftResult, DriftThresholds, assess
from batch_assets.core.names import check_identifier, quote_table

SAMPLE_ROWS = 10


@dataclass
class CheckOutcome:
    passed: bool
    severity: str  # "error" or "warn": how a failure counts; blocking checks stop downstream on "error"
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # rendered as markdown tables


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rel = con.sql(sql, params=params)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def completeness(
    con: duckdb.DuckDBPyConnection,
    *,
    day: dt.date,
    features_table: str,
    output_table: str,
    dead_letter_table: str,
    key: str,
) -> CheckOutcome:
    """Every feature row is scored exactly once or dead-lettered; no prediction without a feature row."""
    k = f'"{check_identifier(key)}"'
    f, p, d = quote_table(features_table), quote_table(output_table), quote_table(dead_letter_table)
    ctes = f"""
        WITH f AS (SELECT {k} AS k FROM {f} WHERE partition_date = $day),
             p AS (SELECT {k} AS k, count(*) AS n FROM {p} WHERE partition_date = $day GROUP BY ALL),
             d AS (SELECT entity_id AS k FROM {d} WHERE partition_date = $day),
             missing AS (SELECT k FROM f WHERE k IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM p WHERE p.k = f.k)
                         AND NOT EXISTS (SELECT 1 FROM d WHERE d.k = f.k))"""
    counts = _rows(
        con,
        ctes
        + """
        SELECT (SELECT count(*) FROM f) AS expected,
               (SELECT coalesce(sum(n), 0) FROM p) AS scored,
               (SELECT count(*) FROM d) AS dead_lettered,
               (SELECT count(*) FROM missing)
                 + greatest(0, (SELECT count(*) FROM f WHERE k IS NULL) - (SELECT count(*) FROM d WHERE k IS NULL))
                 AS missing,
               (SELECT count(*) FROM p WHERE n > 1) AS duplicate_keys,
               (SELECT count(*) FROM p WHERE NOT EXISTS (SELECT 1 FROM f WHERE f.k = p.k)) AS orphan_predictions
        """,
        {"day": day},
    )[0]
    counts = {name: int(v) for name, v in counts.items()}
    # The predictions and the dead letters of a partition are two Delta commits of one write: every row of
    # both carries the run id, so a partition whose halves come from different runs (a crash or a lost race
    # between the two commits) is caught here and never published.
    runs = [
        r["run_id"]
        for r in _rows(
            con,
            f"""SELECT DISTINCT run_id FROM (
                SELECT run_id FROM {p} WHERE partition_date = $day
                UNION ALL SELECT run_id FROM {d} WHERE partition_date = $day) ORDER BY run_id""",
            {"day": day},
        )
    ]
    counts["writing_runs"] = len(runs)
    sample = _rows(con, ctes + f" SELECT k AS {k} FROM missing ORDER BY k LIMIT {SAMPLE_ROWS}", {"day": day})
    dupes = _rows(
        con,
        ctes + f" SELECT k AS {k}, n AS copies FROM p WHERE n > 1 ORDER BY k LIMIT {SAMPLE_ROWS}",
        {"day": day},
    )
    balanced = counts["scored"] + counts["dead_lettered"] == counts["expected"]
    mixed = len(runs) > 1
    passed = (
        balanced
        and not mixed
        and not (counts["missing"] or counts["duplicate_keys"] or counts["orphan_predictions"])
    )
    problems = [
        f"{counts[n]} {n.replace('_', ' ')}"
        for n in ("missing", "duplicate_keys", "orphan_predictions")
        if counts[n]
    ]
    if mixed:
        problems.append(
            f"predictions and dead letters come from {len(runs)} different runs ({', '.join(runs)}): "
            "a write did not finish both commits; re-materialize the partition"
        )
    if not balanced:
        problems.append(
            f"scored + dead-lettered = {counts['scored'] + counts['dead_lettered']} "
            f"!= {counts['expected']} feature rows"
        )
    desc = (
        (
            f"all {counts['expected']} feature rows accounted for: {counts['scored']} scored once, "
            f"{counts['dead_lettered']} dead-lettered"
        )
        if passed
        else "incomplete: " + "; ".join(problems)
    )
    return CheckOutcome(
        passed,
        "error",
        desc,
        {**counts, "threshold": "0 missing, 0 duplicates, 0 orphans, 1 writing run"},
        {"sample_missing": sample, "sample_duplicates": dupes},
    )


def dead_letter_rate(
    con: duckdb.DuckDBPyConnection,
    *,
    day: dt.date,
    features_table: str,
    dead_letter_table: str,
    max_fraction: float,
) -> CheckOutcome:
    """The share of feature rows that were dead-lettered stays at or below ``max_fraction``."""
    f, d = quote_table(features_table), quote_table(dead_letter_table)
    expected = con.execute(f"SELECT count(*) FROM {f} WHERE partition_date = $day", {"day": day}).fetchall()[
        0
    ][0]
    reasons = _rows(
        con,
        f"""SELECT split_part(reason, ':', 1) AS reason, count(*) AS rows
        FROM {d} WHERE partition_date = $day GROUP BY ALL ORDER BY rows DESC""",
        {"day": day},
    )
    sample = _rows(
        con,
        f"""SELECT entity_id, reason, payload::VARCHAR AS payload FROM {d}
        WHERE partition_date = $day ORDER BY entity_id NULLS FIRST LIMIT {SAMPLE_ROWS}""",
        {"day": day},
    )
    dead = sum(r["rows"] for r in reasons)
    fraction = dead / expected if expected else 0.0
    passed = fraction <= max_fraction
    desc = f"{dead} of {expected} rows dead-lettered ({fraction:.2%}); limit {max_fraction:.2%}"
    return CheckOutcome(
        passed,
        "error",
        desc,
        {
            "dead_lettered": dead,
            "rows": int(expected),
            "fraction": round(fraction, 6),
            "threshold": max_fraction,
        },
        {"reasons": reasons, "sample_dead_letters": sample},
    )


def validity(
    con: duckdb.DuckDBPyConnection, *, day: dt.date, output_table: str, key: str, low: float, high: float
) -> CheckOutcome:
    """Scores are finite and inside the model's declared output range."""
    p, k = quote_table(output_table), f'"{check_identifier(key)}"'
    bad = "(isnan(score) OR isinf(score) OR score < $lo OR score > $hi)"
    params = {"day": day, "lo": low, "hi": high}
    stats = _rows(
        con,
        f"""SELECT count(*) AS rows, count(*) FILTER (WHERE {bad}) AS invalid,
        min(score) AS min_score, max(score) AS max_score FROM {p} WHERE partition_date = $day""",
        params,
    )[0]
    sample = _rows(
        con,
        f"""SELECT {k}, score FROM {p} WHERE partition_date = $day AND {bad}
        ORDER BY {k} LIMIT {SAMPLE_ROWS}""",
        params,
    )
    invalid = int(stats["invalid"])
    desc = (
        f"all {stats['rows']} scores finite and within [{low:g}, {high:g}]"
        if not invalid
        else f"{invalid} of {stats['rows']} scores are not finite or outside [{low:g}, {high:g}]"
    )
    return CheckOutcome(
        not invalid,
        "error",
        desc,
        {
            "rows": int(stats["rows"]),
            "invalid": invalid,
            "threshold": f"[{low:g}, {high:g}]",
            "min_score": _f(stats["min_score"]),
            "max_score": _f(stats["max_score"]),
        },
        {"sample_invalid": [{**r, "score": _f(r["score"])} for r in sample]},
    )


def provenance(
    con: duckdb.DuckDBPyConnection,
    *,
    day: dt.date,
    output_table: str,
    key: str,
    model_name: str,
    model_version: str | None,
    run_id: str | None,
    recorded_sha256: str | None,
    manifest_sha256: str | None,
) -> CheckOutcome:
    """Every row carries this materialization's model and run, and its sha256 matches the registry's."""
    p, k = quote_table(output_table), f'"{check_identifier(key)}"'
    params = {"day": day, "name": model_name, "version": model_version or "", "run": run_id or ""}
    cond = "(model_name IS DISTINCT FROM $name OR model_version IS DISTINCT FROM $version OR run_id IS DISTINCT FROM $run)"
    stats = _rows(
        con,
        f"""SELECT count(*) AS rows, count(*) FILTER (WHERE {cond}) AS mismatched
        FROM {p} WHERE partition_date = $day""",
        params,
    )[0]
    sample = _rows(
        con,
        f"""SELECT {k}, model_name, model_version, run_id FROM {p}
        WHERE partition_date = $day AND {cond} ORDER BY {k} LIMIT {SAMPLE_ROWS}""",
        params,
    )
    problems = []
    if not model_version or not run_id or not recorded_sha256:
        problems.append("the materialization did not record model version, run id and sha256")
    if stats["mismatched"]:
        problems.append(
            f"{stats['mismatched']} rows do not carry {model_name}/{model_version} and run {run_id}"
        )
    if manifest_sha256 is None:
        problems.append(f"version {model_version} is not in the registry")
    elif recorded_sha256 and recorded_sha256 != manifest_sha256:
        problems.append(
            f"recorded sha256 {recorded_sha256[:12]}… != registry manifest {manifest_sha256[:12]}…"
        )
    desc = (
        f"{stats['rows']} rows scored by {model_name}/{model_version} (sha256 {str(recorded_sha256)[:12]}…) "
        f"in run {str(run_id)[:8]}"
        if not problems
        else "; ".join(problems)
    )
    return CheckOutcome(
        not problems,
        "error",
        desc,
        {
            "rows": int(stats["rows"]),
            "mismatched_rows": int(stats["mismatched"]),
            "model_version": model_version or "",
            "run_id": run_id or "",
            "recorded_sha256": recorded_sha256 or "",
            "manifest_sha256": manifest_sha256 or "",
        },
        {"sample_mismatched": sample},
    )


def score_drift(
    con: duckdb.DuckDBPyConnection,
    *,
    day: dt.date,
    output_table: str,
    reference: Mapping[str, Any] | None,
    thresholds: DriftThresholds,
) -> CheckOutcome:
    """PSI and KS of the partition's scores against the model's reference scores."""
    p = quote_table(output_table)
    scores = con.execute(f"SELECT score FROM {p} WHERE partition_date = $day", {"day": day}).fetchnumpy()[
        "score"
    ]
    result = assess(reference, np.asarray(scores), thresholds)
    return _drift_outcome(
        "scores", result, thresholds, severity="error" if result.verdict == "error" else "warn"
    )


def feature_drift(
    con: duckdb.DuckDBPyConnection,
    *,
    day: dt.date,
    features_table: str,
    references: Mapping[str, Any],
    thresholds: DriftThresholds,
    per_feature: Mapping[str, DriftThresholds] | None = None,
) -> CheckOutcome:
    """Per-column PSI/KS of a feature partition against the reference features of the model's manifest."""
    if not references:
        return CheckOutcome(
            True,
            "warn",
            "not judged: the model manifest has no reference features",
            {"verdict": "no_reference"},
        )
    f = quote_table(features_table)
    cols = [check_identifier(c) for c in references]
    data = con.execute(
        f"SELECT {', '.join(cols)} FROM {f} WHERE partition_date = $day", {"day": day}
    ).fetchnumpy()
    per_feature = per_feature or {}
    table = []
    worst = "ok"
    order = ["ok", "insufficient_data", "no_reference", "warn", "error"]
    for col in cols:
        t = per_feature.get(col, thresholds)
        r = assess(references[col], np.asarray(data[col]), t)
        table.append({"column": col, **r.as_dict(), "psi_warn": t.psi_warn, "psi_error": t.psi_error})
        worst = max(worst, r.verdict, key=order.index)
    drifted = [row["column"] for row in table if row["verdict"] in ("warn", "error")]
    table.sort(key=lambda row: -(row["psi"] or 0))
    rows = table[0]["rows"] if table else 0
    if worst in ("insufficient_data", "no_reference") and not drifted:
        return CheckOutcome(
            True,
            "warn",
            f"not judged: {table[0]['reason']}",
            {"verdict": worst, "rows": rows},
            {"drift_by_column": table},
        )
    desc = (
        f"no drift in {len(cols)} columns (max PSI {table[0]['psi']:.3f} in {table[0]['column']})"
        if not drifted
        else f"{len(drifted)} of {len(cols)} columns drifted: {', '.join(drifted)}"
    )
    return CheckOutcome(
        not drifted,
        "warn",
        desc,
        {
            "verdict": worst,
            "rows": rows,
            "drifted_columns": len(drifted),
            "max_psi": table[0]["psi"],
            "max_psi_column": table[0]["column"],
            "threshold": f"PSI warn > {thresholds.psi_warn}, error > {thresholds.psi_error}",
        },
        {"drift_by_column": table},
    )


def contract(
    con: duckdb.DuckDBPyConnection,
    *,
    day: dt.date,
    features_table: str,
    feature_contract: FeatureContract,
    batch_rows: int = 65_536,
) -> CheckOutcome:
    """The pandera contract over one feature partition, streamed in batches; plus key uniqueness."""
    f, k = quote_table(features_table), f'"{check_identifier(feature_contract.key)}"'
    dup = con.execute(
        f"""SELECT count(*) FROM (SELECT {k} FROM {f} WHERE partition_date = $day
        GROUP BY ALL HAVING count(*) > 1)""",
        {"day": day},
    ).fetchall()[0][0]
    reader = con.sql(f"SELECT * FROM {f} WHERE partition_date = $day", params={"day": day}).to_arrow_reader(
        batch_rows
    )
    try:
        report = validate_batches(feature_contract, reader)
    finally:
        reader.close()  # a structural break stops reading early; the connection must not keep the result
    limit = feature_contract.max_bad_row_fraction
    rules = [{"rule": rule, "failures": n} for rule, n in sorted(report.failures_by_rule.items())]
    meta = {
        "rows": report.rows,
        "bad_rows": report.bad_rows,
        "bad_row_fraction": round(report.bad_row_fraction, 6),
        "duplicate_keys": int(dup),
        "threshold": f"no structural break; bad rows <= {limit:.2%}",
    }
    if report.structural:
        return CheckOutcome(
            False,
            "error",
            "schema break: " + "; ".join(report.structural),
            {**meta, "structural": "; ".join(report.structural)},
            {},
        )
    if report.rows == 0:
        return CheckOutcome(False, "error", "the feature partition is empty", meta, {})
    if report.bad_row_fraction > limit:
        return CheckOutcome(
            False,
            "error",
            f"{report.bad_rows} of {report.rows} rows break the contract "
            f"({report.bad_row_fraction:.2%} > {limit:.2%})",
            meta,
            {"failures_by_rule": rules, "sample_failures": report.sample},
        )
    if report.bad_rows or dup:
        return CheckOutcome(
            False,
            "warn",
            f"{report.bad_rows} rows break the contract and {dup} keys repeat; they will be "
            "dead-lettered when scored",
            meta,
            {"failures_by_rule": rules, "sample_failures": report.sample},
        )
    return CheckOutcome(True, "error", f"all {report.rows} rows meet the contract", meta, {})


def _drift_outcome(
    what: str, result: DriftResult, thresholds: DriftThresholds, severity: str
) -> CheckOutcome:
    meta = {
        **result.as_dict(),
        "psi_warn": thresholds.psi_warn,
        "psi_error": thresholds.psi_error,
        "min_rows": thresholds.min_rows,
        "non_finite": result.non_finite,
    }
    if result.verdict in ("insufficient_data", "no_reference"):
        return CheckOutcome(True, "warn", f"not judged: {result.reason}", meta)
    desc = (
        f"{what}: PSI {result.psi:.3f} (warn > {thresholds.psi_warn}, error > {thresholds.psi_error}), "
        f"KS {result.ks_statistic:.3f} (p={result.ks_pvalue:.2g}) over {result.rows} rows"
    )
    return CheckOutcome(result.verdict == "ok", severity, desc, meta)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)
