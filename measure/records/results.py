"""Typed results, one record per output file, each with ONE reader (from its on-disk JSON) and ONE writer
(to it), the house style of measure.records.records: consumers use attributes, the JSON stays at the edges.

    Report          report.json   (measure run / measure score; measure.scoring.report.write_report)
    ReportSettings  its "settings" block: the quantities code reads, typed; the block itself verbatim
    Comparison      compare.json  (measure compare; measure.analysis.compare.compare_stages)
      Transition      one row of "transitions" (one clusterer between two consecutive stages)
      Verdict         "verdict", its rows VerdictRow
      Sensitivity     "sensitivity": SensitivityByN / SensitivityByThreshold of ScrAtK / ScrAtThreshold points
    CascadeResult   cascade.json  (measure cascade; measure.analysis.cascade.run_cascade)
      CascadeCurve    "cascade" and each of "baselines": CoveragePoint rows ("at_coverage", "curve")

The inner records (subclasses of InnerRecord) are read by `inner_from_json` and written by `inner_to_json`,
one pair for all of them: a field is the JSON key of its name (or of its metadata "key" where the JSON name
is no identifier: "from" -> `from_`), nested records are converted by the reader's `nested` argument, and
the keys an older file lacks (a transition written before `wilcoxon_method` existed, a cascade curve
without the baselines' aurc/prr/auroc) are remembered in `absent` and not written back.

Readers accept every file the toolkit writes today, older spellings included: a settings block may name
N `n_samples` or `N` and T `temperature` or `T` (today's files have both), and list its clusterers in
the order of the report's clusterer labels instead of mapping them; that guessing lives in
`settings_from_json` only. Writers write exactly today's keys, in today's order: a file read and written
back is byte-identical. The three records carry no scalar/array conversions: values are JSON types
(or numpy scalars on the way out, which measure.common.io.to_jsonable turns into JSON on write).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from measure.common.errors import UsageError
from measure.common.io import read_json, to_jsonable

Table = dict[str, Any]   # signal key or clusterer label -> value (the report's per-signal / per-clusterer tables)


# ---------------------------------------------------------------- report.json

@dataclass(frozen=True)
class ReportSettings:
    n_samples: int | str | None     # samples per question ("3-5" when a scored file's questions differ)
    temperature: float | None
    top_p: float | None
    max_new_tokens: int | None
    clusterers: dict[str, Any]      # clusterer label -> its settings (Clusterer.settings())
    judge_name: str | None
    embedding_model: str | None
    ambiguous: str | None           # the policy for ambiguous judgements
    recorded: dict[str, Any] = field(repr=False)   # the block verbatim, in file order: what the writer writes

    def get(self, key: str, default: Any = None) -> Any:
        """Any other recorded setting (model, benchmark, prompt_format, stage_hash, ...)."""
        return self.recorded.get(key, default)


def settings_from_json(obj: Mapping[str, Any] | None, labels: list[str]) -> ReportSettings:
    """The one reader of a settings block (see the module docstring for the spellings it accepts)."""
    st = dict(obj or {})
    first = lambda *keys: next((st[k] for k in keys if st.get(k) is not None), None)  # noqa: E731
    spec = st.get("clusterers")
    if isinstance(spec, list) and len(spec) == len(labels):
        spec = dict(zip(labels, spec))
    judge = st.get("judge")
    return ReportSettings(n_samples=first("n_samples", "N"), temperature=first("temperature", "T"),
                          top_p=st.get("top_p"), max_new_tokens=st.get("max_new_tokens"),
                          clusterers=dict(spec) if isinstance(spec, dict) else {},
                          judge_name=judge.get("name") if isinstance(judge, dict) else judge,
                          embedding_model=st.get("embedding_model"), ambiguous=st.get("ambiguous"), recorded=st)


@dataclass(frozen=True)
class Report:
    """report.json; the attribute order is the file's key order (measure.scoring.metrics documents each metric)."""
    n_questions: int
    n_samples: int                          # samples over all questions
    samples_per_question: dict[str, int]    # {"min": ..., "max": ...}
    settings: ReportSettings
    scr: Table                              # clusterer label -> single-cluster rate
    scr_ci: Table
    mean_clusters: Table
    alignment_tax_index: Table
    n_single_cluster: Table
    accuracy: float | None
    accuracy_ci: list[float] | None
    n_labelled: int
    n_correct: int
    n_incorrect: int
    n_ambiguous: int
    n_unlabelled: int
    coverages: list[float]
    scr_ci_method: str | None
    accuracy_ci_method: str | None
    auroc_ci_method: str | None
    auroc: Table                            # signal key -> AUROC
    auroc_ci: Table
    auroc_n: Table
    cohens_d: Table
    prr: Table
    aurc: Table
    accuracy_at_coverage: Table             # signal key -> {str(coverage): accuracy}
    auroc_single_cluster: Table             # clusterer label -> signal key -> AUROC
    auroc_single_cluster_n: Table           # clusterer label -> {"n", "n_incorrect"}
    single_cluster_constant: Table          # clusterer label -> [signal key]
    skipped_signals: dict[str, str]         # signal key -> why no question has it
    plots: dict[str, str | None]            # file -> None (drawn) or why not
    timing: dict[str, Any] | None           # measure.pipeline.timing_block; None: not recorded
    judgements: dict[str, Any] | None       # measure.scoring.correctness.summarize_judgements; None: not recorded
    extra: dict[str, Any]                   # any other top-level keys, in file order
    provenance: dict[str, Any]

    @property
    def clusterer_labels(self) -> list[str]:
        return list(self.scr)


