"""sweep.json as typed records: the parents and variants of one sweep, each with its frontier coordinates.

    result = read_sweep("checkpoints/toy/sweeps/dpo")
    [(row.name, row.status, row.reports["jsonl"].scr) for row in result.rows]

train/sweep.py builds a `SweepResult`, train/sweep_report.py marks the frontier and writes it; `sweep_to_json`
is the one writer (today's key order: a reference row is name, stage, status, dir, reports, frontier; a
variant row name, values, dir, status, reports, error, wall_time_s, frontier) and `sweep_from_json` the one
reader. A point holds exactly the report quantities the frontier needs (`POINT`), with their intervals.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from measure.common.io import read_json, to_jsonable
from measure import Report


@dataclass(frozen=True)
class SweepPoint:
    """One report's frontier coordinates (the Report attributes of the same names)."""
    scr: dict[str, float | None]           # clusterer label -> SCR
    scr_ci: dict[str, list[float] | None]
    scr_ci_method: str | None
    accuracy: float | None
    accuracy_ci: list[float] | None
    accuracy_ci_method: str | None
    auroc: dict[str, float | None]         # signal key -> AUROC
    auroc_ci: dict[str, list[float] | None]
    auroc_ci_method: str | None
    n_questions: int
    n_labelled: int

    @classmethod
    def of(cls, report: Report) -> SweepPoint:
        return cls(**{f.name: getattr(report, f.name) for f in dataclasses.fields(cls)})


POINT = tuple(f.name for f in dataclasses.fields(SweepPoint))


@dataclass(frozen=True)
class SweepRow:
    """A parent reference (status "reference", `stage`) or a variant (trained | reused | failed, `values`)."""
    name: str
    status: str
    dir: str
    reports: dict[str, SweepPoint]          # benchmark -> point; {} when not measured or failed
    stage: str | None = None
    values: dict[str, Any] | None = None    # grid key -> value
    error: str | None = None
    wall_time_s: float | None = None
    frontier: dict[str, list[str]] = field(default_factory=dict)   # benchmark -> clusterer labels


@dataclass(frozen=True)
class SweepResult:
    recipe: str
    stage: str
    grid: dict[str, list]
    signal: str                              # the signal whose AUROC the plot's second panel shows
    out_dir: str
    references: list[SweepRow]
    variants: list[SweepRow]
    counts: dict[str, int]                   # trained / reused / failed
    provenance: dict[str, Any]
    plots: dict[str, str | None] = field(default_factory=dict)   # file -> None (drawn) or why not

    @property
    def rows(self) -> list[SweepRow]:
        """References first, then the variants: the numbering of sweep.md and frontier.png."""
        return [*self.references, *self.variants]


REFERENCE_KEYS = ("name", "stage", "status", "dir", "reports", "frontier")
VARIANT_KEYS = ("name", "values", "dir", "status", "reports", "error", "wall_time_s", "frontier")


def _row_json(row: SweepRow, keys: tuple[str, ...]) -> dict:
    return {k: ({b: dataclasses.asdict(p) for b, p in row.reports.items()} if k == "reports" else getattr(row, k))
            for k in keys}


def sweep_to_json(result: SweepResult) -> dict:
    """The one writer: sweep.json's content."""
    out = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    out["references"] = [_row_json(r, REFERENCE_KEYS) for r in result.references]
    out["variants"] = [_row_json(r, VARIANT_KEYS) for r in result.variants]
    return to_jsonable(out)


def _row(obj: Mapping[str, Any]) -> SweepRow:
    known = {f.name for f in dataclasses.fields(SweepRow)}
    reports = {b: SweepPoint(**{k: p.get(k) for k in POINT}) for b, p in (obj.get("reports") or {}).items()}
    return SweepRow(**{**{k: obj[k] for k in known if k in obj}, "reports": reports})


def sweep_from_json(obj: Mapping[str, Any]) -> SweepResult:
    """The one reader of sweep.json content."""
    return SweepResult(**{**{f.name: obj.get(f.name) for f in dataclasses.fields(SweepResult) if f.name != "plots"},
                          "references": [_row(r) for r in obj.get("references") or []],
                          "variants": [_row(r) for r in obj.get("variants") or []], "plots": obj.get("plots") or {}})


def read_sweep(directory: str | os.PathLike) -> SweepResult:
    return sweep_from_json(read_json(Path(directory) / "sweep.json"))
