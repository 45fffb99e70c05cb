"""Paired statistics of a stage comparison: pure functions on per-question arrays and result rows (no I/O).

Between an earlier stage a and a later stage b, per clusterer, on the same questions (paired_tests):
- exact McNemar test (statsmodels, exact=True) on the single-cluster indicator; b = single -> multi,
  c = multi -> single discordant pairs; b = c = 0 gives p = 1.0;
- Wilcoxon signed-rank (scipy) on the cluster counts (later - earlier) with zero_method="wilcox": zero
  differences carry no direction and are dropped (the classic test), and the null distribution is chosen
  from the n NON-zero differences (scipy would choose it from the length with zeros, so 8 non-zero among
  144 got the normal approximation: 7 up and 1 down gave p = 0.034 instead of the exact 0.070):
  no tied |differences| and n <= 50 -> "exact" (the exact signed-rank distribution); ties and n <= 13 ->
  "exact permutation" (scipy PermutationMethod: all 2^n sign flips of the midranks, <= 8192 < 9999
  resamples, so enumerated); otherwise the normal approximation with scipy's tie correction. The row
  records which (wilcoxon_method). All differences zero -> p = 1.0. Effect size: matched-pairs
  rank-biserial r = (R+ - R-)/(R+ + R-) over the non-zero differences (positive = more clusters at the
  later stage, i.e. LESS homogeneous);
- CI of the SCR difference: Newcombe's hybrid score interval for paired proportions (measure.scoring.intervals;
  width > 0 even when no question changes).
apply_holm: Holm correction (statsmodels multipletests) over ALL tests of the comparison: every McNemar
and every Wilcoxon p-value, every transition and clusterer, and the continuous measures' Wilcoxon tests
(measure.analysis.measure_tests), one family.
verdict: applies VERDICT_RULE (also written into compare.md/html) to the Holm-adjusted rows; for a comparison of
pairs of runs (each run against the run it is paired with, not a sequence), PAIRS_VERDICT_RULE: every pair
is judged on its own, on the same test and majority, and the verdict names each.
pair_agreement: how two clusterers agree on one stage (Cohen's kappa of the single-cluster indicator,
mean per-question adjusted Rand index).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from measure.records.comparison import Verdict, VerdictRow
from measure.scoring.intervals import PAIRED_DIFF_CI_METHOD, paired_difference_ci

ALPHA = 0.05
VERDICT_RULE = (
    "Verdict rule: a stage transition shows homogenization under a clusterer when the exact McNemar test on "
    "the single-cluster indicator has a Holm-adjusted p < alpha (Holm over every McNemar and Wilcoxon test "
    "of this comparison) AND the SCR difference (later - earlier) is > 0. The verdict is the FIRST "
    "transition in chain order where this holds for a strict majority (more than half) of the clusterers; "
    "if no transition has such a majority the verdict is 'no significant homogenization'.")
PAIRS_VERDICT_RULE = (
    "Verdict rule (pairs of runs): each listed pair (earlier run -> later run, tested paired on the same "
    "questions) shows homogenization under a clusterer when the exact McNemar test on the single-cluster "
    "indicator has a Holm-adjusted p < alpha (Holm over every McNemar and Wilcoxon test of every pair of this "
    "comparison) AND the SCR difference (later - earlier) is > 0. Every pair gets its own verdict: "
    "homogenization when this holds for a strict majority (more than half) of the clusterers, else none.")


# ---------------------------------------------------------------- paired tests, Holm, verdict

def rank_biserial(diffs: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation over non-zero differences (0.0 when all are zero)."""
    from scipy.stats import rankdata
    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    r = rankdata(np.abs(d))
    return float((r[d > 0].sum() - r[d < 0].sum()) / r.sum())


def wilcoxon_nonzero(diffs: Sequence[float]) -> tuple[float | None, float, str | None]:
    """(statistic, two-sided p, method) of the signed-rank test on the non-zero differences (module docstring)."""
    from scipy.stats import PermutationMethod, wilcoxon
    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return None, 1.0, None   # identical counts: no evidence of a shift (scipy would warn and divide by 0)
    ties = np.unique(np.abs(d)).size < d.size
    if not ties and d.size <= 50:
        method, label = "exact", "exact"
    elif ties and d.size <= 13:
        method, label = PermutationMethod(), "exact permutation (all sign flips, midranks)"
    else:
        method, label = "asymptotic", "normal approximation (tie-corrected)"
    res = wilcoxon(d, zero_method="wilcox", method=method)
    return float(res.statistic), float(res.pvalue), label


def paired_tests(counts_a: Sequence[int], counts_b: Sequence[int]) -> dict:
    """Earlier stage a vs later stage b on the same questions (see the module docstring)."""
    from statsmodels.stats.contingency_tables import mcnemar
    a, b = np.asarray(counts_a, dtype=int), np.asarray(counts_b, dtype=int)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired tests need two non-empty count arrays of equal length")
    sa, sb = a == 1, b == 1
    n_b, n_c = int((sa & ~sb).sum()), int((~sa & sb).sum())
    both, neither = int((sa & sb).sum()), int((~sa & ~sb).sum())
    table = [[both, n_b], [n_c, neither]]
    p_mc = 1.0 if n_b + n_c == 0 else float(mcnemar(table, exact=True).pvalue)
    d = b - a
    w_stat, p_w, w_method = wilcoxon_nonzero(d)
    # SCR(b) - SCR(a) = p1 - p2 of the table [[both, c], [b, neither]] (rows: later stage single / multi)
    return {"n": int(a.size), "scr_from": float(sa.mean()), "scr_to": float(sb.mean()),
            "scr_diff": float(sb.mean() - sa.mean()), "scr_diff_ci": paired_difference_ci(both, n_c, n_b, neither),
            "scr_diff_ci_method": PAIRED_DIFF_CI_METHOD,
            "b_single_to_multi": n_b, "c_multi_to_single": n_c, "mcnemar_table": table, "mcnemar_p": p_mc,
            "mean_clusters_diff": float(d.mean()), "wilcoxon_stat": w_stat, "wilcoxon_p": p_w,
            "wilcoxon_method": w_method, "wilcoxon_n_nonzero": int((d != 0).sum()), "rank_biserial": rank_biserial(d)}


