"""A measured run: the directory `measure run` / `measure score` writes, loaded for comparison and the cascade.

One resolver (`measure_dir`) says which directories count, for `measure compare runs=[...]` and
`measure cascade` alike: a measure dir itself (questions.jsonl inside), a file inside one (its
samples.jsonl or report.json), or a stage dir with exactly one measure/<benchmark>/.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from measure.common.errors import UsageError
from measure.records.records import QuestionRecord, read_question_records
from measure.records.results import Report, read_report


@dataclass(frozen=True)
class MeasuredRun:
    label: str
    path: Path                          # the measure dir
    records: tuple[QuestionRecord, ...]
    report: Report | None               # its report.json (None when scored elsewhere without one)


MEASURE_SUBDIR = "measure"   # <stage dir>/measure/<benchmark>/: where a chain stage's measurements live


def benchmark_dir(stage_dir: Path, benchmark: str) -> Path:
    """The measure dir of one benchmark of a stage (the layout measure_dir and compare_chain read)."""
    return Path(stage_dir) / MEASURE_SUBDIR / benchmark


def stage_benchmarks(stage_dir: Path) -> list[str]:
    """The benchmarks measured in a stage dir (those with a questions.jsonl), sorted."""
    runs = Path(stage_dir) / MEASURE_SUBDIR
    return sorted(d.name for d in runs.glob("*") if (d / "questions.jsonl").exists()) if runs.is_dir() else []


def measure_dir(path: Path) -> Path:
    """The measure dir a user means by `path` (see the module docstring); anything else -> UsageError."""
    path = Path(path)
    directory = path.parent if path.is_file() else path
    if (directory / "questions.jsonl").exists():
        return directory
    found = [benchmark_dir(directory, b) for b in stage_benchmarks(directory)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"{path}: several benchmarks measured ({', '.join(d.name for d in found)}); "
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
