"""Statistics for benchmark samples (numpy only).

What is here and why:

- :func:`summarize`: the seed methodology's statistics (median/mean/std/p50/p95/p99/min/max/iqr) after the
  IQR outlier rule, plus a distribution-free confidence interval for the median.
- :func:`iqr_filter`: Tukey's rule, keep samples inside [q1 - k*iqr, q3 + k*iqr] (k = 1.5 by default).
- :func:`median_ci`: the order-statistic (binomial) confidence interval for the median. It assumes only that the
  samples are independent draws from one continuous distribution: no normality, which timing data never has.
- :func:`mann_whitney_u`: two-sided Mann-Whitney U test with the normal approximation (tie and continuity
  corrected). Used to say whether two sample sets (A/B, baseline/current) differ by more than noise.
- :func:`bootstrap_median_ratio`: median(a)/median(b) with a percentile-bootstrap confidence interval; the
  "how much faster, give or take" figure for side-by-side comparisons.
- :func:`compare`: the baseline check built from the two above.

Percentiles use numpy's default (linear interpolation, "type 7"). Every function takes plain sequences or numpy
arrays of finite numbers and raises ValueError naming the problem for empty input, NaN or infinity.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import numpy as np

__all__ = [
    "bootstrap_median_ratio",
    "compare",
    "iqr_filter",
    "mann_whitney_u",
    "median_agreement",
    "median_ci",
    "summarize",
]

ArrayLike = Union[Sequence[float], np.ndarray]


def _as_samples(samples: ArrayLike, name: str = "samples", min_size: int = 1) -> np.ndarray:
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size < min_size:
        raise ValueError(f"{name}: expected at least {min_size} sample(s), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name}: {bad} sample(s) are NaN or infinite")
    return arr


def iqr_filter(samples: ArrayLike, k: float = 1.5) -> tuple[np.ndarray, int]:
    """Tukey's outlier rule: return (kept samples in their original order, number removed).

    Kept: q1 - k*iqr <= x <= q3 + k*iqr with q1, q3 the 25th/75th percentiles of all samples.
    """
    arr = _as_samples(samples)
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"k: expected a finite value >= 0, got {k}")
    q1, q3 = np.percentile(arr, [25.0, 75.0])
    iqr = q3 - q1
    keep = (arr >= q1 - k * iqr) & (arr <= q3 + k * iqr)
    kept = arr[keep]
    return kept, int(arr.size - kept.size)


def _log_binom_pmf_half(n: int) -> np.ndarray:
    """log P(B = i) for B ~ Binomial(n, 1/2), i = 0..n (log space so large n does not overflow)."""
    i = np.arange(n + 1, dtype=np.float64)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    return lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) - n * math.log(2.0)


def median_ci(samples: ArrayLike, confidence: float = 0.95) -> dict[str, float]:
    """Distribution-free confidence interval for the median from order statistics.

    With x(1) <= ... <= x(n) sorted and B ~ Binomial(n, 1/2) the number of samples below the true median,
    [x(j), x(n-j+1)] covers the median with probability 1 - 2*P(B <= j-1). j is the largest index whose coverage
    is still >= ``confidence``. For n too small to reach it (n < 6 at 95%), the interval is [min, max] and
    ``achieved`` reports the lower coverage honestly.

    Returns ``{"low", "high", "confidence", "achieved"}``.
    """
    arr = np.sort(_as_samples(samples))
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")
    n = arr.size
    alpha = 1.0 - confidence
    cdf = np.cumsum(np.exp(_log_binom_pmf_half(n)))  # cdf[i] = P(B <= i)
    # j (1-based) with P(B <= j-1) <= alpha/2; the tiny slack absorbs rounding in the cumulative sum.
    ok = np.nonzero(cdf[: (n + 1) // 2] <= alpha / 2.0 + 1e-12)[0]
    if ok.size == 0:
        return {"low": float(arr[0]), "high": float(arr[-1]), "confidence": confidence,
                "achieved": float(1.0 - 2.0 * 0.5**n)}
    j = int(ok[-1]) + 1  # P(B <= j-1) = cdf[j-1]
    achieved = float(1.0 - 2.0 * cdf[j - 1])
    return {"low": float(arr[j - 1]), "high": float(arr[n - j]), "confidence": confidence, "achieved": achieved}


def summarize(
    samples: ArrayLike,
    *,
    outlier_k: Optional[float] = 1.5,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The methodology's statistics for one sample set.

    Outliers are removed with :func:`iqr_filter` (``outlier_k=None`` keeps everything); every statistic except
    ``min``/``max``/``n_samples`` is then computed on the kept samples (``min``/``max`` are over all samples, so
    a reader still sees the extremes). ``std`` is the sample standard deviation (ddof=1; 0 for one sample).
    ``median_ci_low/high`` are the :func:`median_ci` bounds of the kept samples.
    """
    arr = _as_samples(samples)
    if outlier_k is None:
        kept, removed = arr, 0
    else:
        kept, removed = iqr_filter(arr, outlier_k)
    q1, q3 = np.percentile(kept, [25.0, 75.0])
    p50, p95, p99 = np.percentile(kept, [50.0, 95.0, 99.0])
    ci = median_ci(kept, confidence)
    return {
        "n_samples": int(arr.size),
        "n_kept": int(kept.size),
        "outliers_removed": removed,
        "outlier_rule": "none" if outlier_k is None else f"iqr*{outlier_k:g}",
        "median": float(np.median(kept)),
        "mean": float(np.mean(kept)),
        "std": float(np.std(kept, ddof=1)) if kept.size > 1 else 0.0,
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "min": float(np.min(arr)),
        "max": float(np.max(arr)),
        "iqr": float(q3 - q1),
        "median_ci_low": ci["low"],
        "median_ci_high": ci["high"],
        "median_ci_confidence": ci["achieved"],
    }


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney_u(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """Two-sided Mann-Whitney U test, normal approximation with tie and continuity corrections.

    ``u`` is the statistic of ``a`` (the number of pairs with a > b, ties counting 1/2); ``p_value`` is two-sided;
    ``effect`` = u / (n_a * n_b) is the probability that a random ``a`` exceeds a random ``b`` (0.5: no shift).
    Matches ``scipy.stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True)``.
    """
    x = _as_samples(a, "a")
    y = _as_samples(b, "b")
    n1, n2 = x.size, y.size
    both = np.concatenate([x, y])
    order = np.argsort(both, kind="mergesort")
    sorted_vals = both[order]
    ranks_sorted = np.empty(both.size, dtype=np.float64)
    # Average ranks over ties.
    _, starts, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    for s, c in zip(starts, counts):
        ranks_sorted[s : s + c] = s + (c + 1) / 2.0
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    r1 = float(np.sum(ranks[:n1]))
    u1 = r1 - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    mu = n1 * n2 / 2.0
    tie_term = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0.0:
        # Every value identical: no evidence of a difference.
        return {"u": u1, "z": 0.0, "p_value": 1.0, "effect": u1 / (n1 * n2)}
    sd = math.sqrt(var)
    z = (abs(u1 - mu) - 0.5) / sd
    z = max(z, 0.0)
    p = min(1.0, 2.0 * _normal_sf(z))
    signed_z = z if u1 >= mu else -z
    return {"u": u1, "z": signed_z, "p_value": p, "effect": u1 / (n1 * n2)}


def bootstrap_median_ratio(
    a: ArrayLike,
    b: ArrayLike,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """median(a) / median(b) with a percentile-bootstrap confidence interval.

    Each of ``n_boot`` rounds resamples a and b independently with replacement and takes the ratio of their
    medians; the interval is the (1-confidence)/2 and (1+confidence)/2 percentiles of those ratios. ``seed``
    makes it reproducible (a local Generator: no global random state is touched).
    """
    x = _as_samples(a, "a")
    y = _as_samples(b, "b")
    if np.median(y) == 0.0:
        raise ValueError("b: median is 0, the ratio median(a)/median(b) is undefined")
    if n_boot < 100:
        raise ValueError(f"n_boot: expected >= 100 rounds for a usable interval, got {n_boot}")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    # Resample in batches of rounds so a large sample set (e.g. 25k pooled inter-token gaps) stays within
    # ~8M indices (64 MB) at a time.
    batch = max(1, min(n_boot, 8_000_000 // max(x.size, y.size)))
    mx = np.empty(n_boot)
    my = np.empty(n_boot)
    for start in range(0, n_boot, batch):
        rounds = min(batch, n_boot - start)
        mx[start : start + rounds] = np.median(x[rng.integers(0, x.size, size=(rounds, x.size))], axis=1)
        my[start : start + rounds] = np.median(y[rng.integers(0, y.size, size=(rounds, y.size))], axis=1)
    valid = my != 0.0
    ratios = mx[valid] / my[valid]
    lo, hi = np.percentile(ratios, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)])
    return {"ratio": float(np.median(x) / np.median(y)), "low": float(lo), "high": float(hi),
            "confidence": confidence, "n_boot": int(n_boot)}


def median_agreement(a: ArrayLike, b: ArrayLike, tolerance: float = 0.05) -> dict[str, Any]:
    """Reproducibility check: do two runs of the same measurement agree within ``tolerance`` at the median?

    ``relative_difference`` = |median(a) - median(b)| / min(median(a), median(b)).
    """
    ma = float(np.median(_as_samples(a, "a")))
    mb = float(np.median(_as_samples(b, "b")))
    base = min(abs(ma), abs(mb))
    rel = abs(ma - mb) / base if base > 0 else (0.0 if ma == mb else math.inf)
    return {"median_a": ma, "median_b": mb, "relative_difference": rel, "tolerance": tolerance,
            "agree": bool(rel <= tolerance)}


def compare(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    threshold: float = 0.10,
    higher_is_better: bool = False,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Baseline check of one metric.

    ``change`` = median(current)/median(baseline) - 1 (so +0.12 means 12% larger). The verdict:

    - "regression": the change is worse than ``threshold`` in the bad direction AND the difference is
      statistically significant (Mann-Whitney p < alpha) when both sides have >= 2 samples (with a single sample
      on either side only the threshold decides, and ``p_value`` is None);
    - "improvement": the same in the good direction;
    - "no significant change": otherwise.

    The bootstrap interval of the median ratio (``ratio_low``/``ratio_high``) shows the spread.
    """
    base = _as_samples(baseline, "baseline")
    cur = _as_samples(current, "current")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold: expected a finite value >= 0, got {threshold}")
    mb, mc = float(np.median(base)), float(np.median(cur))
    if mb == 0.0:
        raise ValueError("baseline: median is 0, a relative change is undefined")
    change = mc / mb - 1.0
    p_value: Optional[float] = None
    ratio_low = ratio_high = mc / mb
    significant = True
    if base.size >= 2 and cur.size >= 2:
        p_value = mann_whitney_u(cur, base)["p_value"]
        significant = p_value < alpha
        boot = bootstrap_median_ratio(cur, base, seed=seed)
        ratio_low, ratio_high = boot["low"], boot["high"]
    worse = -change if higher_is_better else change
    if significant and worse > threshold:
        verdict = "regression"
    elif significant and -worse > threshold:
        verdict = "improvement"
    else:
        verdict = "no significant change"
    return {
        "baseline_median": mb,
        "current_median": mc,
        "change": change,
        "ratio_low": float(ratio_low),
        "ratio_high": float(ratio_high),
        "p_value": p_value,
        "threshold": threshold,
        "higher_is_better": higher_is_better,
        "verdict": verdict,
    }
