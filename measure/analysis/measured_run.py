"""A measured run: the directory `measure run` / `measure score` writes, loaded for comparison and the cascade.

One resolver (`measure_dir`) says which directories count, for `measure compare runs=[...]` and
`measure cascade` alike: a measure dir itself (questions.jsonl inside), a file inside one (its
samples.jsonl or report.json), or a directory with exactly one measure dir one or two levels below it.
The library knows no other layout: where an application keeps its runs (train/layout.py for a training
chain) is the application's business.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from measure.common.errors import UsageError
from measure.records.records import QuestionRecord, QuestionSamples, read_question_records, read_samples
from measure.records.results import Report, read_report


@dataclass(frozen=True)
class MeasuredRun:
    label: str
    path: Path                          # the measure dir
    records: tuple[QuestionRecord, ...]
    report: Report | None               # its report.json (None when scored elsewhere without one)


def measure_dir(path: Path) -> Path:
    """The measure dir a user means by `path` (see the module docstring); anything else -> UsageError."""
    path = Path(path)
    directory = path.parent if path.is_file() else path
    if (directory / "questions.jsonl").exists():
        return directory
    found = sorted(p.parent for pattern in ("*/questions.jsonl", "*/*/questions.jsonl") for p in directory.glob(pattern))
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"{path}: several measured runs below it ({', '.join(str(d.relative_to(directory)) for d in found)}); "
                         f"give the measure dir itself, e.g. {found[0]}")
    raise UsageError(f"{path}: no questions.jsonl {'beside it' if path.is_file() else 'in it'}; score the samples "
                     "first (python -m measure score samples=<samples.jsonl> out=<dir>), or measure a model "
                     "(python -m measure run model=... out=<dir>)")


def load_run(path: Path, label: str, *, need_report: bool = True) -> MeasuredRun:
    """The records (unique ids) and report of one measure dir."""
    path = Path(path)
    records = read_question_records(path / "questions.jsonl")
    if not records:
        raise UsageError(f"{path / 'questions.jsonl'}: no questions")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise UsageError(f"{path / 'questions.jsonl'}: duplicate question ids {', '.join(dup[:5])}")
    report = read_report(path) if need_report or (path / "report.json").exists() else None
    return MeasuredRun(label, path, tuple(records), report)


def run_samples(run: MeasuredRun) -> list[QuestionSamples] | None:
    """The run's samples.jsonl rows in its records' order (None: no samples.jsonl in the measure dir, e.g.
    scored from a file elsewhere); a file lacking a scored question is a UsageError."""
    path = run.path / "samples.jsonl"
    if not path.exists():
        return None
    rows = {qs.question.id: qs for qs in read_samples(path)}
    if any(r.id not in rows for r in run.records):
        raise UsageError(f"{path}: lacks questions of {run.path / 'questions.jsonl'}")
    return [rows[r.id] for r in run.records]
