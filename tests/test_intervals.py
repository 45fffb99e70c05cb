"""measure/scoring/intervals.py: Clopper-Pearson at the boundaries and Newcombe's paired interval on published values."""
from __future__ import annotations

import pytest
from scipy.stats import beta

from measure.scoring.intervals import paired_difference_ci, proportion_ci


@pytest.mark.parametrize("count, n, expected", [
    (0, 200, [0.0, 0.0183]), (0, 790, [0.0, 0.0047]), (1, 200, [0.0001, 0.0275]),   # the values
    (200, 200, [0.9817, 1.0]), (199, 200, [0.9725, 0.9999])])                       # the mirror image at 100%
def test_clopper_pearson_is_not_degenerate_at_the_boundary(count, n, expected):
    lo, hi = proportion_ci(count, n)
    assert [round(lo, 4), round(hi, 4)] == expected
    assert hi > lo


def test_clopper_pearson_equals_beta_quantiles():
    lo, hi = proportion_ci(7, 40)
    assert lo == pytest.approx(beta.ppf(0.025, 7, 34)) and hi == pytest.approx(beta.ppf(0.975, 8, 33))
    with pytest.raises(ValueError):
        proportion_ci(3, 2)


@pytest.mark.parametrize("table, expected", [
    ((36, 12, 2, 0), [0.0569, 0.3404]),       # Newcombe (1998), Table II, example (a): theta = 0.2
    ((59, 6, 16, 80), [-0.1186, -0.0046]),    # Fagerland, Lydersen & Laake (2017) ch. 8, Cavo et al. 2012
])
def test_newcombe_paired_interval_published_values(table, expected):
    lo, hi = paired_difference_ci(*table)
    assert [round(lo, 4), round(hi, 4)] == expected


def test_newcombe_has_width_when_nothing_changes_and_is_symmetric():
    for table in [(10, 0, 0, 134), (0, 0, 0, 144), (144, 0, 0, 0)]:
        lo, hi = paired_difference_ci(*table)
        assert lo < 0.0 < hi and lo == pytest.approx(-hi)
    # swapping the two classifications negates the interval
    lo, hi = paired_difference_ci(20, 3, 9, 40)
    assert paired_difference_ci(20, 9, 3, 40) == pytest.approx([-hi, -lo])
    with pytest.raises(ValueError):
        paired_difference_ci(0, 0, 0, 0)
