"""Which two of a prompt's sampled answers become its preference pair: the rules of self-generated pairs.

Pure functions (train/self_pairs.py does the sampling, clustering and files). Per prompt they get the cluster
id of each of its N answers (a measure clusterer's assignment) and, for divpo, a quality per answer (None:
unusable), and return (chosen index, rejected index) or the reason the prompt gets no pair. Every rule pairs
answers of two DIFFERENT clusters: a pair of one answer twice carries no preference, and DPO on it has no
gradient, so the rules differ only in which clusters they prefer, never in how many pairs can act.

  modal   chosen from the largest cluster, rejected from the smallest: preferring the most common answer over
          the rarest is the homogenizing pressure Lanchantin et al. (2025) blame on DPO; it is the injected
          effect of the positive control. Only where one answer IS more common than another: a prompt whose
          clusters are all of one size (every answer different, say) has no mode to prefer and gets no pair,
          so every modal pair carries the preference instead of a coin flip.
  divpo   DivPO (Lanchantin et al. 2025, "Diverse Preference Optimization", arXiv 2501.18101): chosen = the
          rarest answer among those above a quality threshold, rejected = the most common among those below
          it. Rarity here is the size of the answer's cluster among the N samples (the paper's diversity
          criteria are model probability, word frequency or an LLM judge; a cluster count is the toolkit's
          own measure of "the same answer"). Quality: the judge's verdict where the question has gold answers
          (above = judged correct, below = judged incorrect; ambiguous = neither), else the answer's mean
          token log-probability, above when within the top `rho` of the prompt's quality range
          (q >= max - rho * (max - min); the paper likewise sets its threshold relative to the rewards of the
          prompt's pool). Ties: chosen the higher quality, rejected the lower.
  random  the placebo: a uniformly random unordered pair of answers from different clusters, ordered by a fair
          coin, so P(A chosen over B) = P(B chosen over A) whatever the cluster sizes. (Drawing "chosen" first
          would land in a large cluster more often and so prefer common answers a little.)

Ties between clusters of equal size are broken by the seeded `rng`; within a cluster the first answer is taken
(the answers are i.i.d. samples, so the first is as random as any).
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Sequence

RULES = ("modal", "divpo", "random")
NO_CONTRAST = "every answer in one cluster"
NO_MODE = "no answer more common than another"


def _first(clusters: Sequence[int], cluster: int) -> int:
    return clusters.index(cluster)


def modal_pair(clusters: Sequence[int], rng: random.Random) -> tuple[int, int] | str:
    sizes = Counter(clusters)
    if len(sizes) < 2:
        return NO_CONTRAST
    if len(set(sizes.values())) < 2:
        return NO_MODE
    largest = [c for c in sizes if sizes[c] == max(sizes.values())]
    chosen = rng.choice(sorted(largest))
    rest = {c: n for c, n in sizes.items() if c != chosen}
    rejected = rng.choice(sorted(c for c in rest if rest[c] == min(rest.values())))
    return _first(clusters, chosen), _first(clusters, rejected)


def random_pair(clusters: Sequence[int], rng: random.Random) -> tuple[int, int] | str:
    pairs = [(i, j) for i in range(len(clusters)) for j in range(i + 1, len(clusters)) if clusters[i] != clusters[j]]
    if not pairs:
        return NO_CONTRAST
    i, j = rng.choice(pairs)
    return (i, j) if rng.random() < 0.5 else (j, i)


def quality_pools(quality: Sequence[float | None], judged: bool, rho: float) -> tuple[list[int], list[int]]:
    """(above, below) the quality threshold; judged: quality is 1.0 correct / 0.0 incorrect."""
    valid = [i for i, q in enumerate(quality) if q is not None]
    if judged:
        return [i for i in valid if quality[i] == 1.0], [i for i in valid if quality[i] == 0.0]
    if not valid:
        return [], []
    top, bottom = max(quality[i] for i in valid), min(quality[i] for i in valid)
    if top == bottom:
        return valid, []
    threshold = top - rho * (top - bottom)
    return [i for i in valid if quality[i] >= threshold], [i for i in valid if quality[i] < threshold]


def divpo_pair(clusters: Sequence[int], quality: Sequence[float | None], *, judged: bool,
               rho: float) -> tuple[int, int] | str:
    sizes = Counter(clusters)
    if len(sizes) < 2:
        return NO_CONTRAST
    above, below = quality_pools(quality, judged, rho)
    if not above or not below:
        return f"no answer {'above' if not above else 'below'} the quality threshold"
    chosen = min(above, key=lambda i: (sizes[clusters[i]], -quality[i], i))
    rejected = min(below, key=lambda i: (-sizes[clusters[i]], quality[i], i))
    if clusters[chosen] == clusters[rejected]:
        return "the rarest good and the most common bad answer are one cluster"
    return chosen, rejected


def pick_pair(rule: str, clusters: Sequence[int], quality: Sequence[float | None] | None = None, *,
              rng: random.Random, judged: bool = False, rho: float = 0.5) -> tuple[int, int] | str:
    """(chosen, rejected) answer indices of one prompt by `rule`, or why it gets no pair (module docstring)."""
    clusters = list(clusters)
    if rule == "modal":
        return modal_pair(clusters, rng)
    if rule == "random":
        return random_pair(clusters, rng)
    if rule == "divpo":
        if quality is None or len(quality) != len(clusters):
            raise ValueError("divpo needs one quality value per answer")
        return divpo_pair(clusters, list(quality), judged=judged, rho=rho)
    raise ValueError(f"unknown pair rule {rule!r}; valid: {', '.join(RULES)}")
