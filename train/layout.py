"""Where a training chain keeps its measurements, and which measured runs its comparison takes, in order.

    checkpoints/<name>/chain.json                 "stages": the chain order (train/chain.py writes it)
    checkpoints/<name>/<stage>/stage.json         "chain_index": the order when chain.json is missing
    checkpoints/<name>/<stage>/measure/<bench>/   one benchmark measured on one stage (measure dir)
    checkpoints/<name>/runs.json                  the measured runs, per benchmark, in chain order (each with
                                                  "vs": its parent, when the chain branches)
    checkpoints/<name>/compare/[<bench>/]         the comparison (a subdir per benchmark when there are several)

The measurement library knows none of this: it compares an explicit, ordered list of measured runs.
`chain_runs` builds that list for one benchmark of a chain; `write_run_list` writes every benchmark's list
into <chain>/runs.json (the generic run-list file measure reads, measure.RUN_LIST), so that
`python -m measure compare checkpoints/<name> [benchmark=...]` keeps working without measure knowing what
a chain is. train.measure_stage writes it after measuring a stage and before comparing a chain.

A chain whose stages branch (a stage's `from:` is not the stage before it, e.g. three DPO stages from one
SFT parent) is not a sequence: its run list names, for every stage, the run it is compared with (`vs`: its
parent, or the nearest measured ancestor), so measure tests each stage against its parent, all in one
Holm family. A chain without branches keeps the plain sequence of consecutive stages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from measure import RUN_LIST, Comparison, compare_listed
from measure.common.errors import UsageError
from measure.common.io import read_json, write_json

MEASURE_SUBDIR = "measure"   # <stage dir>/measure/<benchmark>/: where a stage's measurements live
COMPARE_SUBDIR = "compare"   # <chain dir>/compare/: the cross-stage comparison


def benchmark_dir(stage_dir: Path, benchmark: str) -> Path:
    """The measure dir of one benchmark of a stage."""
    return Path(stage_dir) / MEASURE_SUBDIR / benchmark


def stage_benchmarks(stage_dir: Path) -> list[str]:
    """The benchmarks measured in a stage dir (those with a questions.jsonl), sorted."""
    runs = Path(stage_dir) / MEASURE_SUBDIR
    return sorted(d.name for d in runs.glob("*") if (d / "questions.jsonl").exists()) if runs.is_dir() else []


def compare_dirs(chain_dir: Path, benchmarks: Sequence[str]) -> dict[str, Path]:
    """benchmark -> its comparison dir: <chain>/compare/, or <chain>/compare/<benchmark>/ when there are several."""
    root = Path(chain_dir) / COMPARE_SUBDIR
    return {b: root / b if len(benchmarks) > 1 else root for b in benchmarks}


def chain_order(chain_dir: Path) -> list[str]:
    """Stage names in chain order: chain.json's "stages" when present, else base then stage.json chain_index."""
    chain_dir = Path(chain_dir)
    if not chain_dir.is_dir():
        raise UsageError(f"{chain_dir}: not a directory (expected checkpoints/<name>)")
    if (chain_dir / "chain.json").exists():
        stages = read_json(chain_dir / "chain.json").get("stages")
        if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
            raise UsageError(f"{chain_dir / 'chain.json'}: 'stages' must be a list of stage names")
        return stages
    found = {}
    for manifest in sorted(chain_dir.glob("*/stage.json")):
        name = manifest.parent.name
        index = read_json(manifest).get("chain_index")
        if name != "base" and (isinstance(index, bool) or not isinstance(index, int)):
            raise UsageError(f"{manifest}: no integer 'chain_index', cannot order the chain")
        found[name] = -1 if name == "base" else index
    if not found:
        raise UsageError(f"{chain_dir}: no stage dirs (*/stage.json); is this checkpoints/<name>?")
    return sorted(found, key=lambda k: (found[k], k))


def measured_benchmarks(chain_dir: Path) -> tuple[list[str], dict[str, list[str]]]:
    """(stages in chain order, stage -> the benchmarks measured on it)."""
    order = chain_order(chain_dir)
    return order, {s: stage_benchmarks(Path(chain_dir) / s) for s in order}