def apply_holm(transitions: list[dict], alpha: float = ALPHA, measure_rows: list[dict] = ()) -> int:
    """Add mcnemar_p_holm / wilcoxon_p_holm to every row (one Holm family of all tests: every McNemar and
    cluster-count Wilcoxon of `transitions`, and the Wilcoxon of every continuous-measure row); returns its size."""
    from statsmodels.stats.multitest import multipletests
    keys = [(row, k) for row in transitions for k in ("mcnemar_p", "wilcoxon_p")]
    keys += [(row, "wilcoxon_p") for row in measure_rows]
    if not keys:
        return 0
    _, adjusted, _, _ = multipletests([row[k] for row, k in keys], alpha=alpha, method="holm")
    for (row, k), p in zip(keys, adjusted):
        row[k + "_holm"] = float(p)
    return len(keys)


def verdict(transitions: Sequence, clusterers: list[str], alpha: float = ALPHA, *, each: bool = False) -> Verdict:
    """Apply VERDICT_RULE (each=True: PAIRS_VERDICT_RULE). Rows (Transition records, or anything with their
    attributes from_, to, clusterer, mcnemar_p_holm, scr_diff); a clusterer with no row for a transition
    counts as not significant there. With each=True the record's transition/from/to name the first listed
    pair with a majority; the text names every pair's verdict."""
    pairs = list(dict.fromkeys((t.from_, t.to) for t in transitions))
    per = []
    for f, t in pairs:
        rows = {r.clusterer: r for r in transitions if (r.from_, r.to) == (f, t)}
        agree = [c for c in clusterers if c in rows and rows[c].mcnemar_p_holm < alpha and rows[c].scr_diff > 0]
        per.append(VerdictRow(from_=f, to=t, agree=agree, disagree=[c for c in clusterers if c not in agree],
                              majority=len(agree) > len(clusterers) / 2))
    first = next((p for p in per if p.majority), None)
    k = len(clusterers)
    if each:
        text = "Per pair (each later run against the run it is paired with): " + "; ".join(
            f"{p.from_} -> {p.to}: " + (f"homogenization, SCR rises significantly under {len(p.agree)} of {k} "
                                        f"clusterers ({', '.join(p.agree)})" if p.majority else
                                        "no significant homogenization" + (
                                            f" (a significant rise under a minority only: {', '.join(p.agree)}; "
                                            f"{len(p.agree)} of {k})" if p.agree else ""))
            for p in per) + "."
    elif first:
        text = (f"Homogenization first appears at {first.from_} -> {first.to}: SCR rises significantly under "
                f"{len(first.agree)} of {k} clusterers ({', '.join(first.agree)}); "
                f"not under: {', '.join(first.disagree) or 'none'}.")
    else:
        minority = [p for p in per if p.agree]
        text = "No significant homogenization: no transition has a significant SCR rise under a majority of clusterers."
        if minority:
            text += " Significant rises under a minority only: " + "; ".join(
                f"{p.from_} -> {p.to} ({', '.join(p.agree)}; {len(p.agree)} of {k})" for p in minority) + "."
    return Verdict(transition=f"{first.from_} -> {first.to}" if first else None,
                   from_=first.from_ if first else None, to=first.to if first else None,
                   agree=first.agree if first else [], disagree=first.disagree if first else list(clusterers),
                   alpha=alpha, text=text, rule=PAIRS_VERDICT_RULE if each else VERDICT_RULE, per_transition=per)


# ---------------------------------------------------------------- clusterer agreement

def pair_agreement(single_a: Sequence[bool], single_b: Sequence[bool],
                   clusters_a: Sequence[Sequence[int]], clusters_b: Sequence[Sequence[int]]) -> dict:
    """Cohen's kappa of the single-cluster indicator and mean per-question adjusted Rand index."""
    from sklearn.metrics import adjusted_rand_score, cohen_kappa_score
    sa, sb = np.asarray(single_a, dtype=bool), np.asarray(single_b, dtype=bool)
    kappa, note = None, None
    if len(set(sa.tolist())) == 1 and len(set(sb.tolist())) == 1 and sa[0] == sb[0]:
        note = ("undefined: both clusterers give the same constant single-cluster indicator "
                f"(every question {'single' if sa[0] else 'multi'}-cluster; chance agreement is 1)")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kappa = float(cohen_kappa_score(sa, sb, labels=[False, True]))
    aris = [adjusted_rand_score(x, y) for x, y in zip(clusters_a, clusters_b) if len(x) == len(y) and len(x) > 0]
    both, either = int((sa & sb).sum()), int((sa | sb).sum())
    return {"kappa": kappa, "kappa_note": note, "percent_agreement": float((sa == sb).mean()),
            "n_single_a": int(sa.sum()), "n_single_b": int(sb.sum()), "n_single_both": both,
            "single_overlap": both / either if either else None,
            "ari_mean": float(np.mean(aris)) if aris else None, "n_ari": len(aris)}
