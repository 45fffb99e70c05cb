"""Stage-comparison sensitivity, from saved outputs only (no re-sampling):
- SCR vs number of samples k = 2..N from the saved assignments (first k ids of each question, counted
  distinct). Exact for the leader/partition clusterers (exact, numeric, jaccard, nli): a sample's cluster
  depends only on earlier samples. For embedding (average-linkage agglomerative) the first k ids of a
  full clustering approximate a re-clustering of k samples; marked "approximate" in the output.
- SCR vs threshold (jaccard 0.2-0.6; embedding 0.75-0.95 only when an embedding clusterer was used in
  every stage, since it loads a model), re-clustering the texts of samples.jsonl.
- SCR and pairwise agreement vs answer length (10, 20, 40 tokens and the run's max_new_tokens), re-clustering
  prefixes of the samples' stored token ids: measure.analysis.length_sensitivity.
For both leader and average-linkage clustering, SCR cannot fall when the threshold is lowered (one
cluster <=> every sample is similar enough to the first one / the last merge is below the cut).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from measure.scoring.cluster import make_clusterer
from measure.common.errors import UsageError
from measure.analysis.length_sensitivity import DEFAULT_LENGTHS, base_name, length_sensitivity
from measure.analysis.measured_run import MeasuredRun, run_samples
from measure.scoring.metrics import scr
from measure.records.results import Report
from measure.records.comparison import (ScrAtK, ScrAtThreshold, Sensitivity, SensitivityByN,
                                        SensitivityByThreshold)


THRESHOLD_GRIDS = {"jaccard": (0.2, 0.3, 0.4, 0.5, 0.6), "embedding": (0.75, 0.8, 0.85, 0.9, 0.95)}
PREFIX_EXACT = ("exact", "numeric", "jaccard", "nli")   # greedy/partition: first-k relabel is exact


def scr_by_n(assignments: Sequence[Sequence[int]]) -> list[ScrAtK]:
    """SCR using only the first k samples of each question, k = 2..min N (count distinct first-k ids)."""
    n = min(len(a) for a in assignments)
    return [ScrAtK(k=k, scr=float(np.mean([len(set(a[:k])) == 1 for a in assignments]))) for k in range(2, n + 1)]


def scr_by_threshold(items: list[tuple[str, list[str]]], name: str, thresholds: Sequence[float],
                     embedding_model: str | None = None) -> list[ScrAtThreshold]:
    """Re-cluster saved sample texts at each threshold (no re-sampling)."""
    out = []
    for t in thresholds:
        ids = make_clusterer({"name": name, "threshold": t}, embedding_model=embedding_model).cluster_many(items)
        out.append(ScrAtThreshold(threshold=t, scr=scr([len(set(x)) for x in ids])))
    return out


def sample_items(stage: MeasuredRun) -> list[tuple[str, list[str]]] | None:
    rows = run_samples(stage)
    return None if rows is None else [(qs.question.text, [s.text for s in qs.samples]) for qs in rows]


def embedding_model_of(report: Report | None) -> str | None:
    return report.settings.embedding_model if report is not None else None


def sensitivity(stages: list[MeasuredRun], clusterers: list[str], names: Sequence[str] | None,
                lengths: Sequence[int] = DEFAULT_LENGTHS) -> tuple[Sensitivity, list[str]]:
    """Every curve of the module docstring; notes say what was approximated or skipped, and why."""
    notes: list[str] = []
    by_n = {c: SensitivityByN(approximate=base_name(c) not in PREFIX_EXACT,
                              stages={st.label: scr_by_n([r.clusters[c] for r in st.records]) for st in stages})
            for c in clusterers if all(r.clusters.get(c) for st in stages for r in st.records)}
    for c, v in by_n.items():
        if v.approximate:
            notes.append(f"SCR vs N for {c!r} takes the first k ids of the full clustering (agglomerative): "
                         "an approximation of re-clustering k samples")
    if names is None:
        names = ["jaccard"] + (["embedding"] if any(base_name(c) == "embedding" for c in clusterers) else [])
    for name in names:
        if name not in THRESHOLD_GRIDS:
            raise UsageError(f"threshold sensitivity: unknown clusterer {name!r}; valid choices: {', '.join(THRESHOLD_GRIDS)}")
    by_t = {name: SensitivityByThreshold(thresholds=list(THRESHOLD_GRIDS[name]), stages={}) for name in names}
    for st in stages if names else []:
        items = sample_items(st)
        if items is None:
            notes.append(f"no samples.jsonl in {st.path}: threshold sensitivity skipped for stage {st.label!r}")
            continue
        for name in names:
            by_t[name].stages[st.label] = scr_by_threshold(items, name, THRESHOLD_GRIDS[name], embedding_model_of(st.report))
    by_length, sources, length_notes = length_sensitivity(stages, clusterers, lengths)
    return Sensitivity(n_samples=by_n, threshold=by_t, length=by_length, length_sources=sources), notes + length_notes
