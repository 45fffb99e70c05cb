"""Word-bigram Jaccard similarity and the two clusterings the Alignment Tax paper's code builds on it.

The seed code (DigitLion/ucbd-experiment, commit c37e151) clusters a question's samples in two ways, both
with threshold 0.4 on the bigram Jaccard similarity:

    leader   exp27_sindex_headtohead.py `cluster_jaccard`: a sample joins the FIRST cluster whose FIRST
             member has similarity >= threshold, else founds a new one. Order-dependent; a sample similar
             only to a later member of a cluster starts its own.
    single   run_exp26_minimax_scr.py `count_clusters_jaccard`: union-find over ALL pairs with similarity
             >= threshold, i.e. the connected components of that graph (single linkage): chains merge, so
             A~B and B~C put A and C together even when A and C share nothing. Order-independent; never
             more clusters than leader (a leader cluster is connected through its leader).

Features (word_bigrams), compared with the seed's `bigrams`: both lower-case and split on whitespace
(str.split(): punctuation stays part of a token) and take the set of adjacent pairs when there are two
or more words. With fewer than two words the seed takes {(text.lower(),)} -- the WHOLE text, surrounding
whitespace included, and ("",) for an empty text -- where we take the set of the (at most one) word.
For a stripped text (every sample this toolkit draws is stripped, measure/sampling/sample.py; the seed's
API answers are .strip()ped too) the two give the same similarity for every pair: one-word texts get the
same feature, and an empty text is similar 1.0 to another empty text and 0.0 to anything else under both.
They differ only for an unstripped one-word text in a user's samples file ("Paris\n" is "Paris" here,
not in the seed). The seed's empty-set guards (exp26: 0.0 if either set is empty; exp27: 1.0 if both
are) are never reached there, since its feature sets are never empty.
"""
from __future__ import annotations

import itertools
from typing import Sequence

from measure.scoring.grouping import greedy_cluster, ids_from_keys

LINKAGES = ("leader", "single")   # the jaccard clusterer's linkage choices; the first is its default


def word_bigrams(text: str) -> frozenset[tuple[str, ...]]:
    """Word bigrams of the lower-cased whitespace tokens; a one-word text falls back to its unigram set
    (so "Paris" vs "Paris" is 1.0, not undefined), an empty text has no features."""
    words = text.lower().split()
    if len(words) < 2:
        return frozenset((w,) for w in words)
    return frozenset(zip(words, words[1:]))


def feature_jaccard(fa: frozenset, fb: frozenset) -> float:
    """|A & B| / |A | B|; two feature-less (empty) texts count as identical."""
    if not fa and not fb:
        return 1.0
    return len(fa & fb) / len(fa | fb)


def jaccard_similarity(a: str, b: str) -> float:
    """Bigram Jaccard similarity of two texts (word_bigrams, feature_jaccard)."""
    return feature_jaccard(word_bigrams(a), word_bigrams(b))


def single_linkage(features: Sequence[frozenset], threshold: float) -> list[int]:
    """Connected components of the graph whose edges are the pairs with Jaccard >= threshold (what the
    seed's union-find computes); ids in order of first appearance."""
    from scipy.sparse.csgraph import connected_components
    import numpy as np
    n = len(features)
    edges = np.zeros((n, n), dtype=bool)
    for i, j in itertools.combinations(range(n), 2):
        edges[i, j] = feature_jaccard(features[i], features[j]) >= threshold
    _, component = connected_components(edges, directed=False)
    return ids_from_keys(component.tolist())


def jaccard_clusters(texts: Sequence[str], threshold: float, linkage: str = LINKAGES[0]) -> list[int]:
    """Cluster ids of the texts under `linkage` (module docstring); each text's bigrams are built once."""
    features = [word_bigrams(t) for t in texts]
    if linkage == "single":
        return single_linkage(features, threshold)
    if linkage == "leader":
        return greedy_cluster(len(texts), lambda i, j: feature_jaccard(features[i], features[j]) >= threshold)
    raise ValueError(f"unknown linkage {linkage!r}; valid choices: {', '.join(LINKAGES)}")
