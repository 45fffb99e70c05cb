"""Typed results, one record per output file, each with ONE reader (from its on-disk JSON) and ONE writer
(to it), the house style of measure.records.records: consumers use attributes, the JSON stays at the edges.

    Report          report.json   (measure run / measure score; measure.scoring.report.write_report)
    ReportSettings  its "settings" block: the quantities code reads, typed; the block itself verbatim
    Comparison      compare.json  (measure.records.comparison)
    CascadeResult   cascade.json  (measure.records.cascade_result)

Readers accept every file the toolkit writes today, older spellings included: a settings block may name
N `n_samples` or `N` and T `temperature` or `T` (today's files have both), and list its clusterers in
the order of the report's clusterer labels instead of mapping them; that guessing lives in
`settings_from_json` only. Writers write exactly today's keys, in today's order: a file read and written
back is byte-identical. The records carry no scalar/array conversions: values are JSON types (or numpy
scalars on the way out, which measure.common.io.to_jsonable turns into JSON on write). The inner records'
generic reader and writer: measure.common.jsonrecords.
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
    homogeneity: Table | None               # measure.scoring.homogeneity.summarize_homogeneity; None: not recorded
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
_OPTIONAL = ("timing", "judgements", "homogeneity")     # written only when recorded


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
