"""What a paired SCR comparison could have detected: the exact McNemar test's power, by enumeration.

Model. n questions measured at two stages; each question moves single -> multi with probability `down`
(McNemar's b cell) and multi -> single with probability `up` (its c cell), independently. The SCR rise is
`up - down`. The toolkit's test is statsmodels' exact McNemar test (a two-sided binomial test of
c against Bin(b + c, 1/2): p = min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))), and the verdict counts a
transition only when it is significant AND SCR rose (c > b). So

    power = sum_d P(D = d) * P(C >= c*(d) | D = d),   D ~ Bin(n, up + down),  C | D ~ Bin(D, up / (up + down)),

where c*(d) is the smallest c > d/2 whose p-value is below alpha: an exact sum over every discordant count,
no simulation and no normal approximation (tests/test_power.py checks it against a seeded simulation).

Assumption on the discordant pairs: `down` (single -> multi) is a nuisance the rise does not determine. The
planner takes it as given (default 0: no question leaves the single-cluster set, the most favourable case,
so its n is a lower bound); `measure compare` uses each transition's observed b / n. Holm: the comparison
tests a family of m hypotheses, so the power line uses alpha / m (the strictest Holm step): the rise it
names is what the design detects with 80% power even when that test has to beat the first Holm threshold.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.stats import binom

POWER = 0.8


@lru_cache(maxsize=64)
def rejection_thresholds(n: int, alpha: float) -> np.ndarray:
    """c*(d) for d = 0..n: the smallest c > d/2 with 2 * BinomCDF(d - c; d, 1/2) < alpha (n + 1 where none)."""
    out = np.full(n + 1, n + 1, dtype=int)
    for d in range(1, n + 1):
        c = np.arange(d // 2 + 1, d + 1)
        p = np.minimum(1.0, 2 * binom.cdf(d - c, d, 0.5))     # min(b, c) = d - c for c > d/2
        hits = c[p < alpha]
        if hits.size:
            out[d] = hits[0]
    return out


def mcnemar_power(n: int, up: float, down: float, alpha: float) -> float:
    """P(the exact McNemar test rejects at alpha AND c > b) for n questions (module docstring)."""
    if not (0 <= up and 0 <= down and up + down <= 1):
        raise ValueError(f"need up, down >= 0 and up + down <= 1, got up={up}, down={down}")
    moving = up + down
    if n < 1 or moving == 0:
        return 0.0
    d = np.arange(n + 1)
    cstar = rejection_thresholds(n, alpha)
    p_up = up / moving
    tail = binom.sf(cstar - 1, d, p_up)            # P(C >= c*(d) | D = d); 0 where c*(d) > d
    return float(np.sum(binom.pmf(d, n, moving) * tail))


def min_detectable_rise(n: int, down: float, alpha: float, power: float = POWER, tol: float = 1e-4) -> float | None:
    """The smallest rise up - down detected with `power` by n questions, given `down` (None: not even a rise
    of 1 - 2 * down, every remaining question moving up). Power grows with up for a fixed down; bisection."""
    hi = 1.0 - down
    if mcnemar_power(n, hi, down, alpha) < power:
        return None
    lo = 0.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mcnemar_power(n, mid, down, alpha) < power else (lo, mid)
    return round(hi - down, 4)


def questions_needed(scr_from: float, scr_to: float, down: float = 0.0, alpha: float = 0.05,
                     power: float = POWER, limit: int = 200_000) -> int | None:
    """The fewest questions whose exact McNemar test detects SCR scr_from -> scr_to with `power`, when a
    share `down` of questions goes single -> multi (so up = scr_to - scr_from + down). Power is not monotone
    in n for an exact test (its size jumps with the discreteness): doubling then bisection find the first n
    with the power, then it moves up until the next max(8, 5% of n) sizes all have it too."""
    up = scr_to - scr_from + down
    if not 0 <= scr_from <= 1 or not 0 <= scr_to <= 1 or scr_to <= scr_from:
        raise ValueError(f"need 0 <= scr_from < scr_to <= 1, got {scr_from} -> {scr_to}")
    if down < 0 or down > scr_from or up > 1 - scr_from + down:
        raise ValueError(f"discordant_down={down}: a share of questions that were single-cluster, at most scr_from")
    ok = lambda n: mcnemar_power(n, up, down, alpha) >= power   # noqa: E731
    hi = 8
    while not ok(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    # exact tests saw-tooth: step up past any n just above hi whose power dips below the target
    n = hi
    while not all(ok(m) for m in range(n, n + max(8, math.ceil(n * 0.05)))):
        n += 1
    return n
