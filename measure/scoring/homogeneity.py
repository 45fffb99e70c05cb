"""Continuous homogeneity measures of one question's N sampled answers.

Convention, stated once: every measure here is oriented so that HIGHER = MORE HOMOGENEOUS (the N samples
say more nearly the same thing), like SCR. Uncertainty signals keep their own convention (higher = more
uncertain); these are not signals and never enter an AUROC.

    agreement@<clusterer>  pairwise agreement rate: the share of the N(N-1)/2 sample pairs the clusterer put
                           in one cluster, sum_c n_c(n_c - 1) / (N(N - 1)). The unbiased estimate of the
                           probability that two samples agree (Simpson's index without replacement); 1 exactly
                           when the question is single-cluster, 0 when every sample is its own cluster.
    mean_cosine            mean cosine similarity of the samples' sentence embeddings over the N(N-1)/2 pairs
                           (the run's embedding model; Karouzos et al. 2026 report 1 - this as "SBERT diversity").
    inverse_vendi          1 / Vendi score (Friedman & Dieng 2023): Vendi = exp(Shannon entropy of the
                           eigenvalues of K/N), K the cosine-similarity kernel of the embeddings, is the
                           effective number of distinct samples in [1, N]; its inverse is in [1/N, 1], 1 when
                           the samples' embeddings coincide.
    ead_repetition         1 - EAD, EAD the expectation-adjusted distinct n-grams (Liu et al. 2022; as used by
                           Kirk et al. 2023 and Karouzos et al. 2026) averaged over n = 1..4: per n, the number of
                           distinct word n-grams over all N samples divided by its expectation under a uniform
                           vocabulary of V words, V (1 - ((V - 1)/V)^C), C the number of n-grams; clipped to
                           [0, 1] as Karouzos et al.'s code does. Words: whitespace tokens after deleting "." and
                           newlines (their tokenization; case kept). An n with no n-gram in any sample (every
                           sample shorter than n words) counts as EAD 0, again as theirs does.

The published diversity scales are one step away and exact per question: Vendi = 1 / inverse_vendi,
EAD = 1 - ead_repetition, SBERT diversity = 1 - mean_cosine. Vendi is computed here with scipy's eigvalsh
rather than the `vendi-score` package: its last release (0.0.3) reads scipy.sparse.csr.csr_matrix, a
namespace SciPy deprecates (a DeprecationWarning on every call) and removes in 2.0, which the scipy range
this project allows includes; the formula is its score_K(K) with the default q = 1.
Every measure needs N >= 2 samples; with fewer the value is None and the reason is recorded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.linalg import eigvalsh

from measure.scoring.intervals import bootstrap_method
from measure.scoring.metrics import ci_or_none

CONVENTION = "higher = more homogeneous"
EAD_ORDERS = (1, 2, 3, 4)
EAD_VOCAB_SIZE = 50257   # V: GPT-2's vocabulary, Karouzos et al.'s default; for C << V the adjustment is ~C/(2V)


@dataclass(frozen=True)
class Measure:
    name: str
    needs: str          # "clusters" (one value per clusterer), "embeddings" or "texts"
    doc: str


MEASURES = {m.name: m for m in (
    Measure("agreement", "clusters", "share of sample pairs in one cluster (1 = single-cluster)"),
    Measure("mean_cosine", "embeddings", "mean pairwise cosine similarity of the sample embeddings"),
    Measure("inverse_vendi", "embeddings", "1 / Vendi score of the cosine kernel (1 = one effective sample)"),
    Measure("ead_repetition", "texts", f"1 - EAD, n = {EAD_ORDERS[0]}..{EAD_ORDERS[-1]} (0 = every n-gram distinct)"),
)}


# ------------------------------------------------------------------ pure estimators

def pairwise_agreement(ids: Sequence[int]) -> float:
    """sum_c n_c (n_c - 1) / (N (N - 1)) over the clusters of one question's N samples (N >= 2)."""
    _, counts = np.unique(np.asarray(ids), return_counts=True)
    n = int(counts.sum())
    if n < 2:
        raise ValueError(f"pairwise agreement needs >= 2 samples, got {n}")
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def _unit_rows(embeddings) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"needs >= 2 embedding rows, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def mean_pairwise_cosine(embeddings) -> float:
    """Mean cosine similarity over the N(N-1)/2 unordered pairs of rows (rows L2-normalized here)."""
    x = _unit_rows(embeddings)
    k = x @ x.T
    return float(k[np.triu_indices(len(x), 1)].mean())


