"""Permutation p and minimum detectable effect against scipy and a simulation."""

import numpy as np
import pytest
from scipy import stats

from actionmoe.evaluation.stats import compare_arms, detectable_difference, permutation_p, pooled_std


def test_three_seeds_a_side_can_never_reach_p_below_0_10():
    assert permutation_p([0.1, 0.2, 0.3], [0.7, 0.8, 0.9]) == pytest.approx(0.10)
    assert permutation_p([0.7, 0.8, 0.9], [0.1, 0.2, 0.3]) == pytest.approx(0.10)
    assert permutation_p([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) == 1.0


@pytest.mark.parametrize("sizes", [(3, 3), (4, 6), (5, 5)])
def test_the_exact_permutation_p_is_scipy_s(sizes):
    rng = np.random.default_rng(sum(sizes))
    first, second = rng.normal(0.5, 0.05, sizes[0]), rng.normal(0.55, 0.05, sizes[1])
    reference = stats.permutation_test(
        (first, second),
        lambda a, b: abs(np.mean(a) - np.mean(b)),  # two-sided as the size of the difference
        permutation_type="independent",
        alternative="greater",
        n_resamples=np.inf,
    ).pvalue
    assert permutation_p(first, second) == pytest.approx(reference)


def test_the_detectable_difference_matches_the_reference_anchors_and_a_simulation():
    assert detectable_difference(0.061, 3) == pytest.approx(0.19, abs=0.005)
    assert detectable_difference(0.061, 10) == pytest.approx(0.08, abs=0.005)
    effect = detectable_difference(1.0, 5)
    rng = np.random.default_rng(0)
    first = rng.normal(0.0, 1.0, (20000, 5))
    second = rng.normal(effect, 1.0, (20000, 5))
    power = (stats.ttest_ind(first, second, axis=1).pvalue < 0.05).mean()
    assert power == pytest.approx(0.80, abs=0.02)  # the t approximation of the power is close at 5 seeds


def test_compare_arms_reports_the_pooled_std():
    first, second = [0.50, 0.52, 0.54], [0.60, 0.63, 0.66]
    result = compare_arms(first, second)
    assert result["pooled_std"] == pytest.approx(pooled_std(first, second))
    assert result["pooled_std"] == pytest.approx(np.sqrt((np.var(first, ddof=1) + np.var(second, ddof=1)) / 2))
    assert result["difference"] == pytest.approx(0.11) and result["smallest_possible_p"] == pytest.approx(0.10)
