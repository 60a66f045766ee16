"""How much a handful of seeds can show: exact permutation tests and the minimum detectable effect.

Pure functions of per-seed scores, for comparisons of variants (``actionmoe ablate``) where each
arm has a few seeds. The permutation p is exact (every way of splitting the pooled scores into
two arms of the same sizes); the minimum detectable effect is the two-sample t-test's, at a
two-sided alpha of 0.05 and 80% power, from the pooled seed standard deviation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

MAX_EXACT_ARRANGEMENTS = 200_000  # beyond this, a seeded Monte Carlo sample of arrangements
MONTE_CARLO_ARRANGEMENTS = 100_000


def permutation_p(first: Sequence[float], second: Sequence[float], seed: int = 0) -> float:
    """Two-sided p of the difference in means: the share of arm splits at least as extreme as the observed one.

    With 3 seeds an arm there are 20 splits, so the smallest p is 2/20 = 0.10: no 3-vs-3 comparison
    can reach 0.05.
    """
    pooled = np.asarray([*first, *second], dtype=float)
    n, total = len(first), len(pooled)
    if n == 0 or n == total:
        raise ValueError("each arm needs at least one value")
    observed = abs(np.mean(first) - np.mean(second))
    if math.comb(total, n) <= MAX_EXACT_ARRANGEMENTS:
        splits = np.array([list(chosen) for chosen in itertools.combinations(range(total), n)])  # [S, n]
    else:
        rng = np.random.default_rng(seed)
        splits = np.array([rng.permutation(total)[:n] for _ in range(MONTE_CARLO_ARRANGEMENTS)])
    mask = np.zeros((len(splits), total), dtype=bool)
    np.put_along_axis(mask, splits, True, axis=1)
    means_first = (mask * pooled).sum(1) / n
    means_second = (~mask * pooled).sum(1) / (total - n)
    extreme = np.abs(means_first - means_second) >= observed - 1e-12
    return float(extreme.mean())


def pooled_std(first: Sequence[float], second: Sequence[float]) -> float:
    """The pooled sample standard deviation of two arms (ddof 1 within each)."""
    n1, n2 = len(first), len(second)
    if n1 + n2 <= 2:
        return float("nan")
    ss = (n1 - 1) * np.var(first, ddof=1) if n1 > 1 else 0.0
    ss += (n2 - 1) * np.var(second, ddof=1) if n2 > 1 else 0.0
    return float(math.sqrt(ss / (n1 + n2 - 2)))


def detectable_difference(std: float, seeds: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sample t-test of ``seeds`` a side finds with ``power``.

    (t_{1 - alpha/2} + t_{power}) * std * sqrt(2 / seeds), t with 2 * seeds - 2 degrees of freedom:
    about 3.7 * std * 0.82 = 3.0 std at 3 seeds, 1.3 std at 10.
    """
    from scipy.stats import t

    if seeds < 2:
        return float("inf")
    df = 2 * seeds - 2
    return float((t.ppf(1 - alpha / 2, df) + t.ppf(power, df)) * std * math.sqrt(2 / seeds))


def difference_interval(
    baseline: Sequence[float], variant: Sequence[float], level: float = 0.95
) -> tuple[float, float]:
    """The two-sample t confidence interval of mean(variant) - mean(baseline), from the pooled std."""
    from scipy.stats import t

    n1, n2 = len(baseline), len(variant)
    difference = float(np.mean(variant) - np.mean(baseline))
    if n1 + n2 <= 2:
        return (float("-inf"), float("inf"))
    half = t.ppf(0.5 + level / 2, n1 + n2 - 2) * pooled_std(baseline, variant) * math.sqrt(1 / n1 + 1 / n2)
    return (difference - float(half), difference + float(half))


def compare_arms(baseline: Sequence[float], variant: Sequence[float]) -> dict:
    """The variant against the baseline: difference of means with its 95% interval, exact permutation p,
    pooled std and the detectable effect."""
    std = pooled_std(baseline, variant)
    seeds = min(len(baseline), len(variant))
    low, high = difference_interval(baseline, variant)
    return {
        "difference": float(np.mean(variant) - np.mean(baseline)),
        "ci95": [low, high],
        "permutation_p": permutation_p(baseline, variant),
        "smallest_possible_p": 2 / math.comb(len(baseline) + len(variant), len(baseline))
        if len(baseline) == len(variant)
        else 1 / math.comb(len(baseline) + len(variant), len(baseline)),
        "pooled_std": std,
        "detectable_difference": detectable_difference(std, seeds),
    }
