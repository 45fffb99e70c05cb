"""Signals: hand-computed values, the likelihood-weighted estimator with duplicates, and skip reasons."""
from __future__ import annotations

import math

import numpy as np
import pytest

from measure.scoring.cluster import make_clusterer
from measure.common.errors import UsageError
from measure.records.records import Generation, Question, QuestionSamples
from measure.analysis.cascade_costs import unit_cost
from measure.analysis.compare_render import roc_keys
from measure.scoring.signals import (SIGNALS, SignalKey, _missing, cluster_log_probs, compute_signals, entropy_of_counts,
                             likelihood_weighted_entropy, mean_pairwise_dissimilarity, signal_work)


def qs(samples, greedy=None, qid="q1"):
    gens = tuple(s if isinstance(s, Generation) else Generation(s) for s in samples)
    return QuestionSamples(Question(qid, "What is 6 times 7?"), greedy, gens)


FULL = qs([Generation("42", (-1.0, -1.0), (0.5, 0.5)), Generation("41", (-2.0,), (1.0,)),
           Generation("it is 42", (-0.5, -1.5), (0.1, 0.2))],
          greedy=Generation("The answer is 42", (-0.5, -1.5, -0.25, -0.75, -1.0, -2.0), (1.0, 2.0, 3.0, 6.0, 3.0, 3.0)))


# ------------------------------------------------------------------ estimators

@pytest.mark.parametrize("ids, value", [
    ([0, 0, 1, 1], math.log(2)), ([0, 0, 0, 0], 0.0), ([0, 1, 2, 3], math.log(4)),
    ([0, 0, 0, 1], -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), ([0], 0.0)])
def test_discrete_semantic_entropy(ids, value):
    assert entropy_of_counts(ids) == pytest.approx(value)


def test_likelihood_weighted_hand_value():
    # weights e^-1, e^-2, e^-1 on clusters 0, 1, 0: p0 = 2/(2 + e^-1), p1 = e^-1/(2 + e^-1)
    p0, p1 = 2 / (2 + math.exp(-1)), math.exp(-1) / (2 + math.exp(-1))
    assert np.exp(cluster_log_probs([0, 1, 0], [-1.0, -2.0, -1.0])) == pytest.approx([p0, p1])
    assert likelihood_weighted_entropy([0, 1, 0], [-1.0, -2.0, -1.0]) == pytest.approx(-(p0 * math.log(p0) + p1 * math.log(p1)))


def test_likelihood_weighted_duplicates_never_exceed_one():
    # three draws of one very likely text: one cluster with probability exactly 1, entropy 0 (not negative)
    assert np.exp(cluster_log_probs([0, 0, 0], [0.0, 0.0, 0.0])) == pytest.approx([1.0])
    assert likelihood_weighted_entropy([0, 0, 0], [0.0, 0.0, 0.0]) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = list(rng.integers(0, 4, size=8))      # ids need not be contiguous
        lw = list(rng.normal(-1, 3, size=8))
        p = np.exp(cluster_log_probs(ids, lw))
        assert len(p) == len(set(ids)) and p.sum() == pytest.approx(1.0) and (p <= 1.0 + 1e-12).all()
        assert 0.0 <= likelihood_weighted_entropy(ids, lw) <= math.log(len(set(ids))) + 1e-12
    # duplicates count once each: [a, a, b] with equal weights is 2/3 vs 1/3, same as the discrete estimator
    assert likelihood_weighted_entropy([0, 0, 1], [-1.0, -1.0, -1.0]) == pytest.approx(entropy_of_counts([0, 0, 1]))


def test_lexical_dissimilarity_hand_value():
    # pairs: identical (1), and two pairs with no shared bigram (0): 1 - 1/3
    assert mean_pairwise_dissimilarity(["a b c", "a b c", "x y"]) == pytest.approx(2 / 3)


# ------------------------------------------------------------------ compute_signals

def test_all_signals_on_full_data():
    values, skipped = compute_signals(FULL, {"numeric": [0, 1, 0], "exact": [0, 1, 2]})
    assert skipped == {}
    assert values["greedy_entropy_mean"] == pytest.approx(3.0)
    assert values["greedy_entropy_max"] == pytest.approx(6.0)
    # deviations -2 -1 0 3 0 0: population variance 14/6
    assert values["greedy_entropy_std"] == pytest.approx(math.sqrt(14 / 6))
    assert values["greedy_nll"] == pytest.approx(1.0)
    assert values["response_length"] == 6.0            # generated tokens, not the 4 words
    assert values["n_clusters@numeric"] == 2.0 and values["n_clusters@exact"] == 3.0
    assert values["semantic_entropy@exact"] == pytest.approx(math.log(3))
    p0 = 2 / (2 + math.exp(-1))                          # mean logprobs -1, -2, -1
    assert values["semantic_entropy_lw@numeric"] == pytest.approx(-(p0 * math.log(p0) + (1 - p0) * math.log(1 - p0)))
    # "42" / "41" / "it is 42": one-word texts vs the three-word one share nothing, "42" vs "41" neither
    assert values["lexical_dissimilarity"] == pytest.approx(1.0)
    expected = {n for n, s in SIGNALS.items() if not s.per_clusterer} | {
        f"{n}@{c}" for n, s in SIGNALS.items() if s.per_clusterer for c in ("numeric", "exact")}
    assert set(values) == expected


