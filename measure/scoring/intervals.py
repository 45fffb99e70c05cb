"""Confidence intervals for proportions (SCR, accuracy) and for the paired difference of two proportions.

Why not the bootstrap here: a percentile bootstrap of a share collapses at the boundary (0 of 200
single-cluster questions resamples to 0 every time and gives [0, 0]; no question changing between two
stages gives a zero-width difference), exactly where base models (SCR near 0) and instruct models (near 1)
sit. The bootstrap stays for statistics without such an interval (AUROC: measure.scoring.metrics).

- proportion_ci: Clopper-Pearson exact interval (statsmodels proportion_confint, method="beta"): coverage
  is at least nominal for every true proportion, and it is non-degenerate at 0 and 1 (0/200 -> [0, 0.0183],
  1/200 -> [0.0001, 0.0275]).
- paired_difference_ci: Newcombe's hybrid score interval for the difference of two paired proportions,
  "method 10" of R. G. Newcombe (1998), Improved confidence intervals for the difference between binomial
  proportions based on paired data, Statistics in Medicine 17, 2635-2650. It combines the Wilson score
  intervals (statsmodels, method="wilson") of the two marginal proportions with an estimate of their
  correlation; only that combination is written here. With the 2x2 table [[n11, n12], [n21, n22]],
  n = sum, p1 = (n11 + n12)/n, p2 = (n11 + n21)/n, theta = p1 - p2, Wilson limits (l1, u1), (l2, u2):
      L = theta - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
      U = theta + sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)
  where phi is the phi coefficient with Newcombe's correction of its numerator A = n11 n22 - n12 n21:
  A - n/2 when A > n/2, 0 when 0 <= A <= n/2, A when A < 0, over sqrt of the product of the four
  marginal totals; phi = 0 when a marginal total is 0. Checked against the published worked example of
  Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables, ch. 8 (Cavo et al. 2012:
  [[59, 6], [16, 80]] -> -0.0621, 95% CI -0.1186 to -0.0046) in tests/test_intervals.py. It has width
  > 0 even when no pair is discordant.
"""
from __future__ import annotations

import math

PROPORTION_CI_METHOD = "Clopper-Pearson exact"
PAIRED_DIFF_CI_METHOD = "Newcombe hybrid score (paired, method 10)"


def bootstrap_method(n_boot: int, seed: int) -> str:
    """The label of measure.scoring.metrics' percentile bootstrap CIs."""
    return f"percentile bootstrap ({n_boot} resamples of the questions, seed {seed})"


NO_INTERVAL = "none (bootstrap=0)"   # the method of intervals not computed: bootstrap=0 asks for none


def ci_label(methods) -> str:
    """'95% CI, <method>' for a table header; a report written before methods were recorded (None) used
    the percentile bootstrap for every interval; intervals not computed (NO_INTERVAL) claim no CI."""
    names = list(dict.fromkeys(m or "percentile bootstrap" for m in methods))
    if names and all(n == NO_INTERVAL for n in names):
        return "no interval: bootstrap=0"
    return "95% CI, " + " / ".join(names) if names else "95% CI"


def _check(count: int, n: int) -> None:
    if n < 1 or not 0 <= count <= n:
        raise ValueError(f"a proportion needs 0 <= count <= n and n >= 1, got {count}/{n}")


def proportion_ci(count: int, n: int, alpha: float = 0.05) -> list[float]:
    """Clopper-Pearson [lo, hi] of count/n (statsmodels method="beta"; lo = 0 at count 0, hi = 1 at n)."""
    from statsmodels.stats.proportion import proportion_confint
    _check(count, n)
    lo, hi = proportion_confint(count, n, alpha=alpha, method="beta")
    return [float(lo), float(hi)]


def _wilson(count: int, n: int, alpha: float) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint
    lo, hi = proportion_confint(count, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def paired_difference_ci(n11: int, n12: int, n21: int, n22: int, alpha: float = 0.05) -> list[float]:
    """Newcombe's hybrid score [lo, hi] of p1 - p2 with p1 = (n11 + n12)/n, p2 = (n11 + n21)/n (module docstring)."""
    cells = (n11, n12, n21, n22)
    if any(isinstance(c, bool) or int(c) != c or c < 0 for c in cells) or sum(cells) == 0:
        raise ValueError(f"a paired 2x2 table needs non-negative integer counts, not all 0; got {cells}")
    n = sum(cells)
    p1, p2 = (n11 + n12) / n, (n11 + n21) / n
    l1, u1 = _wilson(n11 + n12, n, alpha)
    l2, u2 = _wilson(n11 + n21, n, alpha)
    margins = (n11 + n12, n21 + n22, n11 + n21, n12 + n22)
    phi = 0.0
    if all(margins):
        a = n11 * n22 - n12 * n21
        corrected = a - n / 2 if a > n / 2 else (0.0 if a >= 0 else a)
        phi = corrected / math.sqrt(math.prod(margins))
    theta = p1 - p2
    lo = theta - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    hi = theta + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return [max(-1.0, lo), min(1.0, hi)]
