"""Metrics of a measurement: SCR and cluster statistics per clusterer, and how well each uncertainty
signal separates incorrect from correct answers.

Conventions (project-wide): a signal's score is *higher = more uncertain*; the positive class of every
discrimination metric is an INCORRECT answer; `incorrect` arrays are booleans (True = wrong).

Definitions, all on the questions where both the label and the signal exist:
- SCR: share of questions whose N samples form exactly one cluster.
- alignment-tax index: mean over questions of 1 - D/N (D clusters among N samples; the paper's index,
  so its maximum is 1 - 1/N, reached when every question is a single cluster).
- AUROC: sklearn `roc_auc_score(incorrect, score)`; ties count one half (a constant signal gives exactly
  0.5); None when only one class is present.
- Cohen's d: (mean score of incorrect - mean score of correct) / pooled sd (ddof=1 in each group);
  None when a group has fewer than 2 questions; when the pooled sd is 0, 0.0 if the means are equal,
  else None (a perfect separation with no spread has no finite d).
- risk-coverage: answer the most confident (lowest score) questions first; at coverage k/n the risk is
  the error rate among the k answered. Tied scores are broken uniformly at random *in expectation*:
  inside a tie group every position gets the group's mean error, so the curve does not depend on input
  order and a constant signal has risk = overall error rate at every coverage.
- AURC: mean risk over the n coverages k/n, k = 1..n (a right Riemann sum of the curve).
- PRR (prediction rejection ratio, Malinin et al., on the risk-coverage curve as in LM-Polygraph):
  (AURC_random - AURC_signal) / (AURC_random - AURC_oracle), where random is a constant score
  (AURC = error rate) and the oracle answers every correct question first. Oracle -> 1, constant -> 0,
  a worse-than-random order < 0. The exact reverse oracle is -1 only for n = 2 (the 1/k weights of the
  risk curve are not symmetric; e.g. n=4 with one error gives -13/9). None when a class is missing.
- accuracy at coverage c: accuracy among the ceil(c*n) most confident questions (tie rule above).
- intervals: SCR and accuracy (proportions) get the Clopper-Pearson exact interval, which stays
  non-degenerate at 0% and 100% (measure.scoring.intervals); AUROC gets a percentile bootstrap over questions
  with a seeded numpy Generator. report.json names each method (scr_ci_method, accuracy_ci_method,
  auroc_ci_method).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from measure.common.errors import UsageError
from measure.scoring.intervals import NO_INTERVAL, PROPORTION_CI_METHOD, bootstrap_method, proportion_ci
from measure.records.records import QuestionRecord

COVERAGES = (0.3, 0.5, 0.8)


def _pairs(scores, incorrect) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).reshape(-1)
    y = np.asarray(incorrect).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length ({s.size} vs {y.size})")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (filter missing signal values first)")
    return s, y


def scr(n_clusters: Sequence[int]) -> float:
    """Single-cluster rate: share of questions with exactly one cluster."""
    counts = np.asarray(n_clusters)
    if counts.size == 0:
        raise ValueError("scr of no questions")
    return float(np.mean(counts == 1))


def bootstrap_ci(values: Sequence, statistic: Callable[[np.ndarray], float], n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic`, resampling rows (questions) of `values` with replacement.

    `values` may be 2-D (one row per question, e.g. [score, incorrect]). Resamples where the statistic
    is None or NaN (e.g. AUROC of a one-class resample) are skipped; if none is valid -> (nan, nan).
    """
    data = np.asarray(values)
    if data.shape[0] == 0:
        raise ValueError("bootstrap of no values")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.shape[0], size=(n_boot, data.shape[0]))
    stats = [statistic(data[i]) for i in idx]
    stats = np.array([v for v in stats if v is not None and not math.isnan(v)], dtype=float)
    if stats.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def auroc(scores, incorrect: Sequence[bool]) -> float | None:
    """AUROC of the score for detecting incorrect answers; None when one class is missing."""
    s, y = _pairs(scores, incorrect)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y.astype(int), s))


