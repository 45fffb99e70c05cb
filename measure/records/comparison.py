"""compare.json as typed records (measure compare; measure.analysis.compare.compare_stages): one reader, one writer.

    Comparison      the file
      StageSummary    "per_stage" (one ClustererStats per clusterer)
      Transition      one row of "transitions" (one clusterer between two consecutive stages)
      Verdict         "verdict", its rows VerdictRow
      Sensitivity     "sensitivity": SensitivityByN / SensitivityByThreshold / SensitivityByLength of ScrAtK /
                      ScrAtThreshold / ScrAtLength points, PrefixSource per stage of the length curves
      HolmFamily      "holm"; Agreement: one row of "agreement" (two clusterers on one stage)

A transition written before `wilcoxon_method` existed reads those keys as None and is written back without
them (measure.common.jsonrecords).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from measure.common.io import read_json
from measure.common.jsonrecords import JsonRecord, fields_to_json, plain_fields, record_from_json
from measure.records.results import Table


@dataclass(frozen=True)
class ClustererStats:
    """One stage under one clusterer."""
    scr: float
    scr_ci: list[float] | None
    scr_ci_method: str | None
    mean_clusters: float
    n_single: int
    count_hist: dict[str, int]     # str(clusters per question) -> questions


@dataclass(frozen=True)
class StageSummary(JsonRecord):
    path: str
    n_questions: int
    n_samples: int | None
    accuracy: float | None
    n_labelled: int
    n_ambiguous: int
    token_entropy_mean: float | None
    auroc: Table                    # from the stage's report.json
    auroc_single_cluster: Table
    clusterers: dict[str, ClustererStats]
    homogeneity_mean: dict[str, float] | None = None   # measure key -> mean over its questions; None: not recorded


@dataclass(frozen=True)
class Transition(JsonRecord):
    """One clusterer between two consecutive stages (measure.analysis.paired_stats.paired_tests + Holm)."""
    from_: str = field(metadata={"key": "from"})
    to: str
    clusterer: str
    n: int
    scr_from: float
    scr_to: float
    scr_diff: float                      # SCR(to) - SCR(from)
    scr_diff_ci: list[float] | None
    scr_diff_ci_method: str | None
    b_single_to_multi: int
    c_multi_to_single: int
    mcnemar_table: list[list[int]]
    mcnemar_p: float
    mean_clusters_diff: float
    wilcoxon_stat: float | None
    wilcoxon_p: float
    wilcoxon_method: str | None
    wilcoxon_n_nonzero: int | None
    rank_biserial: float | None
    mcnemar_p_holm: float
    wilcoxon_p_holm: float
    # the smallest SCR rise this n detects with 80% power at alpha / (Holm family size), given the observed
    # single -> multi rate b / n (measure.analysis.power); None: not even every question moving up would do
    min_detectable_rise: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.from_, self.to, self.clusterer


@dataclass(frozen=True)
class MeasureTransition(JsonRecord):
    """One continuous homogeneity measure between two runs (measure.analysis.measure_tests + Holm)."""
    from_: str = field(metadata={"key": "from"})
    to: str
    measure: str                         # a measure key, e.g. "agreement@jaccard" (higher = more homogeneous)
    n: int                               # questions with a value in both runs
    mean_from: float
    mean_to: float
    mean_diff: float                     # mean of (to - from) over those questions
    mean_diff_ci: list[float] | None     # paired percentile bootstrap over questions; None: bootstrap=0
    mean_diff_ci_method: str | None
    wilcoxon_stat: float | None
    wilcoxon_p: float
    wilcoxon_method: str | None
    wilcoxon_n_nonzero: int
    rank_biserial: float
    wilcoxon_p_holm: float


@dataclass(frozen=True)
class VerdictRow(JsonRecord):
    """One transition under measure.analysis.paired_stats.VERDICT_RULE."""
    from_: str = field(metadata={"key": "from"})
    to: str
    agree: list[str]                     # clusterers with a significant SCR rise
    disagree: list[str]
    majority: bool


@dataclass(frozen=True)
class Verdict(JsonRecord):
    """measure.analysis.paired_stats.verdict: the first transition with a majority, or none (all None)."""
    transition: str | None = field(metadata={"key": "transition"})    # "base -> sft"
    from_: str | None = field(metadata={"key": "from"})
    to: str | None
    agree: list[str]
    disagree: list[str]
    alpha: float
    text: str
    rule: str
    per_transition: list[VerdictRow]
    measures_text: str | None = None     # the continuous measures' line (measure.analysis.measure_tests.MEASURE_RULE)
    measures_rule: str | None = None


@dataclass(frozen=True)
class ScrAtK(JsonRecord):
    k: int                               # the first k samples of each question
    scr: float


@dataclass(frozen=True)
class ScrAtThreshold(JsonRecord):
    threshold: float
    scr: float


@dataclass(frozen=True)
class SensitivityByN(JsonRecord):
    approximate: bool                    # first k ids of an agglomerative clustering
    stages: dict[str, list[ScrAtK]]


@dataclass(frozen=True)
class SensitivityByThreshold(JsonRecord):
    thresholds: list[float]
    stages: dict[str, list[ScrAtThreshold]]   # stages without samples.jsonl are missing


@dataclass(frozen=True)
class ScrAtLength(JsonRecord):
    k: int                               # answer length: the first k token ids of every sample
    scr: float
    agreement: float | None              # mean pairwise agreement over questions (None: no question has 2 samples)


@dataclass(frozen=True)
class SensitivityByLength(JsonRecord):
    stages: dict[str, list[ScrAtLength]]      # stages whose curve was skipped (see the notes) are missing


@dataclass(frozen=True)
class PrefixSource(JsonRecord):
    """How one stage's prefix texts were made (measure.analysis.length_sensitivity): from what, by what rule."""
    tokenizer: str                       # where the tokenizer was loaded from (the run's recorded model)
    eos_ids: list[int]
    stop: list[str]
    rule: str
    max_new_tokens: int
    lengths: list[int]
    texts_checked: int                   # stored sample texts reproduced exactly from their full token ids


