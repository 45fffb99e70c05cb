"""Comparisons of PAIRS of runs instead of a sequence: which run each run is tested against.

A run list (measure.analysis.compare.RUN_LIST) may give a run the label of the run it is to be compared with,
`{"label": "modal", "path": "...", "vs": "sft"}`; a list where any run does is compared in pairs -- each run with
a `vs` against that run, on the same questions, every test of every pair in one Holm family, and a verdict per
pair (measure.analysis.paired_stats.PAIRS_VERDICT_RULE) -- instead of consecutive runs. A training chain whose
stages branch from one parent lists each stage against its parent (train/layout.py); the library knows no chain.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from measure.common.errors import UsageError
from measure.common.io import read_json


def check_pairs(pairs: Sequence[Sequence[str]], labels: Sequence[str]) -> list[tuple[str, str]]:
    """(earlier, later) label pairs: each names two different runs of `labels`, no pair twice."""
    out = [tuple(p) for p in pairs]
    if not out:
        raise UsageError("pairs: give at least one pair of runs to compare")
    for p in out:
        if len(p) != 2 or p[0] == p[1] or not set(p) <= set(labels):
            raise UsageError(f"pairs: {list(p)} is not two different runs of {list(labels)}")
    if len(set(out)) != len(out):
        raise UsageError(f"pairs: a pair is listed twice in {[list(p) for p in out]}")
    return out


def steps(stages: Sequence, pairs: Sequence[tuple[str, str]] | None) -> list[tuple]:
    """The (earlier, later) runs the comparison tests: consecutive runs, or the labelled pairs."""
    if pairs is None:
        return list(zip(stages, stages[1:]))
    by_label = {st.label: st for st in stages}
    return [(by_label[a], by_label[b]) for a, b in pairs]


def read_run_pairs(path: Path) -> dict[str, list[tuple[str, str]] | None]:
    """list name -> the (vs label, label) pairs its runs name in a run-list file (None: no run names one, a
    sequence). The file's shape is checked by its one reader, measure.analysis.compare.read_run_list."""
    out: dict[str, list[tuple[str, str]] | None] = {}
    for name, rows in read_json(path)["runs"].items():
        labels = [r["label"] for r in rows]
        for r in rows:
            if "vs" in r and r["vs"] not in labels:
                raise UsageError(f"{path}: run {r['label']!r} of {name!r} is compared with vs={r['vs']!r}, which is "
                                 f"not a label of that list; valid choices: {', '.join(labels)}")
        out[name] = [(r["vs"], r["label"]) for r in rows if "vs" in r] or None
    return out
