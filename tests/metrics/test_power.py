"""The paired t-test's power, smallest detectable difference and seeds needed, against statsmodels' TTestPower."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monai_transfer.metrics.power import min_detectable_difference, paired_t_power, seeds_needed

NS = [2, 3, 4, 5, 8, 10, 20, 50]
SDS = [0.005, 0.02, 0.1]
EFFECTS = [0.1, 0.5, 1.0, 2.0, 4.0]  # standardized: difference / sd
ALPHAS = [0.05, 0.01]


@pytest.fixture(scope="module")
def ttest_power():
    power = pytest.importorskip("statsmodels.stats.power")
    return power.TTestPower()


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("n", NS)
def test_power_matches_statsmodels(ttest_power, n, alpha):
    for sd in SDS:
        for e in EFFECTS:
            ours = paired_t_power(n, e * sd, sd, alpha)
            ref = ttest_power.power(effect_size=e, nobs=n, alpha=alpha, alternative="two-sided")
            if np.isfinite(ref):  # statsmodels (scipy's nct.cdf) gives NaN for n = 2 and a large effect
                assert ours == pytest.approx(float(ref), abs=1e-9)
            # the sign of the difference does not matter (two-sided)
            assert paired_t_power(n, -e * sd, sd, alpha) == pytest.approx(ours, abs=1e-12)


def test_power_at_zero_difference_is_alpha():
    for n in NS:
        assert paired_t_power(n, 0.0, 0.02, 0.05) == pytest.approx(0.05, abs=1e-9)


@pytest.mark.parametrize("power", [0.8, 0.9])
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.filterwarnings("ignore")
def test_min_detectable_difference_matches_statsmodels(ttest_power, alpha, power):
    for n in NS:
        for sd in SDS:
            mde = min_detectable_difference(n, sd, alpha=alpha, power=power)
            ref = ttest_power.solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
            # statsmodels' root finder does not converge for 2 to 4 seeds at a small alpha (its own power at its
            # answer is not the power asked for): compare where it does
            if abs(ttest_power.power(effect_size=ref, nobs=n, alpha=alpha) - power) < 1e-5:
                assert mde == pytest.approx(float(ref) * sd, rel=1e-5)
            else:
                assert n <= 4
            # and it is what it says: that difference is detected with exactly that power
            assert paired_t_power(n, mde, sd, alpha) == pytest.approx(power, abs=1e-9)


def test_min_detectable_difference_shrinks_with_seeds():
    mdes = [min_detectable_difference(n, 0.02) for n in range(2, 40)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    # towards the normal approximation (z_0.975 + z_0.8) * sd / sqrt(n) from above
    assert min_detectable_difference(400, 0.02) == pytest.approx((1.959964 + 0.841621) * 0.02 / 20, rel=0.01)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_seeds_needed_matches_statsmodels(ttest_power, alpha):
    for e in [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0]:
        for sd in SDS:
            ours = seeds_needed(e * sd, sd, alpha=alpha)
            ref = ttest_power.solve_power(effect_size=e, nobs=None, alpha=alpha, power=0.8, alternative="two-sided")
            assert ours == max(2, math.ceil(float(ref) - 1e-9))
            # the smallest such n: one seed fewer falls short of 80 %
            assert paired_t_power(ours, e * sd, sd, alpha) >= 0.8
            if ours > 2:
                assert paired_t_power(ours - 1, e * sd, sd, alpha) < 0.8


def test_seeds_needed_min_and_max():
    assert seeds_needed(0.2, 0.01) == 2  # a huge effect (20 SDs): the fewest a t-test takes
    assert seeds_needed(0.2, 0.01, min_n=3) == 3 and seeds_needed(0.1, 0.01) == 3
    assert seeds_needed(0.001, 0.02, max_n=100) is None  # would need about 3,100
    assert seeds_needed(0.001, 0.02, max_n=5000) == seeds_needed(-0.001, 0.02, max_n=5000) > 3000


def test_edge_cases():
    # fewer than 2 seeds: no test, nothing detectable
    assert paired_t_power(1, 0.1, 0.02) is None and paired_t_power(0, 0.1, 0.02) is None
    assert min_detectable_difference(1, 0.02) is None
    # SD zero: any nonzero difference is certain, zero is undefined
    assert paired_t_power(5, 0.01, 0.0) == 1.0 and paired_t_power(5, 0.0, 0.0) is None
    assert min_detectable_difference(5, 0.0) == 0.0
    assert seeds_needed(0.01, 0.0) == 2 and seeds_needed(0.01, 0.0, min_n=3) == 3
    # a zero difference is never detected
    assert seeds_needed(0.0, 0.02) is None and seeds_needed(0.0, 0.0) is None
    for bad in (dict(alpha=0.0), dict(alpha=1.0), dict(power=0.04), dict(power=1.0)):
        with pytest.raises(ValueError):
            min_detectable_difference(5, 0.02, **bad)
    for sd in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="SD"):
            paired_t_power(5, 0.1, sd)
    with pytest.raises(ValueError, match="min_n"):
        seeds_needed(0.1, 0.02, min_n=1)
