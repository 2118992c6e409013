"""Drift statistics against independent calculations on known distributions, and their edge cases."""

import numpy as np
import pytest
from scipy.stats import norm

from batch_assets.core.drift import (
    EPS,
    DriftThresholds,
    assess,
    bin_edges,
    bin_fractions,
    psi,
    reference_stats,
)

RNG = np.random.default_rng(42)
REF = reference_stats(RNG.normal(0, 1, 200_000))


def test_psi_matches_the_textbook_formula():
    e, a = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])
    by_hand = (0.4 - 0.5) * np.log(0.4 / 0.5) + (0.4 - 0.3) * np.log(0.4 / 0.3) + 0
    assert psi(e, a) == pytest.approx(by_hand)
    assert psi(e, e) == 0


def test_psi_of_a_normal_mean_shift_matches_the_exact_binned_value():
    # exact PSI of N(delta, 1) against N(0, 1) on the reference's decile bins, from the normal CDF
    delta = 0.5
    edges = np.asarray(REF["psi_edges"])
    cdf = np.r_[0.0, norm.cdf(edges - delta), 1.0]
    actual_exact = np.diff(cdf)
    expected_exact = np.diff(np.r_[0.0, norm.cdf(edges), 1.0])
    exact = np.sum((actual_exact - expected_exact) * np.log(actual_exact / expected_exact))
    shifted = RNG.normal(delta, 1, 200_000)
    result = assess(REF, shifted, DriftThresholds())
    assert result.psi == pytest.approx(exact, rel=0.05)
    assert result.verdict == "warn"  # exact is about 0.23: between 0.1 and 0.25


def test_ks_statistic_of_a_normal_mean_shift_matches_theory():
    # sup |F(x) - F(x - d)| for normals is 2 * Phi(d / 2) - 1
    delta = 1.0
    result = assess(REF, RNG.normal(delta, 1, 100_000), DriftThresholds())
    assert result.ks_statistic == pytest.approx(2 * norm.cdf(delta / 2) - 1, abs=0.05)  # 1000-point sample
    assert result.ks_pvalue < 1e-10
    assert result.verdict == "error"


def test_same_distribution_is_ok_even_when_large():
    result = assess(REF, RNG.normal(0, 1, 1_000_000), DriftThresholds())
    assert result.verdict == "ok" and result.psi < 0.01


def test_empty_bins_are_floored_not_infinite():
    # every actual value above the reference's top decile: nine empty bins
    result = assess(REF, np.full(5000, 10.0), DriftThresholds())
    expected = np.r_[np.full(9, 0.1)]
    by_hand = np.sum((EPS - expected) * np.log(EPS / expected)) + (1 - 0.1) * np.log(1 / 0.1)
    assert np.isfinite(result.psi) and result.psi == pytest.approx(by_hand, rel=1e-6)
    assert result.verdict == "error"


def test_constant_reference_and_constant_scores():
    ref = reference_stats(np.zeros(1000))
    assert ref["psi_edges"] == [0.0] and ref["psi_fractions"] == [1.0, 0.0]
    same = assess(ref, np.zeros(500), DriftThresholds())
    assert same.verdict == "ok" and same.psi == 0 and same.ks_statistic == 0
    moved = assess(ref, np.ones(500), DriftThresholds())
    assert moved.verdict == "error" and moved.ks_statistic == 1


def test_tiny_partition_is_not_judged():
    result = assess(REF, RNG.normal(3, 1, 50), DriftThresholds(min_rows=200))
    assert result.verdict == "insufficient_data" and "50 finite rows" in result.reason
    assert result.psi is None


def test_non_finite_values_are_counted_not_binned():
    values = np.r_[RNG.normal(0, 1, 1000), [np.nan, np.inf]]
    result = assess(REF, values, DriftThresholds())
    assert result.non_finite == 2 and result.rows == 1000


def test_missing_reference_says_so():
    assert assess(None, np.zeros(10), DriftThresholds()).verdict == "no_reference"


def test_ks_thresholds_can_drive_the_verdict():
    result = assess(REF, RNG.normal(0.3, 1, 10_000), DriftThresholds(psi_warn=1, psi_error=2, ks_warn=0.05))
    assert result.verdict == "warn"


@pytest.mark.parametrize("kwargs", [{"psi_warn": 0.3, "psi_error": 0.2}, {"psi_warn": -1}, {"min_rows": 0}])
def test_bad_thresholds_are_refused(kwargs):
    with pytest.raises(ValueError):
        DriftThresholds(**kwargs)


def test_bins_are_right_closed_deciles():
    values = np.arange(1, 101, dtype=float)
    edges = bin_edges(values)
    assert len(edges) == 9
    np.testing.assert_allclose(bin_fractions(values, edges), np.full(10, 0.1))
