"""Continuous homogeneity measures of one question's N sampled answers (pure functions; no models).

Convention, stated once: every measure here is oriented so that HIGHER = MORE HOMOGENEOUS (the samples
say more nearly the same thing), like SCR. (Uncertainty signals keep their own convention: higher = more
uncertain.)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def pairwise_agreement(ids: Sequence[int]) -> float:
    """Share of the N(N-1)/2 unordered sample pairs that one clusterer put in one cluster:
    sum_c n_c (n_c - 1) / (N (N - 1)). It is the unbiased estimate of the probability that two
    independent samples fall in one cluster (Simpson's index without replacement), and it is 1 exactly
    when the question is single-cluster. Needs N >= 2."""
    _, counts = np.unique(np.asarray(ids), return_counts=True)
    n = int(counts.sum())
    if n < 2:
        raise ValueError(f"pairwise agreement needs >= 2 samples, got {n}")
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))
