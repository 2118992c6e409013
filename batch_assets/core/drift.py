"""Drift statistics: PSI on reference-quantile bins and the two-sample Kolmogorov-Smirnov test.

The verdict uses effect sizes (PSI, and the KS statistic when thresholds are set), never p-values alone: with
a million rows every p-value is tiny. The KS p-value is reported as context. Below ``min_rows`` the verdict
is ``insufficient_data`` instead of a false alarm.

Reference statistics are computed at training time (``reference_stats``) and stored in the model manifest:
interior bin edges at the reference deciles, the reference share of each bin, and a deterministic sample
for the KS test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

PSI_BINS = 10
REFERENCE_SAMPLE = 1000
EPS = 1e-4  # floor for empty-bin shares, so an empty bin costs a large but finite PSI term


def reference_stats(values: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """What drift checks need of one variable: decile bins and their shares, a sample, moments."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    stats: dict[str, Any] = {"count": int(values.size), "non_finite": int(values.size - finite.size)}
    if finite.size == 0:
        return stats
    edges = bin_edges(finite)
    sample = (
        finite
        if finite.size <= REFERENCE_SAMPLE
        else np.random.default_rng(seed).choice(finite, REFERENCE_SAMPLE, replace=False)
    )
    stats.update(
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        quantiles=[float(q) for q in np.quantile(finite, np.linspace(0, 1, 101))],
        psi_edges=[float(e) for e in edges],
        psi_fractions=[float(f) for f in bin_fractions(finite, edges)],
        sample=[float(np.float32(v)) for v in np.sort(sample)],
    )
    return stats


def bin_edges(values: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Unique interior edges at the deciles; bins are (-inf, e1], (e1, e2], ..., (ek, inf)."""
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def bin_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin defined by ``edges`` (right-closed)."""
    idx = np.searchsorted(edges, values, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return counts / max(values.size, 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two bin-share vectors, with empty bins floored at ``EPS``."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftThresholds(BaseModel):
    """When a drift statistic warns or errors, and the fewest rows judged; a spec file's ``score_drift``,
    ``feature_drift`` and ``feature_drift_overrides`` entries are these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psi_warn: float = Field(default=0.1, ge=0)
    psi_error: float = Field(default=0.25, ge=0)
    ks_warn: float | None = Field(default=None, ge=0, le=1)
    ks_error: float | None = Field(default=None, ge=0, le=1)
    min_rows: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.psi_warn > self.psi_error:
            raise ValueError(f"psi_warn {self.psi_warn} is greater than psi_error {self.psi_error}")
        if self.ks_warn is not None and self.ks_error is not None and self.ks_warn > self.ks_error:
            raise ValueError(f"ks_warn {self.ks_warn} is greater than ks_error {self.ks_error}")
        return self


@dataclass(frozen=True)
class DriftResult:
    """``verdict`` is one of ok, warn, error, insufficient_data, no_reference."""

    verdict: str
    rows: int
    psi: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    non_finite: int = 0
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "rows": self.rows,
            "psi": None if self.psi is None else round(self.psi, 6),
            "ks_statistic": None if self.ks_statistic is None else round(self.ks_statistic, 6),
            "ks_pvalue": None if self.ks_pvalue is None else float(f"{self.ks_pvalue:.3g}"),
            "reason": self.reason,
        }


def assess(reference: dict[str, Any] | None, values: np.ndarray, thresholds: DriftThresholds) -> DriftResult:
    """Compare ``values`` with a variable's reference statistics; the verdict follows ``thresholds``."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    non_finite = int(values.size - finite.size)
    if not reference or "psi_edges" not in reference or "sample" not in reference:
        return DriftResult(
            "no_reference",
            finite.size,
            non_finite=non_finite,
            reason="the model manifest has no reference statistics for this variable",
        )
    if finite.size < thresholds.min_rows:
        return DriftResult(
            "insufficient_data",
            finite.size,
            non_finite=non_finite,
            reason=f"{finite.size} finite rows < min_rows {thresholds.min_rows}",
        )
    edges = np.asarray(reference["psi_edges"], dtype=np.float64)
    value = psi(reference["psi_fractions"], bin_fractions(finite, edges))
    from scipy.stats import ks_2samp  # on first use: scipy.stats costs a run process about 1 s to import

    # the verdict reads the statistic; the p-value is reported only, and scipy's exact method (its default
    # up to 10,000 rows a side) costs ~20 ms a column against ~1 ms for the asymptotic one, which is accurate
    # at these sample sizes
    ks = ks_2samp(finite, np.asarray(reference["sample"], dtype=np.float64), method="asymp")
    verdict = "ok"
    if value > thresholds.psi_error or (
        thresholds.ks_error is not None and ks.statistic > thresholds.ks_error
    ):
        verdict = "error"
    elif value > thresholds.psi_warn or (
        thresholds.ks_warn is not None and ks.statistic > thresholds.ks_warn
    ):
        verdict = "warn"
    return DriftResult(verdict, finite.size, value, float(ks.statistic), float(ks.pvalue), non_finite)
