"""edgellm_ext.stats on inputs with hand-computed answers, and against scipy as an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgellm_ext import stats

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the independent reference (test extra)")


def test_summarize_known_input_removes_the_outlier():
    # 1..10 plus 100: q1 = 3.5, q3 = 8.5 (linear interpolation), iqr = 5, fences [-4, 16] -> 100 is removed.
    samples = list(range(1, 11)) + [100]
    s = stats.summarize(samples)
    assert s["n_samples"] == 11 and s["n_kept"] == 10 and s["outliers_removed"] == 1
    assert s["median"] == 5.5 and s["p50"] == 5.5 and s["mean"] == 5.5
    assert s["std"] == pytest.approx(math.sqrt(sum((x - 5.5) ** 2 for x in range(1, 11)) / 9), rel=1e-12)
    # kept 1..10: p95 = 1 + 0.95 * 9 = 9.55, p99 = 9.91, iqr = 7.75 - 3.25 = 4.5
    assert s["p95"] == pytest.approx(9.55) and s["p99"] == pytest.approx(9.91)
    assert s["iqr"] == pytest.approx(4.5)
    # min/max are over all samples so the extremes stay visible
    assert s["min"] == 1 and s["max"] == 100
    # n = 10 at 95%: [x(2), x(9)] (see test_median_ci_known_n10)
    assert (s["median_ci_low"], s["median_ci_high"]) == (2.0, 9.0)


def test_summarize_without_outlier_rule_keeps_everything():
    s = stats.summarize([1, 2, 3, 1000], outlier_k=None)
    assert s["n_kept"] == 4 and s["outliers_removed"] == 0 and s["mean"] == pytest.approx(251.5)
    assert s["outlier_rule"] == "none"


def test_summarize_single_sample():
    s = stats.summarize([7.0])
    assert s["median"] == 7.0 and s["std"] == 0.0 and s["n_kept"] == 1


def test_iqr_filter_keeps_order_and_counts():
    kept, removed = stats.iqr_filter([5, -100, 4, 6, 5, 4, 6, 200])
    assert removed == 2
    assert kept.tolist() == [5, 4, 6, 5, 4, 6]


def test_iqr_filter_matches_scipy_iqr_fences():
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 1, 513)
    q1, q3 = np.percentile(x, [25, 75])
    iqr = scipy_stats.iqr(x)  # independent implementation of q3 - q1
    assert iqr == pytest.approx(q3 - q1)
    kept, removed = stats.iqr_filter(x)
    expected = x[(x >= q1 - 1.5 * iqr) & (x <= q3 + 1.5 * iqr)]
    np.testing.assert_array_equal(kept, expected)
    assert removed == x.size - expected.size and removed > 0


@pytest.mark.parametrize("bad, message", [
    ([], "at least 1"),
    ([1.0, float("nan")], "NaN or infinite"),
    ([1.0, float("inf")], "NaN or infinite"),
    ([[1.0, 2.0]], "1-D"),
])
def test_bad_samples_raise_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        stats.summarize(bad)


def test_bad_k_and_confidence():
    with pytest.raises(ValueError, match="k:"):
        stats.iqr_filter([1, 2, 3], k=-1)
    with pytest.raises(ValueError, match="confidence"):
        stats.median_ci([1, 2, 3], confidence=1.5)


def test_median_ci_known_n10():
    # B ~ Bin(10, 1/2): P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2) = 56/1024 -> [x(2), x(9)], coverage 1 - 22/1024.
    ci = stats.median_ci(np.arange(10, 0, -1))
    assert (ci["low"], ci["high"]) == (2.0, 9.0)
    assert ci["achieved"] == pytest.approx(1 - 22 / 1024)


def test_median_ci_too_few_samples_reports_lower_coverage():
    # n = 5: even [min, max] covers only 1 - 2/32 = 0.9375 < 0.95
    ci = stats.median_ci([3, 1, 2, 5, 4])
    assert (ci["low"], ci["high"]) == (1.0, 5.0)
    assert ci["achieved"] == pytest.approx(0.9375)


@pytest.mark.parametrize("n", [6, 7, 20, 63, 200, 1001])
def test_median_ci_matches_scipy_binomial_order_statistics(n):
    # Reference: the same distribution-free interval built from scipy's binomial CDF.
    rng = np.random.default_rng(n)
    x = rng.gamma(2.0, 3.0, n)
    xs = np.sort(x)
    j = max(k for k in range(1, n // 2 + 1) if scipy_stats.binom.cdf(k - 1, n, 0.5) <= 0.025)
    ci = stats.median_ci(x)
    assert ci["low"] == xs[j - 1] and ci["high"] == xs[n - j]
    assert ci["achieved"] == pytest.approx(1 - 2 * scipy_stats.binom.cdf(j - 1, n, 0.5), rel=1e-9)
    assert ci["achieved"] >= 0.95


@pytest.mark.parametrize("n1, n2, ties", [(5, 7, False), (40, 33, True), (200, 200, False), (1, 9, False)])
def test_mann_whitney_matches_scipy(n1, n2, ties):
    rng = np.random.default_rng(n1 * 1000 + n2)
    a = rng.normal(10.0, 1.0, n1)
    b = rng.normal(10.4, 1.0, n2)
    if ties:
        a, b = np.round(a), np.round(b)
    ours = stats.mann_whitney_u(a, b)
    ref = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
    assert ours["u"] == pytest.approx(ref.statistic, rel=1e-12)
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_mann_whitney_identical_values_and_clear_shift():
    assert stats.mann_whitney_u([3.0] * 5, [3.0] * 6)["p_value"] == 1.0
    r = stats.mann_whitney_u(np.arange(50) + 100.0, np.arange(50))
    assert r["p_value"] < 1e-15 and r["effect"] == 1.0 and r["z"] > 0


def test_bootstrap_median_ratio_is_reproducible_and_covers_the_truth():
    rng = np.random.default_rng(7)
    b = rng.normal(100.0, 2.0, 300)
    a = rng.normal(200.0, 4.0, 300)
    r1 = stats.bootstrap_median_ratio(a, b, seed=3)
    r2 = stats.bootstrap_median_ratio(a, b, seed=3)
    assert r1 == r2
    assert r1["ratio"] == pytest.approx(np.median(a) / np.median(b))
    assert r1["low"] <= r1["ratio"] <= r1["high"]
    assert 1.95 < r1["low"] and r1["high"] < 2.05


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="median is 0"):
        stats.bootstrap_median_ratio([1.0, 2.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="n_boot"):
        stats.bootstrap_median_ratio([1.0], [1.0], n_boot=10)


def test_compare_verdicts():
    rng = np.random.default_rng(11)
    base = rng.normal(100.0, 1.0, 200)
    assert stats.compare(base, rng.normal(115.0, 1.0, 200))["verdict"] == "regression"
    assert stats.compare(base, rng.normal(85.0, 1.0, 200))["verdict"] == "improvement"
    same = stats.compare(base, rng.normal(100.0, 1.0, 200))
    assert same["verdict"] == "no significant change" and abs(same["change"]) < 0.01
    # +5%: significant but inside the 10% threshold
    assert stats.compare(base, rng.normal(105.0, 1.0, 200))["verdict"] == "no significant change"
    # throughput: higher is better, so a drop is the regression
    assert stats.compare(base, rng.normal(80.0, 1.0, 200), higher_is_better=True)["verdict"] == "regression"


def test_compare_with_single_samples_uses_the_threshold_only():
    r = stats.compare([100.0], [120.0])
    assert r["verdict"] == "regression" and r["p_value"] is None and r["change"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="threshold"):
        stats.compare([1.0], [1.0], threshold=float("nan"))


def test_median_agreement():
    r = stats.median_agreement([100.0, 101.0, 99.0], [104.0, 104.0, 104.0])
    assert r["relative_difference"] == pytest.approx(0.04) and r["agree"]
    assert not stats.median_agreement([100.0], [106.0])["agree"]


def test_bootstrap_handles_large_sample_sets_in_bounded_memory():
    # 30k samples per side (pooled inter-token gaps of a full end-to-end run): batches keep memory bounded.
    rng = np.random.default_rng(5)
    a = rng.exponential(2.0, 30_000) + 10.0
    b = rng.exponential(2.0, 30_000) + 5.0
    r = stats.bootstrap_median_ratio(a, b, n_boot=300)
    assert r["low"] <= r["ratio"] <= r["high"] and r["high"] - r["low"] < 0.05
