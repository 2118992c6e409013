"""The drift table and score plot attached to a scored partition's materialization (pure)."""

import base64
import datetime as dt
import re

import numpy as np

from batch_assets.core.drift import DriftThresholds, reference_stats
from batch_assets.core.plots import INLINE_MARKDOWN_LIMIT
from batch_assets.core.report import score_report

DAY = dt.date(2026, 10, 25)


def test_report_shows_readable_drift_numbers_and_an_inline_plot():
    rng = np.random.default_rng(0)
    reference = reference_stats(rng.beta(2, 6, 5000))
    report = score_report(
        rng.beta(4, 3, 2000).astype(np.float32),  # shifted well to the right
        day=DAY,
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
    report = score_report(np.array([], np.float32), day=DAY, reference=None, thresholds=DriftThresholds())
    assert "| verdict | **no_reference** |" in report["score_drift"]
    assert "data:image/png;base64," in report["score_distribution"]