def vendi_score(embeddings) -> float:
    """exp(-sum_i l_i ln l_i), l the eigenvalues of K/N, K = the cosine kernel (unit diagonal, so sum l = 1).
    Round-off can give eigenvalues a little below 0; like vendi_score.score_K only the positive ones enter."""
    x = _unit_rows(embeddings)
    lam = eigvalsh(x @ x.T / len(x))
    lam = lam[lam > 0]
    return float(np.exp(-(lam * np.log(lam)).sum()))


def _words(text: str) -> list[str]:
    return text.replace(".", "").replace("\n", "").split()


def ead(texts: Sequence[str], orders: Sequence[int] = EAD_ORDERS, vocab_size: int = EAD_VOCAB_SIZE) -> float:
    """Expectation-adjusted distinct n-grams of the texts pooled, averaged over `orders` (module docstring)."""
    words = [_words(t) for t in texts]
    values = []
    for n in orders:
        grams = [tuple(w[i:i + n]) for w in words for i in range(len(w) - n + 1)]
        if not grams:
            values.append(0.0)
            continue
        v = float(vocab_size)
        expected = v * -np.expm1(len(grams) * np.log1p(-1.0 / v))   # V (1 - ((V-1)/V)^C), without cancellation
        values.append(min(max(len(set(grams)) / expected, 0.0), 1.0))
    return float(np.mean(values))


# ------------------------------------------------------------------ one question

def question_homogeneity(texts: Sequence[str], clusters: dict[str, Sequence[int]], embeddings,
                         names: Sequence[str]) -> tuple[dict[str, float | None], dict[str, str]]:
    """The measures `names` of one question: ({key: value or None}, {key: why None}). Keys are the measure's
    name, and "agreement@<clusterer label>" per clusterer. `embeddings`: one row per sample, or None when
    no embedding measure is asked for."""
    values: dict[str, float | None] = {}
    why: dict[str, str] = {}
    few = f"needs >= 2 samples, got {len(texts)}" if len(texts) < 2 else None
    for name in names:
        keys = [f"{name}@{label}" for label in clusters] if MEASURES[name].needs == "clusters" else [name]
        for key in keys:
            if few:
                values[key], why[key] = None, few
            elif name == "agreement":
                values[key] = pairwise_agreement(clusters[key.partition("@")[2]])
            elif name == "mean_cosine":
                values[key] = mean_pairwise_cosine(embeddings)
            elif name == "inverse_vendi":
                values[key] = 1.0 / vendi_score(embeddings)
            else:
                values[key] = 1.0 - ead(texts)
    return values, why


HOMOGENEITY_MEASURES = MEASURES   # the public face's name for the registry


def needs_embeddings(names: Sequence[str]) -> bool:
    return any(MEASURES[n].needs == "embeddings" for n in names)


def measure_name(key: str) -> str:
    """"agreement@jaccard@0.3" -> "agreement" (measure names contain no "@")."""
    return key.partition("@")[0]


# ------------------------------------------------------------------ a run

def summarize_homogeneity(per_question: Sequence[dict[str, float | None]], reasons: dict[str, str], *,
                          n_boot: int, seed: int) -> dict:
    """report.json's "homogeneity": per measure key the mean over the questions that have it, its percentile
    bootstrap interval over questions (None when n_boot = 0), n; the published scales' means (Vendi, EAD,
    SBERT diversity, each the mean of the per-question transform); why a key has no value anywhere."""
    keys = list(dict.fromkeys(k for q in per_question for k in q))
    measures, published = {}, {}
    for key in keys:
        v = np.array([q[key] for q in per_question if q.get(key) is not None], dtype=float)
        if not v.size:
            continue
        measures[key] = {"mean": float(v.mean()), "ci": ci_or_none(v, np.mean, n_boot, seed), "n": int(v.size),
                         "about": MEASURES[measure_name(key)].doc}
        if key == "inverse_vendi":
            published["vendi"] = float(np.mean(1.0 / v))
        elif key == "ead_repetition":
            published["ead"] = float(np.mean(1.0 - v))
        elif key == "mean_cosine":
            published["sbert_diversity"] = float(np.mean(1.0 - v))
    return {"convention": CONVENTION, "ci_method": bootstrap_method(n_boot, seed) if n_boot >= 1 else None,
            "measures": measures, "published_scales": published,
            "skipped": {k: why for k, why in reasons.items() if k not in measures}}
