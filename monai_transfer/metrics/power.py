"""Power of the paired t-test: how small a difference a number of seeds can detect, and how many seeds a difference
needs.

A study compares two starting points seed by seed (one seed = one label subset, split and initialisation), so the test
is the paired t-test on the ``n`` differences ``d_i = start_i - reference_i``, whose spread is the SD ``s`` of those
differences. Under a true mean difference ``delta`` the statistic ``t = mean(d) / (s / sqrt(n))`` follows the
noncentral t distribution with ``n - 1`` degrees of freedom and noncentrality ``delta / s * sqrt(n)`` (Cohen 1988,
"Statistical Power Analysis for the Behavioral Sciences", ch. 2), so the two-sided power at level ``alpha`` is

    power = P(T > t_{1 - alpha/2, n-1}) + P(T < -t_{1 - alpha/2, n-1}),   T ~ nct(n - 1, delta / s * sqrt(n)),

the same figure as :class:`statsmodels.stats.power.TTestPower` with ``alternative="two-sided"`` (the tests compare
them on a grid).

* :func:`paired_t_power` — the power for ``n`` seeds, a true difference and the SD of the paired differences.
* :func:`min_detectable_difference` — the smallest ``|difference|`` that ``n`` seeds detect with the given power.
* :func:`seeds_needed` — the fewest seeds that detect a difference with the given power.

Edge cases return None (never NaN or an infinity, so the figures stay valid JSON), each documented: fewer than two
seeds (no test, nothing is detectable), an SD of zero (every nonzero difference is certain to be detected, but zero
differences make the statistic undefined), a difference of zero (no number of seeds detects it). The SD is usually
estimated from the same or a pilot study's runs, so every figure here is an estimate too: with 3 to 5 seeds the SD
itself is uncertain by a factor of about two.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as sps

__all__ = ["paired_t_power", "min_detectable_difference", "seeds_needed", "DEFAULT_MAX_SEEDS"]

#: The most seeds :func:`seeds_needed` searches: past it, the answer is None ("more than this").
DEFAULT_MAX_SEEDS = 1000


def _check(alpha: float, sd: float, power: float | None = None) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not sd >= 0 or math.isinf(sd):  # also catches NaN
        raise ValueError(f"the SD of the paired differences must be a finite number >= 0, got {sd}")
    if power is not None and not alpha < power < 1:
        raise ValueError(f"power must lie in (alpha, 1) = ({alpha}, 1), got {power}")


def _power(n: np.ndarray | int, effect: float, alpha: float) -> np.ndarray:
    """Two-sided power of the one-sample t-test for ``n`` (>= 2) observations and a standardized ``effect`` >= 0."""
    n = np.asarray(n, dtype=np.float64)
    df = n - 1
    crit = sps.t.ppf(1 - alpha / 2, df)
    nc = effect * np.sqrt(n)
    # the lower tail P(T < -crit) written as P(T' > crit) with T' ~ nct(df, -nc): the same number, but scipy's
    # nct.cdf returns NaN there for one degree of freedom and a large noncentrality; it is negligible when it fails
    lower = np.nan_to_num(sps.nct.sf(crit, df, -nc), nan=0.0)
    return sps.nct.sf(crit, df, nc) + lower


def paired_t_power(n: int, difference: float, sd: float, alpha: float = 0.05) -> float | None:
    """Power of the two-sided paired t-test over ``n`` pairs to detect a true mean difference ``difference``.

    Args:
        n: number of pairs (seeds).
        difference: the true mean paired difference (its sign does not matter: the test is two-sided).
        sd: the SD of the paired differences (>= 0).
        alpha: the level of the test.

    Returns:
        The probability of p < ``alpha``, in [``alpha``, 1]; ``alpha`` itself for a zero difference. None when no
        test is defined: ``n < 2``, or ``sd == 0`` with ``difference == 0``. With ``sd == 0`` and a nonzero
        difference: 1.0 (every pair shows the same nonzero difference).

    Raises:
        ValueError: ``alpha`` outside (0, 1) or a negative, NaN or infinite ``sd``.
    """
    _check(alpha, sd)
    if n < 2:
        return None
    if sd == 0:
        return None if difference == 0 else 1.0
    return float(min(_power(n, abs(float(difference)) / sd, alpha), 1.0))


def min_detectable_difference(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest ``|difference|`` that the two-sided paired t-test over ``n`` pairs detects with ``power``.

    Solves :func:`paired_t_power` ``(n, delta, sd, alpha) = power`` for ``delta`` with the noncentral t distribution
    (Brent's method on the standardized effect). With many seeds it approaches the normal approximation
    ``(z_{1-alpha/2} + z_{power}) * sd / sqrt(n)``; with few it is much larger (n = 3, sd = 0.02: 0.065; n = 10: 0.020).

    Args:
        n: number of pairs (seeds).
        sd: the SD of the paired differences (>= 0).
        alpha: the level of the test.
        power: the wanted power, in (``alpha``, 1).

    Returns:
        The difference, in the units of the metric; 0.0 when ``sd == 0`` (any nonzero difference is detected);
        None when ``n < 2`` (no test: no difference is detectable).

    Raises:
        ValueError: ``alpha`` outside (0, 1), ``power`` outside (``alpha``, 1), or a negative, NaN or infinite ``sd``.
    """
    _check(alpha, sd, power)
    if n < 2:
        return None
    if sd == 0:
        return 0.0
    hi = 1.0
    while _power(n, hi, alpha) < power:  # power rises with the effect; n = 2 needs an effect of about 9
        hi *= 2
    effect = optimize.brentq(lambda e: float(_power(n, e, alpha)) - power, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return float(effect * sd)


def seeds_needed(
    difference: float,
    sd: float,
    alpha: float = 0.05,
    power: float = 0.8,
    max_n: int = DEFAULT_MAX_SEEDS,
    min_n: int = 2,
) -> int | None:
    """The fewest pairs (seeds) with which the two-sided paired t-test detects ``difference`` with ``power``.

    Args:
        difference: the true mean paired difference to detect (sign ignored).
        sd: the SD of the paired differences (>= 0).
        alpha: the level of the test.
        power: the wanted power, in (``alpha``, 1).
        max_n: search no further than this many seeds.
        min_n: the fewest seeds to answer (2, the fewest a t-test takes; a study tests from 3).

    Returns:
        The number of seeds, at least ``min_n``; ``min_n`` when ``sd == 0`` and the difference is nonzero. None when
        no number of seeds up to ``max_n`` reaches the power, which is always the case for ``difference == 0`` (a
        zero difference is never detected beyond the rate ``alpha``): read None as "more than ``max_n``", or "never"
        for a zero difference.

    Raises:
        ValueError: ``alpha`` outside (0, 1), ``power`` outside (``alpha``, 1), a negative, NaN or infinite ``sd``, or
            ``min_n < 2``.
    """
    _check(alpha, sd, power)
    if min_n < 2:
        raise ValueError(f"min_n must be at least 2 (a t-test needs two pairs), got {min_n}")
    if difference == 0 or math.isnan(float(difference)) or max_n < min_n:
        return None
    if sd == 0:
        return int(min_n)
    effect = abs(float(difference)) / sd
    # power rises with n: bisect for the first n that reaches it
    lo, hi = int(min_n), int(max_n)
    if _power(hi, effect, alpha) < power:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if _power(mid, effect, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo
