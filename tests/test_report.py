"""The drift table and score plot attached to a scored partition's materialization (pure, DuckDB only)."""

import base64
import datetime as dt
import re

import duckdb
import numpy as np

from batch_assets.scoring.drift import DriftThresholds, reference_stats
from batch_assets.scoring.plots import INLINE_MARKDOWN_LIMIT
from batch_assets.scoring.report import score_report

DAY = dt.date(2026, 10, 25)


def scores_table(values: np.ndarray) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA predictions")
    con.execute("CREATE TABLE predictions.risk_scores (partition_date DATE, score REAL)")
    if len(values):
        con.executemany(
            "INSERT INTO predictions.risk_scores VALUES (?, ?)", [(DAY, float(v)) for v in values]
        )
    return con


def test_report_shows_readable_drift_numbers_and_an_inline_plot():
    rng = np.random.default_rng(0)
    reference = reference_stats(rng.beta(2, 6, 5000))
    con = scores_table(rng.beta(4, 3, 2000))  # shifted well to the right
    report = score_report(
        con,
        day=DAY,
        output_table="predictions.risk_scores",
        reference=reference,
        thresholds=DriftThresholds(),
    )
    table = report["score_drift"]
    assert table.startswith("| statistic | partition | reference |")
    psi = float(re.search(r"\| PSI \| ([0-9.]+) \|", table).group(1))
    assert psi > 0.25 and "| verdict | **error** |" in table and "| rows | 2000 | 5000 |" in table
    md = report["score_distribution"]
    assert len(md) < INLINE_MARKDOWN_LIMIT  # the UI shows it inline, not behind a button
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", md).group(1))
    assert png.startswith(b"\x89PNG") and len(png) < 700
    assert "decile of the reference scores" in md and "2000 rows" in md


def test_report_without_reference_or_rows_still_renders():
    con = scores_table(np.array([]))
    report = score_report(
        con, day=DAY, output_table="predictions.risk_scores", reference=None, thresholds=DriftThresholds()
    )
    assert "| verdict | **no_reference** |" in report["score_drift"]
    assert "data:image/png;base64," in report["score_distribution"]
