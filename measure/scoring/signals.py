"""Uncertainty signals per question: higher = more uncertain, natural logs (nats) throughout.

Each Signal names the inputs it `needs`; compute_signals checks them first and records a reason instead
of a value when one is missing (no greedy answer, no token data, fewer than two samples, no clusters),
so a samples file from elsewhere without token scores still gets every signal it can support.
Per-clusterer signals are keyed "<signal>@<clusterer label>", e.g. "n_clusters@jaccard@0.3"
(signal names contain no "@", so the key splits at its first "@").

Each Signal also declares the `work` it needs, in the units measurement times (measure.pipeline
timing_block): "greedy" (the greedy pass), "sampling" (the N samples) and CLUSTERER (the clusterer the
key names). signal_work resolves a key to those units; a set of signals costs each unit once
(measure.analysis.cascade charges a stage only the work earlier stages have not paid).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy.special import logsumexp

from measure.scoring.jaccard import feature_jaccard, word_bigrams
from measure.common.errors import UsageError, suggest
from measure.records.records import QuestionSamples


CLUSTERER = "<clusterer>"   # a work unit standing for the clusterer named after "@" in the signal's key


@dataclass(frozen=True)
class SignalKey:
    """A signal key as written in questions.jsonl and report.json: the signal's name, and for a
    per-clusterer signal the clusterer label after the first "@" ("n_clusters@jaccard@0.3" ->
    SignalKey("n_clusters", "jaccard@0.3"); "greedy_nll" -> SignalKey("greedy_nll", None))."""
    name: str
    clusterer: str | None = None

    @classmethod
    def parse(cls, text: str) -> "SignalKey":
        name, sep, label = text.partition("@")   # signal names contain no "@": the FIRST "@" splits
        return cls(name, label if sep else None)

    def __str__(self) -> str:
        return self.name if self.clusterer is None else f"{self.name}@{self.clusterer}"


@dataclass(frozen=True)
class Signal:
    name: str
    needs: tuple[str, ...]      # inputs checked by _missing before fn runs
    per_clusterer: bool         # True: computed once per clusterer from its cluster ids
    fn: Callable[[QuestionSamples, list[int] | None], float]
    doc: str
    work: tuple[str, ...]       # what producing the inputs costs: "greedy", "sampling", CLUSTERER


# ------------------------------------------------------------------ pure estimators

def entropy_of_counts(ids: Sequence[int]) -> float:
    """Discrete semantic entropy: -sum_c p_c ln p_c with p_c = |cluster c| / N."""
    _, counts = np.unique(np.asarray(ids), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def cluster_log_probs(ids: Sequence[int], log_weights: Sequence[float]) -> np.ndarray:
    """ln p_c = ln(sum_{i in c} w_i / sum_i w_i), one entry per distinct cluster id (sorted).

    Every SAMPLE counts once with its own weight, duplicates included (two draws of the same text are
    two Monte Carlo draws), and the normalizer runs over the same N samples, so sum_c p_c = 1 and no
    p_c exceeds 1. (Summing the probability of each unique text per cluster and then renormalizing
    over samples would count duplicates twice; we never do that.)
    """
    ids_a, lw = np.asarray(ids), np.asarray(log_weights, dtype=float)
    total = logsumexp(lw)
    return np.array([logsumexp(lw[ids_a == c]) - total for c in np.unique(ids_a)])


def likelihood_weighted_entropy(ids: Sequence[int], log_weights: Sequence[float]) -> float:
    """-sum_c p_c ln p_c with p_c from cluster_log_probs (the Farquhar et al. 2024 'Rao' estimator)."""
    lp = cluster_log_probs(ids, log_weights)
    return float(-(np.exp(lp) * lp).sum())


ALL_PAIRS_UP_TO = 200    # N <= this: every one of the N(N-1)/2 pairs (19900 at 200)
SAMPLED_PAIRS = 20_000   # N above it: the mean over this many uniformly drawn pairs of distinct samples
PAIRS_SEED = 0           # ... drawn by numpy's default_rng(PAIRS_SEED): the same pairs for the same N
PAIRS_RULE = (f"1 - mean word-bigram Jaccard over every pair of samples when N <= {ALL_PAIRS_UP_TO}, else over "
              f"{SAMPLED_PAIRS} pairs of distinct samples drawn uniformly (numpy default_rng({PAIRS_SEED})); "
              "bigrams computed once per sample")


def sample_pairs(n: int) -> Iterable[tuple[int, int]]:
    """The pairs lexical dissimilarity averages over (PAIRS_RULE): bounded work for any N."""
    if n <= ALL_PAIRS_UP_TO:
        return itertools.combinations(range(n), 2)
    rng = np.random.default_rng(PAIRS_SEED)
    first = rng.integers(0, n, SAMPLED_PAIRS)
    second = rng.integers(0, n - 1, SAMPLED_PAIRS)
    return zip(first.tolist(), (second + (second >= first)).tolist())   # uniform over j != i


def mean_pairwise_dissimilarity(texts: Sequence[str]) -> float:
    """1 - mean word-bigram Jaccard (the jaccard clusterer's similarity) over sample_pairs (needs >= 2 texts);
    each text's bigrams are computed once, and the similarities are summed, never stored."""
    feats = [word_bigrams(t) for t in texts]
    total, count = 0.0, 0
    for i, j in sample_pairs(len(feats)):
        total += feature_jaccard(feats[i], feats[j])
        count += 1
    return 1.0 - total / count


# ------------------------------------------------------------------ needs

def _missing(need: str, qs: QuestionSamples, ids: list[int] | None) -> str | None:
    """A reason string when input `need` is absent, else None."""
    g = qs.greedy
    if need == "greedy":
        return None if g is not None else "no greedy answer"
    if need in ("greedy.token_entropies", "greedy.token_logprobs"):
        if g is None:
            return "no greedy answer"
        field = need.split(".")[1]
        values = getattr(g, field)
        if values is None:
            return f"greedy answer has no {field}"
        return None if len(values) else f"greedy answer has no generated tokens ({field} empty)"
    if need == "samples.token_logprobs":
        bad = [i for i, s in enumerate(qs.samples) if not s.token_logprobs]
        return None if not bad else f"samples {bad[:5]}{'...' if len(bad) > 5 else ''} have no token_logprobs"
    if need == "two_samples":
        return None if len(qs.samples) >= 2 else f"needs >= 2 samples, got {len(qs.samples)}"
    if need == "clusters":
        return None if ids is not None else "no clusters"
    raise KeyError(f"unknown signal input {need!r}")


# ------------------------------------------------------------------ signal functions

def _greedy_entropy(stat: Callable[[np.ndarray], float]):
    return lambda qs, ids: float(stat(np.asarray(qs.greedy.token_entropies)))


def _greedy_nll(qs: QuestionSamples, ids) -> float:
    return float(-np.mean(qs.greedy.token_logprobs))


def _response_length(qs: QuestionSamples, ids) -> float:
    g = qs.greedy
    tokens = g.token_logprobs if g.token_logprobs is not None else g.token_entropies
    return float(len(tokens) if tokens is not None else len(g.text.split()))


def _n_clusters(qs, ids: list[int]) -> float:
    return float(len(set(ids)))


def _semantic_entropy(qs, ids: list[int]) -> float:
    return entropy_of_counts(ids)


def _semantic_entropy_lw(qs: QuestionSamples, ids: list[int]) -> float:
    # Length-normalized sequence log-probability (mean token log-prob), as Kuhn et al. / Farquhar et al.:
    # raw sums would make every long answer look improbable and tie the signal to length.
    return likelihood_weighted_entropy(ids, [float(np.mean(s.token_logprobs)) for s in qs.samples])


def _lexical_dissimilarity(qs: QuestionSamples, ids) -> float:
    return mean_pairwise_dissimilarity([s.text for s in qs.samples])


GREEDY, CLUSTERED = ("greedy",), ("sampling", CLUSTERER)
SIGNALS: dict[str, Signal] = {s.name: s for s in (
    Signal("greedy_entropy_mean", ("greedy.token_entropies",), False, _greedy_entropy(np.mean),
           "mean full-vocabulary next-token entropy (nats) over the greedy answer's tokens", GREEDY),
    Signal("greedy_entropy_max", ("greedy.token_entropies",), False, _greedy_entropy(np.max),
           "max next-token entropy (nats) over the greedy answer's tokens", GREEDY),
    Signal("greedy_entropy_std", ("greedy.token_entropies",), False, _greedy_entropy(np.std),
           "population std (ddof=0) of the greedy answer's next-token entropies; 0 for one token", GREEDY),
    Signal("greedy_nll", ("greedy.token_logprobs",), False, _greedy_nll,
           "mean negative log-probability (nats) of the greedy answer's chosen tokens", GREEDY),
    Signal("response_length", ("greedy",), False, _response_length,
           "greedy answer length: generated tokens when token data exists, else whitespace words "
           "(a confound baseline: longer answers tend to be wrong)", GREEDY),
    Signal("n_clusters", ("clusters",), True, _n_clusters,
           "number of distinct clusters among the N samples", CLUSTERED),
    Signal("semantic_entropy", ("clusters",), True, _semantic_entropy,
           "discrete semantic entropy -sum p_c ln p_c, p_c = cluster size / N", CLUSTERED),
    Signal("semantic_entropy_lw", ("clusters", "samples.token_logprobs"), True, _semantic_entropy_lw,
           "likelihood-weighted semantic entropy: each sample weighted by exp(mean token log-prob) "
           "(length-normalized), p_c = cluster weight / total weight of all N samples (sums to 1)", CLUSTERED),
    Signal("lexical_dissimilarity", ("two_samples",), False, _lexical_dissimilarity,
           "1 - mean word-bigram Jaccard (the jaccard clusterer's similarity) over sample pairs: " + PAIRS_RULE,
           ("sampling",)),   # the N samples, not the greedy answer; no clusterer runs
)}


def signal_work(key: str) -> tuple[str, ...] | None:
    """The work units a signal key needs ("n_clusters@embedding" -> ("sampling", "embedding")); None for a
    name that is not a registered signal (its work is unknown)."""
    parsed = SignalKey.parse(key)
    sig = SIGNALS.get(parsed.name)
    if sig is None or sig.per_clusterer != bool(parsed.clusterer):
        return None
    return tuple(parsed.clusterer if unit == CLUSTERER else unit for unit in sig.work)


def compute_signals(qs: QuestionSamples, clusters: dict[str, list[int]],
                    names: Iterable[str] | None = None) -> tuple[dict[str, float | None], dict[str, str]]:
    """(values, skipped): every requested signal, per-clusterer ones once per clusterer label in
    `clusters`; a skipped key has value None and a reason in `skipped`. Unknown names -> UsageError."""
    names = list(SIGNALS) if names is None else list(names)
    for name in names:
        if name not in SIGNALS:
            raise UsageError(f"unknown signal {name!r}{suggest(name, SIGNALS)}")
    for label, ids in clusters.items():
        if len(ids) != len(qs.samples):
            raise ValueError(f"question {qs.question.id}: {len(ids)} cluster ids for {len(qs.samples)} samples ({label})")
    values: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    for name in names:
        sig = SIGNALS[name]
        if sig.per_clusterer and not clusters:
            values[name], skipped[name] = None, "no clusterer ran"
        targets = ([(str(SignalKey(name, label)), ids) for label, ids in clusters.items()] if sig.per_clusterer
                   else [(name, None)])
        for key, ids in targets:
            reason = next((r for r in (_missing(n, qs, ids) for n in sig.needs) if r), None)
            value = None if reason else sig.fn(qs, ids)
            if value is not None and not math.isfinite(value):
                reason, value = f"non-finite value {value}", None
            values[key] = value
            if reason:
                skipped[key] = reason
    return values, skipped