def chain_runs(chain_dir: Path, benchmark: str) -> tuple[list[tuple[str, Path]], list[str]]:
    """The explicit, ordered list of (stage label, measure dir) the comparison of one benchmark takes, and
    notes naming the stages left out (not measured on it)."""
    order, measured = measured_benchmarks(chain_dir)
    use = [s for s in order if benchmark in measured.get(s, [])]
    notes = [f"stage {s!r} has no {benchmark} measurement; left out" for s in order if s not in use]
    return [(s, benchmark_dir(Path(chain_dir) / s, benchmark)) for s in use], notes


def stage_parents(chain_dir: Path, order: Sequence[str]) -> dict[str, str | None]:
    """stage -> its parent, from each finished stage's stage.json (None: the base, or not recorded)."""
    manifests = {s: Path(chain_dir) / s / "stage.json" for s in order}
    return {s: (read_json(m).get("parent") if m.exists() else None) for s, m in manifests.items()}


def parent_runs(order: Sequence[str], parents: dict[str, str | None], measured: Sequence[str]) -> dict[str, str] | None:
    """stage -> the measured run it is compared with (its parent, else the nearest measured ancestor), when the
    chain branches; None for a chain whose every stage starts from the one before it (a sequence)."""
    if all(parents.get(s) in (None, order[i - 1]) for i, s in enumerate(order) if i):
        return None
    out = {}
    for stage in measured:
        parent, seen = parents.get(stage), {stage}
        while parent is not None and parent not in measured and parent not in seen:
            seen.add(parent)
            parent = parents.get(parent)
        if parent in measured:
            out[stage] = parent
    return out


def run_list(chain_dir: Path) -> dict:
    """runs.json's content: every measured benchmark's runs (paths relative to the chain dir) and notes."""
    chain_dir = Path(chain_dir)
    order, measured = measured_benchmarks(chain_dir)
    parents = stage_parents(chain_dir, order)
    runs, notes = {}, {}
    for bench in sorted({b for bs in measured.values() for b in bs}):
        listed, left_out = chain_runs(chain_dir, bench)
        vs = parent_runs(order, parents, [s for s, _ in listed]) or {}
        runs[bench] = [{"label": s, "path": path.relative_to(chain_dir).as_posix(), **({"vs": vs[s]} if s in vs else {})}
                       for s, path in listed]
        if left_out:
            notes[bench] = left_out
    return {"about": "measured runs to compare, in chain order, per benchmark (a run with \"vs\" is compared with "
                     "that run, its parent: the chain branches): python -m measure compare <this dir> "
                     "[benchmark=<name>] (written by train/layout.py)", "runs": runs, "notes": notes}


def write_run_list(chain_dir: Path) -> Path | None:
    """<chain>/runs.json (the one writer; measure's compare reads it); nothing when no stage is measured yet."""
    content = run_list(chain_dir)
    if not content["runs"]:
        return None
    write_json(Path(chain_dir) / RUN_LIST, content)
    return Path(chain_dir) / RUN_LIST


def compare_chain(chain_dir: Path, benchmark: str | None = None, out_dir: Path | None = None, overwrite: bool = False,
                  **options) -> Comparison:
    """Every measured stage of checkpoints/<name>/ for one benchmark, in chain order -> <chain>/compare/
    (options: measure.compare_listed's alpha, seed, sensitivity_clusterers): the run list is (re)written
    and measure compares what it lists, exactly as `python -m measure compare <chain dir>` does."""
    chain_dir = Path(chain_dir)
    if write_run_list(chain_dir) is None:
        raise UsageError(f"{chain_dir}: no measured stage (no <stage>/measure/<benchmark>/questions.jsonl)")
    # out_dir None: measure's default, <chain>/compare/[<benchmark>/] -- the same dirs as compare_dirs
    return compare_listed(chain_dir, benchmark, out_dir, overwrite, **options)
