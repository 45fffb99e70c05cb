"""cascade.json as typed records (measure cascade; measure.analysis.cascade.run_cascade): one reader, one writer.

    CascadeResult   the file
      CascadeCurve    "cascade" and each of "baselines": CoveragePoint rows ("at_coverage", "curve");
                      aurc/prr/auroc are the baselines' only (absent for the cascade, and not written)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from measure.common.io import read_json
from measure.common.jsonrecords import JsonRecord, fields_to_json, plain_fields, record_from_json


@dataclass(frozen=True)
class CoveragePoint(JsonRecord):
    """One target coverage of a method, averaged over folds (measure.analysis.cascade.combine)."""
    target: float
    coverage: float | None                     # realized on the evaluation split
    accuracy: float | None
    relative_cost: float | None
    thresholds: list[dict[str, float | None]]  # per fold: signal -> threshold (None: the signal is off)


@dataclass(frozen=True)
class CascadeCurve(JsonRecord):
    """The cascade or one single-signal baseline; aurc/prr/auroc are the baselines' only (absent for the cascade)."""
    at_coverage: dict[str, CoveragePoint]      # str(target) -> the curve's point, for the reported targets
    curve: list[CoveragePoint]
    aurc_grid: float | None
    aurc: float | None = None
    prr: float | None = None
    auroc: float | None = None


def curve_from_json(obj: Mapping[str, Any]) -> CascadeCurve:
    point = lambda p: record_from_json(CoveragePoint, p)  # noqa: E731
    return record_from_json(CascadeCurve, obj, at_coverage={c: point(p) for c, p in (obj.get("at_coverage") or {}).items()},
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
    return CascadeResult(**{**plain_fields(CascadeResult, obj), "cascade": curve_from_json(obj.get("cascade") or {}),
                            "baselines": {s: curve_from_json(e) for s, e in (obj.get("baselines") or {}).items()}},
                         out_dir=out_dir)


def cascade_to_json(result: CascadeResult) -> dict[str, Any]:
    return fields_to_json(result)


def read_cascade(directory: str | os.PathLike) -> CascadeResult:
    return cascade_from_json(read_json(Path(directory) / "cascade.json"), str(directory))
