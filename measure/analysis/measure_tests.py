"""Paired stage tests on the continuous homogeneity measures (measure.scoring.homogeneity; higher = more
homogeneous): pure functions on loaded runs, no I/O.

Per transition (earlier run a -> later run b) and per measure key present in both runs, on the questions where
both values exist: d = value(b) - value(a);
- Wilcoxon signed-rank on d, the same zero-aware implementation as the cluster counts
  (measure.analysis.paired_stats.wilcoxon_nonzero: zeros dropped, exact / permutation / normal by the number of
  non-zero differences, named in the row) with the matched-pairs rank-biserial effect size;
- a paired bootstrap interval of the mean difference: percentile bootstrap resampling QUESTIONS (so each
  question's pair stays together), measure.scoring.metrics.bootstrap_ci, seeded.
The p-values join the comparison's one Holm family with every McNemar and cluster-count Wilcoxon test
(measure.analysis.paired_stats.apply_holm). MEASURE_RULE turns the rows into the verdict's second line.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from measure.analysis.paired_stats import rank_biserial, wilcoxon_nonzero
from measure.scoring.homogeneity import CONVENTION
from measure.scoring.intervals import bootstrap_method
from measure.scoring.metrics import bootstrap_ci

MEASURE_RULE = (
    "Continuous-measure rule: a homogeneity measure (" + CONVENTION + ") rose (fell) at a transition when its "
    "Wilcoxon signed-rank test on the per-question differences has a Holm-adjusted p < alpha (the same Holm "
    "family as the SCR tests) and the mean difference (later - earlier) is > 0 (< 0). This line reports; it "
    "does not change the SCR verdict above.")


def common_measures(per_run: Sequence[Sequence[dict]]) -> list[str]:
    """Measure keys with a value for some question in every run (first run's order)."""
    present = [list(dict.fromkeys(k for q in run for k, v in q.items() if v is not None)) for run in per_run]
    return [k for k in present[0] if all(k in p for p in present[1:])] if present else []


def paired_measure_test(a: Sequence[float | None], b: Sequence[float | None], *, n_boot: int, seed: int) -> dict:
    """Earlier values a vs later values b of one measure, question by question (None = missing)."""
    pairs = np.array([(x, y) for x, y in zip(a, b) if x is not None and y is not None], dtype=float).reshape(-1, 2)
    d = pairs[:, 1] - pairs[:, 0]
    stat, p, method = wilcoxon_nonzero(d)
    ci = list(bootstrap_ci(d, np.mean, n_boot=n_boot, seed=seed)) if n_boot >= 1 and d.size else None
    return {"n": int(d.size), "mean_from": float(pairs[:, 0].mean()), "mean_to": float(pairs[:, 1].mean()),
            "mean_diff": float(d.mean()), "mean_diff_ci": ci,
            "mean_diff_ci_method": ("paired " + bootstrap_method(n_boot, seed)) if ci else None,
            "wilcoxon_stat": stat, "wilcoxon_p": p, "wilcoxon_method": method,
            "wilcoxon_n_nonzero": int((d != 0).sum()), "rank_biserial": rank_biserial(d)}


def measure_line(rows: Sequence, alpha: float) -> str:
    """The verdict's continuous-measure line from MeasureTransition rows (MEASURE_RULE)."""
    if not rows:
        return "Continuous measures: none recorded in every run (measured before they existed, or turned off)."
    parts = []
    for f, t in dict.fromkeys((r.from_, r.to) for r in rows):
        sig = [r for r in rows if (r.from_, r.to) == (f, t) and r.wilcoxon_p_holm < alpha and r.mean_diff != 0]
        if sig:
            parts.append(f"{f} -> {t}: " + "; ".join(
                f"{r.measure} {'rose' if r.mean_diff > 0 else 'fell'} from {r.mean_from:.3f} to {r.mean_to:.3f} "
                f"(Holm p = {r.wilcoxon_p_holm:.2g})" for r in sig))
    if not parts:
        return (f"Continuous measures: no homogeneity measure changed significantly at any transition "
                f"({len(rows)} tests, Holm-adjusted alpha {alpha}).")
    return "Continuous measures (" + CONVENTION + "): " + " | ".join(parts) + "."