@dataclass(frozen=True)
class Sensitivity(JsonRecord):
    """measure.analysis.sensitivity.sensitivity: SCR vs N per clusterer, SCR vs threshold per clusterer name,
    SCR and pairwise agreement vs answer length per clusterer (with each stage's PrefixSource). A file
    written before the length curves existed reads them as empty and is written back without them."""
    n_samples: dict[str, SensitivityByN]
    threshold: dict[str, SensitivityByThreshold]
    length: dict[str, SensitivityByLength] = field(default_factory=dict)
    length_sources: dict[str, PrefixSource] = field(default_factory=dict)


def transition_from_json(obj: Mapping[str, Any]) -> Transition:
    return record_from_json(Transition, obj)


def verdict_from_json(obj: Mapping[str, Any]) -> Verdict:
    return record_from_json(Verdict, obj, per_transition=[record_from_json(VerdictRow, r)
                                                         for r in obj.get("per_transition") or []])


def sensitivity_from_json(obj: Mapping[str, Any]) -> Sensitivity:
    by_n = {c: record_from_json(SensitivityByN, v, stages={s: [record_from_json(ScrAtK, p) for p in pts]
                                                           for s, pts in (v.get("stages") or {}).items()})
            for c, v in (obj.get("n_samples") or {}).items()}
    by_t = {c: record_from_json(SensitivityByThreshold, v, stages={s: [record_from_json(ScrAtThreshold, p) for p in pts]
                                                                   for s, pts in (v.get("stages") or {}).items()})
            for c, v in (obj.get("threshold") or {}).items()}
    by_k = {c: record_from_json(SensitivityByLength, v, stages={s: [record_from_json(ScrAtLength, p) for p in pts]
                                                                for s, pts in (v.get("stages") or {}).items()})
            for c, v in (obj.get("length") or {}).items()}
    sources = {s: record_from_json(PrefixSource, v) for s, v in (obj.get("length_sources") or {}).items()}
    return record_from_json(Sensitivity, obj, n_samples=by_n, threshold=by_t, length=by_k, length_sources=sources)


@dataclass(frozen=True)
class HolmFamily(JsonRecord):
    """"holm": the one multiple-testing family of the comparison."""
    method: str
    family_size: int
    alpha: float
    family: str


@dataclass(frozen=True)
class Agreement(JsonRecord):
    """Two clusterers on one stage (measure.analysis.paired_stats.pair_agreement): one row of "agreement"."""
    a: str
    b: str
    kappa: float | None                 # Cohen's kappa of the single-cluster indicator (None: undefined)
    kappa_note: str | None
    percent_agreement: float
    n_single_a: int
    n_single_b: int
    n_single_both: int
    single_overlap: float | None
    ari_mean: float | None              # mean adjusted Rand index over questions
    n_ari: int


@dataclass(frozen=True)
class Comparison:
    """compare.json; out_dir (where it was written) is not part of the file."""
    benchmark: str | None
    stages: list[str]
    n_questions: int
    clusterers: list[str]
    per_stage: dict[str, StageSummary]
    transitions: list[Transition]
    holm: HolmFamily
    verdict: Verdict
    agreement: dict[str, list[Agreement]]          # stage -> one row per pair of clusterers
    sensitivity: Sensitivity
    notes: list[str]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    measure_transitions: list[MeasureTransition] | None = None   # None: a comparison from before they existed
    out_dir: str | None = None


def comparison_from_json(obj: Mapping[str, Any], out_dir: str | None = None) -> Comparison:
    per_stage = {s: record_from_json(StageSummary, st, clusterers={c: ClustererStats(**v) for c, v in st["clusterers"].items()})
                 for s, st in obj["per_stage"].items()}
    return Comparison(**{**plain_fields(Comparison, obj), "per_stage": per_stage,
                         "transitions": [transition_from_json(t) for t in obj.get("transitions") or []],
                         "measure_transitions": None if "measure_transitions" not in obj else
                                                [record_from_json(MeasureTransition, t) for t in obj["measure_transitions"]],
                         "verdict": verdict_from_json(obj.get("verdict") or {}),
                         "holm": record_from_json(HolmFamily, obj.get("holm") or {}),
                         "agreement": {s: [record_from_json(Agreement, r) for r in rows]
                                       for s, rows in (obj.get("agreement") or {}).items()},
                         "sensitivity": sensitivity_from_json(obj.get("sensitivity") or {})}, out_dir=out_dir)


def comparison_to_json(result: Comparison) -> dict[str, Any]:
    out = fields_to_json(result)
    if result.measure_transitions is None:   # an older comparison is written back as it was read
        del out["measure_transitions"]
    return out


def read_comparison(directory: str | os.PathLike) -> Comparison:
    return comparison_from_json(read_json(Path(directory) / "compare.json"), str(directory))
