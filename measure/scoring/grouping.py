"""Leaf helpers shared by the clusterers (measure/scoring/cluster.py, jaccard.py) and the NLI model (measure/scoring/nli.py)."""
from __future__ import annotations

from typing import Any, Callable, Sequence


def ids_from_keys(keys: Sequence[Any]) -> list[int]:
    """Equal keys -> equal ids, numbered 0..k-1 in order of first appearance."""
    seen: dict[Any, int] = {}
    return [seen.setdefault(k, len(seen)) for k in keys]


def greedy_cluster(n: int, equivalent: Callable[[int, int], bool]) -> list[int]:
    """Leader clustering: item i joins the first existing cluster whose first member j has
    equivalent(i, j); otherwise it founds a new cluster. Only leaders are ever compared against."""
    leaders: list[int] = []
    ids: list[int] = []
    for i in range(n):
        for cid, leader in enumerate(leaders):
            if equivalent(i, leader):
                ids.append(cid)
                break
        else:
            ids.append(len(leaders))
            leaders.append(i)
    return ids


def dedupe(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """(unique texts in order, index into them per text): identical texts are always one meaning."""
    index = ids_from_keys(texts)
    unique = list(dict.fromkeys(texts))
    return unique, index


def default_device() -> str:
    """CUDA when visible, else CPU: where the embedding and NLI models run unless pinned."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"