def test_signals_on_plain_strings_skip_with_reasons():
    values, skipped = compute_signals(qs(["Paris", "Paris", "Lyon"], greedy=Generation("It is Paris")),
                                      {"jaccard@0.3": [0, 0, 1]})
    for name in ("greedy_entropy_mean", "greedy_entropy_max", "greedy_entropy_std"):
        assert values[name] is None and "token_entropies" in skipped[name]
    assert values["greedy_nll"] is None and "token_logprobs" in skipped["greedy_nll"]
    assert values["semantic_entropy_lw@jaccard@0.3"] is None
    assert "samples [0, 1, 2] have no token_logprobs" in skipped["semantic_entropy_lw@jaccard@0.3"]
    assert values["response_length"] == 3.0            # whitespace words without token data
    assert values["n_clusters@jaccard@0.3"] == 2.0
    assert values["lexical_dissimilarity"] == pytest.approx(1 - 1 / 3)
    assert set(skipped) == {k for k, v in values.items() if v is None}


def test_missing_greedy_single_sample_and_empty_tokens():
    values, skipped = compute_signals(qs(["42"]), {"exact": [0]})
    for name in ("greedy_entropy_mean", "greedy_nll", "response_length"):
        assert values[name] is None and skipped[name] == "no greedy answer"
    assert values["lexical_dissimilarity"] is None and skipped["lexical_dissimilarity"] == "needs >= 2 samples, got 1"
    assert values["semantic_entropy@exact"] == 0.0 and values["n_clusters@exact"] == 1.0
    values, skipped = compute_signals(qs(["a", "b"], greedy=Generation("", (), ())), {}, ["greedy_entropy_mean", "response_length"])
    assert values == {"greedy_entropy_mean": None, "response_length": 0.0}
    assert "no generated tokens" in skipped["greedy_entropy_mean"]


def test_no_clusterer_and_name_selection():
    values, skipped = compute_signals(FULL, {}, ["n_clusters", "greedy_nll"])
    assert values == {"n_clusters": None, "greedy_nll": pytest.approx(1.0)}
    assert skipped == {"n_clusters": "no clusterer ran"}


def test_non_finite_value_is_skipped_not_crashed():
    values, skipped = compute_signals(qs(["a", "b"], greedy=Generation("a", (-math.inf,), (1.0,))), {}, ["greedy_nll"])
    assert values["greedy_nll"] is None and "non-finite" in skipped["greedy_nll"]


def test_bad_input():
    with pytest.raises(UsageError, match="unknown signal 'entropy'.*valid choices"):
        compute_signals(FULL, {}, ["entropy"])
    with pytest.raises(ValueError, match="2 cluster ids for 3 samples"):
        compute_signals(FULL, {"exact": [0, 1]})


def test_registry_is_documented_and_needs_are_known():
    for name, sig in SIGNALS.items():
        assert sig.name == name and sig.doc and sig.needs
        for need in sig.needs:
            assert _missing(need, FULL, [0, 1, 0]) is None
    with pytest.raises(KeyError):
        _missing("telepathy", FULL, None)


def test_signals_from_a_real_clusterer():
    samples = ["The answer is 42", "the answer is 42", "I think it is 41"]
    ids = make_clusterer("jaccard").cluster(samples)
    values, _ = compute_signals(qs(samples), {"jaccard": ids}, ["n_clusters", "semantic_entropy"])
    assert ids == [0, 0, 1]
    assert values == {"n_clusters@jaccard": 2.0,
                      "semantic_entropy@jaccard": pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))}


# ------------------------------------------------------------------ signal keys

@pytest.mark.parametrize("text, name, clusterer", [
    ("greedy_entropy_mean", "greedy_entropy_mean", None),
    ("n_clusters@exact", "n_clusters", "exact"),
    ("n_clusters@jaccard@0.3", "n_clusters", "jaccard@0.3"),                      # the FIRST "@" splits
    ("semantic_entropy@embedding:mpnet@0.8", "semantic_entropy", "embedding:mpnet@0.8"),
    ("semantic_entropy_lw@nli-nonstrict", "semantic_entropy_lw", "nli-nonstrict"),
])
def test_signal_key_parse_and_str_round_trip(text, name, clusterer):
    key = SignalKey.parse(text)
    assert (key.name, key.clusterer) == (name, clusterer)
    assert str(key) == text and SignalKey.parse(str(key)) == key


def test_every_key_compute_signals_writes_round_trips():
    qs = QuestionSamples(Question("q", "?"), Generation("a b", (-0.1, -0.2), (0.5, 0.7)),
                         tuple(Generation(t, (-0.3,), (0.1,)) for t in ("a b", "a c", "a b")))
    labels = ["exact", "jaccard@0.3", "embedding:mpnet@0.8"]
    values, _ = compute_signals(qs, {lb: [0, 1, 0] for lb in labels})
    for text in values:
        key = SignalKey.parse(text)
        assert str(key) == text and key.name in SIGNALS
        assert (key.clusterer in labels) == SIGNALS[key.name].per_clusterer
    assert "n_clusters@jaccard@0.3" in values


def test_consumers_split_at_the_first_at():
    assert signal_work("n_clusters@jaccard@0.3") == ("sampling", "jaccard@0.3")
    assert signal_work("greedy_nll") == ("greedy",) and signal_work("greedy_nll@exact") is None
    assert signal_work("n_clusters") is None and signal_work("nope@exact") is None
    assert unit_cost("semantic_entropy@nli-nonstrict") == 100.0 and unit_cost("n_clusters@jaccard@0.3") == 10.0
    assert unit_cost("response_length") == 1.0 and unit_cost("greedy_nll") == 2.0
    assert roc_keys("embedding@0.8") == ["greedy_entropy_mean", "response_length", "semantic_entropy@embedding@0.8",
                                         "n_clusters@embedding@0.8"]