def cohens_d(scores, incorrect) -> float | None:
    """Standardized mean difference, incorrect minus correct, pooled sd with ddof=1."""
    s, y = _pairs(scores, incorrect)
    a, b = s[y], s[~y]
    if a.size < 2 or b.size < 2:
        return None
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    diff = float(a.mean() - b.mean())
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else None
    return diff / pooled


def _expected_errors(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E[k] = expected number of errors among the k lowest scores (k = 1..n), ties in random order."""
    order = np.argsort(s, kind="stable")
    s, err = s[order], y[order].astype(float)
    n = s.size
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]   # first position of each tie group
    ends = np.r_[starts[1:], n]
    cum = np.r_[0.0, np.cumsum(err)]                         # cum[i] = errors among the first i
    k = np.arange(1, n + 1)
    g = np.searchsorted(starts, k - 1, side="right") - 1      # tie group holding position k-1
    a, b = starts[g], ends[g]
    return cum[a] + (k - a) * (cum[b] - cum[a]) / (b - a)


def risk_coverage(scores, incorrect) -> tuple[np.ndarray, np.ndarray]:
    """(coverage k/n, risk = error rate among the k most confident), k = 1..n."""
    s, y = _pairs(scores, incorrect)
    if s.size == 0:
        return np.zeros(0), np.zeros(0)
    k = np.arange(1, s.size + 1)
    return k / s.size, _expected_errors(s, y) / k


def aurc(scores, incorrect) -> float | None:
    """Area under the risk-coverage curve (mean risk over k = 1..n); lower is better."""
    _, risk = risk_coverage(scores, incorrect)
    return float(risk.mean()) if risk.size else None


def prr(scores, incorrect) -> float | None:
    """Prediction rejection ratio on the risk-coverage curve (see the module docstring)."""
    s, y = _pairs(scores, incorrect)
    if y.all() or not y.any():
        return None
    random = float(y.mean())                       # a constant score: risk = error rate everywhere
    oracle = aurc(y.astype(float), y)              # scoring by the label itself: correct ones first
    return (random - aurc(s, y)) / (random - oracle)


def accuracy_at_coverage(scores, incorrect, coverage: float) -> float | None:
    """Accuracy of the ceil(coverage*n) most confident questions; None when there are none."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    _, risk = risk_coverage(scores, incorrect)
    if risk.size == 0:
        return None
    k = max(1, math.ceil(round(coverage * risk.size, 9)))   # round: 0.3*10 must give 3, not 4
    return float(1.0 - risk[k - 1])


# ---------------------------------------------------------------- the report's metrics block

def finite(v) -> bool:
    """A real, finite number (not a bool): what a mean over questions may take."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def finite_mean(values) -> float | None:
    """The mean of the finite numbers among `values` (missing, None and nan skipped); None when there are none."""
    kept = [float(v) for v in values if finite(v)]
    return float(np.mean(kept)) if kept else None


def signal_names(records: list[QuestionRecord]) -> list[str]:
    """Every signal key in the records, in order of first appearance."""
    return list(dict.fromkeys(k for r in records for k in r.signals))


def signal_data(records: list[QuestionRecord], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores, incorrect) over labelled questions with a finite value of `name`."""
    rows = [(float(r.signals[name]), not r.label) for r in records
            if r.label is not None and finite(r.signals.get(name))]
    return np.array([a for a, _ in rows], dtype=float), np.array([b for _, b in rows], dtype=bool)


def ci_or_none(values, statistic, n_boot: int, seed: int) -> list[float] | None:
    """Percentile bootstrap CI [lo, hi] of `statistic`; None when n_boot < 1, there are no values, or no
    resample gives a valid value."""
    if n_boot < 1 or len(values) == 0:
        return None
    lo, hi = bootstrap_ci(values, statistic, n_boot=n_boot, seed=seed)
    return None if math.isnan(lo) else [lo, hi]


def _auroc_rows(a: np.ndarray) -> float | None:
    return auroc(a[:, 0], a[:, 1] > 0.5)


def _cluster_counts(records: list[QuestionRecord], label: str) -> tuple[np.ndarray, np.ndarray]:
    d, n = [], []
    for r in records:
        if label not in r.n_clusters or not r.clusters.get(label):
            raise UsageError(f"question {r.id!r}: no clustering under {label!r}; "
                             f"available: {', '.join(sorted(r.n_clusters)) or 'none'}")
        d.append(int(r.n_clusters[label]))
        n.append(len(r.clusters[label]))
    return np.array(d), np.array(n)


def summarize(records: list[QuestionRecord], clusterer_labels: list[str], *, n_boot: int, seed: int) -> dict:
    """The metrics block of report.json (keys documented in the module docstring and README).

    n_boot = 0 disables the bootstrap (AUROC CIs become None, their method NO_INTERVAL, so no table claims a
    CI for them; the exact SCR/accuracy intervals remain).
    """
    if not records:
        raise UsageError("no questions to summarize")
    out: dict = {k: {} for k in ("scr", "scr_ci", "mean_clusters", "alignment_tax_index", "n_single_cluster")}
    single: dict[str, list[QuestionRecord]] = {}
    for label in clusterer_labels:
        d, n = _cluster_counts(records, label)
        out["scr"][label] = scr(d)
        out["scr_ci"][label] = proportion_ci(int((d == 1).sum()), len(d))
        out["mean_clusters"][label] = float(d.mean())
        out["alignment_tax_index"][label] = float(np.mean(1.0 - d / n))
        out["n_single_cluster"][label] = int((d == 1).sum())
        single[label] = [r for r, k in zip(records, d) if k == 1]

    labels = np.array([r.label for r in records if r.label is not None], dtype=float)
    out.update(
        accuracy=float(labels.mean()) if labels.size else None,
        accuracy_ci=proportion_ci(int(labels.sum()), labels.size) if labels.size else None,
        n_labelled=int(labels.size), n_correct=int(labels.sum()), n_incorrect=int(labels.size - labels.sum()),
        n_ambiguous=sum(r.judgement == "ambiguous" for r in records),
        n_unlabelled=sum(r.label is None for r in records),
        coverages=list(COVERAGES), scr_ci_method=PROPORTION_CI_METHOD, accuracy_ci_method=PROPORTION_CI_METHOD,
        auroc_ci_method=bootstrap_method(n_boot, seed) if n_boot >= 1 else NO_INTERVAL)

    names = signal_names(records)
    for key in ("auroc", "auroc_ci", "auroc_n", "cohens_d", "prr", "aurc", "accuracy_at_coverage"):
        out[key] = {}
    for name in names:
        s, y = signal_data(records, name)
        out["auroc_n"][name] = int(s.size)
        out["auroc"][name] = auroc(s, y)
        out["auroc_ci"][name] = (None if out["auroc"][name] is None else
                                 ci_or_none(np.column_stack([s, y]), _auroc_rows, n_boot, seed))
        out["cohens_d"][name] = cohens_d(s, y)
        out["prr"][name] = prr(s, y)
        out["aurc"][name] = aurc(s, y)
        out["accuracy_at_coverage"][name] = {str(c): accuracy_at_coverage(s, y, c) for c in COVERAGES}

    # The paper's question: do signals still separate right from wrong once samples collapse to one
    # cluster? A signal constant on that subset gets exactly 0.5 and is listed in single_cluster_constant.
    out.update(auroc_single_cluster={}, auroc_single_cluster_n={}, single_cluster_constant={})
    for label in clusterer_labels:
        subset = single[label]
        n_lab = sum(r.label is not None for r in subset)
        out["auroc_single_cluster_n"][label] = {"n": n_lab, "n_incorrect": sum(r.label is False for r in subset)}
        out["auroc_single_cluster"][label], out["single_cluster_constant"][label] = {}, []
        for name in names:
            s, y = signal_data(subset, name)
            out["auroc_single_cluster"][label][name] = auroc(s, y)
            if s.size and y.any() and not y.all() and np.all(s == s[0]):
                out["single_cluster_constant"][label].append(name)
    return out