_TABLES = {"scr", "scr_ci", "mean_clusters", "alignment_tax_index", "n_single_cluster", "auroc", "auroc_ci",
           "auroc_n", "cohens_d", "prr", "aurc", "accuracy_at_coverage", "auroc_single_cluster",
           "auroc_single_cluster_n", "single_cluster_constant", "skipped_signals", "plots", "samples_per_question",
           "provenance"}
_OPTIONAL = ("timing", "judgements")     # written only when recorded


def report_from_json(obj: Mapping[str, Any]) -> Report:
    """The one reader of report.json content (a key an older file lacks reads as empty / None)."""
    names = [f.name for f in fields(Report) if f.name not in ("settings", "extra")]
    labels = list(obj.get("scr") or {})
    values = {n: obj.get(n, {} if n in _TABLES else [] if n == "coverages" else None) for n in names}
    extra = {k: v for k, v in obj.items() if k not in names and k != "settings"}
    return Report(**values, settings=settings_from_json(obj.get("settings"), labels), extra=extra)


def report_to_json(report: Report) -> dict[str, Any]:
    """The one writer: report.json's content, keys in today's order."""
    out: dict[str, Any] = {}
    for f in fields(Report):
        value = getattr(report, f.name)
        if f.name == "settings":
            out["settings"] = value.recorded
        elif f.name == "extra":
            out.update(value)
        elif not (f.name in _OPTIONAL and value is None):
            out[f.name] = value
    return to_jsonable(out)


def read_report(directory: str | os.PathLike) -> Report:
    """<directory>/report.json as a Report; a missing file is a UsageError naming the command that makes it."""
    path = Path(directory) / "report.json"
    if not path.exists():
        raise UsageError(f"{path}: no report.json (run `python -m measure run` or `measure score` first)")
    return report_from_json(read_json(path))


# ---------------------------------------------------------------- inner records (one reader, one writer)

@dataclass(frozen=True)
class InnerRecord:
    """A typed object inside a result file; `absent`: the JSON keys its file lacks (read as None, not written)."""
    absent: frozenset[str] = field(default=frozenset(), kw_only=True, repr=False, compare=False)


def _key(f) -> str:
    return f.metadata.get("key", f.name)


def _record_fields(cls) -> list:
    return [f for f in fields(cls) if f.name != "absent"]


def inner_from_json(cls, obj: Mapping[str, Any], **nested: Any):
    """The one reader of an inner record: each field from its JSON key (None where the file lacks it,
    remembered in `absent`); `nested` gives the already-typed values of nested fields."""
    values = {f.name: nested[f.name] if f.name in nested else obj.get(_key(f)) for f in _record_fields(cls)}
    return cls(**values, absent=frozenset(_key(f) for f in _record_fields(cls) if _key(f) not in obj))


def inner_to_json(record: InnerRecord) -> dict[str, Any]:
    """The one writer of an inner record: its JSON keys in field order, absent keys left out."""
    return {_key(f): _json_value(getattr(record, f.name)) for f in _record_fields(record)
            if _key(f) not in record.absent}


def _json_value(value: Any) -> Any:
    if isinstance(value, InnerRecord):
        return inner_to_json(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return to_jsonable(value)


# ---------------------------------------------------------------- compare.json

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
class StageSummary:
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


@dataclass(frozen=True)
class Transition(InnerRecord):
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

    @property
    def key(self) -> tuple[str, str, str]:
        return self.from_, self.to, self.clusterer


@dataclass(frozen=True)
class VerdictRow(InnerRecord):
    """One transition under measure.analysis.paired_stats.VERDICT_RULE."""
    from_: str = field(metadata={"key": "from"})
    to: str
    agree: list[str]                     # clusterers with a significant SCR rise
    disagree: list[str]
    majority: bool


@dataclass(frozen=True)
class Verdict(InnerRecord):
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


@dataclass(frozen=True)
class ScrAtK(InnerRecord):
    k: int                               # the first k samples of each question
    scr: float


@dataclass(frozen=True)
class ScrAtThreshold(InnerRecord):
    threshold: float
    scr: float


@dataclass(frozen=True)
class SensitivityByN(InnerRecord):
    approximate: bool                    # first k ids of an agglomerative clustering
    stages: dict[str, list[ScrAtK]]


@dataclass(frozen=True)
class SensitivityByThreshold(InnerRecord):
    thresholds: list[float]
    stages: dict[str, list[ScrAtThreshold]]   # stages without samples.jsonl are missing


@dataclass(frozen=True)
class Sensitivity(InnerRecord):
    """measure.analysis.sensitivity.sensitivity: SCR vs N per clusterer, SCR vs threshold per clusterer name."""
    n_samples: dict[str, SensitivityByN]
    threshold: dict[str, SensitivityByThreshold]


def transition_from_json(obj: Mapping[str, Any]) -> Transition:
    return inner_from_json(Transition, obj)


def verdict_from_json(obj: Mapping[str, Any]) -> Verdict:
    return inner_from_json(Verdict, obj, per_transition=[inner_from_json(VerdictRow, r)
                                                         for r in obj.get("per_transition") or []])


def sensitivity_from_json(obj: Mapping[str, Any]) -> Sensitivity:
    by_n = {c: inner_from_json(SensitivityByN, v, stages={s: [inner_from_json(ScrAtK, p) for p in pts]
                                                           for s, pts in (v.get("stages") or {}).items()})
            for c, v in (obj.get("n_samples") or {}).items()}
    by_t = {c: inner_from_json(SensitivityByThreshold, v, stages={s: [inner_from_json(ScrAtThreshold, p) for p in pts]
                                                                   for s, pts in (v.get("stages") or {}).items()})
            for c, v in (obj.get("threshold") or {}).items()}
    return inner_from_json(Sensitivity, obj, n_samples=by_n, threshold=by_t)


@dataclass(frozen=True)
class Comparison:
    """compare.json; out_dir (where it was written) is not part of the file."""
    benchmark: str | None
    stages: list[str]
    n_questions: int
    clusterers: list[str]
    per_stage: dict[str, StageSummary]
    transitions: list[Transition]
    holm: dict[str, Any]
    verdict: Verdict
    agreement: dict[str, list[dict[str, Any]]]     # stage -> measure.analysis.paired_stats.pair_agreement rows
    sensitivity: Sensitivity
    notes: list[str]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    out_dir: str | None = None


def comparison_from_json(obj: Mapping[str, Any], out_dir: str | None = None) -> Comparison:
    per_stage = {s: StageSummary(**{**st, "clusterers": {c: ClustererStats(**v) for c, v in st["clusterers"].items()}})
                 for s, st in obj["per_stage"].items()}
    return Comparison(**{**_plain(Comparison, obj), "per_stage": per_stage,
                         "transitions": [transition_from_json(t) for t in obj.get("transitions") or []],
                         "verdict": verdict_from_json(obj.get("verdict") or {}),
                         "sensitivity": sensitivity_from_json(obj.get("sensitivity") or {})}, out_dir=out_dir)


def comparison_to_json(result: Comparison) -> dict[str, Any]:
    return _to_json(result)


def read_comparison(directory: str | os.PathLike) -> Comparison:
    return comparison_from_json(read_json(Path(directory) / "compare.json"), str(directory))


# ---------------------------------------------------------------- cascade.json

@dataclass(frozen=True)
class CoveragePoint(InnerRecord):
    """One target coverage of a method, averaged over folds (measure.analysis.cascade.combine)."""
    target: float
    coverage: float | None                     # realized on the evaluation split
    accuracy: float | None
    relative_cost: float | None
    thresholds: list[dict[str, float | None]]  # per fold: signal -> threshold (None: the signal is off)


@dataclass(frozen=True)
class CascadeCurve(InnerRecord):
    """The cascade or one single-signal baseline; aurc/prr/auroc are the baselines' only (absent for the cascade)."""
    at_coverage: dict[str, CoveragePoint]      # str(target) -> the curve's point, for the reported targets
    curve: list[CoveragePoint]
    aurc_grid: float | None
    aurc: float | None = None
    prr: float | None = None
    auroc: float | None = None


def curve_from_json(obj: Mapping[str, Any]) -> CascadeCurve:
    point = lambda p: inner_from_json(CoveragePoint, p)  # noqa: E731
    return inner_from_json(CascadeCurve, obj, at_coverage={c: point(p) for c, p in (obj.get("at_coverage") or {}).items()},
                           curve=[point(p) for p in obj.get("curve") or []])


@dataclass(frozen=True)
class CascadeResult:
    """cascade.json (measure.analysis.cascade.CASCADE_DEFINITION); out_dir is not part of the file."""
    source: str
    definition: str
    signals: list[str]                       # cheapest first
    costs: dict[str, float]                  # signal -> standalone cost
    cost_source: str
    cost_accounting: dict[str, Any]          # measure.analysis.cascade_costs.CostModel.accounting
    n_questions: int
    n_used: int
    excluded: dict[str, int]
    split: dict[str, Any]
    base_accuracy: float | None
    targets: list[float]
    cascade: CascadeCurve                    # measure.analysis.cascade.combine
    baselines: dict[str, CascadeCurve]       # signal -> the same, with aurc/prr/auroc
    notes: list[str]
    provenance: dict[str, Any]
    out_dir: str | None = None


def cascade_from_json(obj: Mapping[str, Any], out_dir: str | None = None) -> CascadeResult:
    return CascadeResult(**{**_plain(CascadeResult, obj), "cascade": curve_from_json(obj.get("cascade") or {}),
                            "baselines": {s: curve_from_json(e) for s, e in (obj.get("baselines") or {}).items()}},
                         out_dir=out_dir)


def cascade_to_json(result: CascadeResult) -> dict[str, Any]:
    return _to_json(result)


def read_cascade(directory: str | os.PathLike) -> CascadeResult:
    return cascade_from_json(read_json(Path(directory) / "cascade.json"), str(directory))


# ---------------------------------------------------------------- shared

def _plain(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The file's value of every field of `cls` but out_dir (a field a file lacks reads as None)."""
    return {f.name: obj.get(f.name) for f in fields(cls) if f.name != "out_dir"}


def _to_json(record) -> dict[str, Any]:
    """Every field but out_dir, in field order (= the file's key order), nested records as objects."""
    return {f.name: _json_value(getattr(record, f.name)) for f in fields(record) if f.name != "out_dir"}
