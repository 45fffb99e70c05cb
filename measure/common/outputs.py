"""Output plans: every command declares what it will write and what it reads, and both are checked
before any work starts (one mechanism for `measure run|score|compare|cascade` and train/'s entry points).

    plan = OutputPlan("measure score", "measurement", out_dir, files=(...), inputs=(samples,), marker="report.json")
    prepare_outputs(plan, overwrite)      # check (raises UsageError, writes nothing), then claim

The checks, in order, each an exit-2 error naming the paths involved:
  1. the location: `directory` is a directory or can be created -- not a file, not a dangling symbolic
     link, not below a file, and writable (the nearest existing folder);
  2. inputs are sacred: no output is, or (for an output folder) contains, an input -- compared by resolved
     real path and by st_dev/st_ino (os.path.samefile), so symbolic and hard links are caught too. Even
     overwrite=true never replaces an input;
  3. only its own files: an existing file or folder at an output path must have been written by the same
     KIND of command (a measurement, a comparison, a cascade, a training chain, ...); anything else -- a
     file of the user's, another command's plot -- is refused whatever `overwrite` says;
  4. finished work: when `marker` (report.json, compare.json, ...) exists, overwrite=true is needed.
How a command recognises its own outputs: `claim_outputs` records, in RECORD (.outputs.json) inside the
output folder, the kind of command each output name belongs to, before the first output is written (so an
interrupted run's partial outputs are still its own). A folder written before that record existed counts
as this kind's when it holds one of the plan's `legacy` markers, and then only for the plan's own output
names (an output folder's contents: `dir_legacy`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from measure.common.errors import UsageError
from measure.common.io import refuse_overwrite, write_json

RECORD = ".outputs.json"   # name -> kind of command, one per output folder (the module docstring)


@dataclass(frozen=True)
class OutputPlan:
    command: str                       # as the user typed it ("measure compare"): named in messages
    kind: str                          # whose outputs these are; equal kinds may replace each other's outputs
    directory: Path                    # the output folder
    files: tuple[str, ...] = ()        # files written directly in `directory`
    dirs: tuple[str, ...] = ()         # folders written (and cleared on overwrite) in `directory`
    inputs: tuple[Path, ...] = ()      # every file or folder the command reads
    marker: str | None = None          # the file that means "finished": replacing it needs overwrite=true
    legacy: tuple[str, ...] = ()       # names in `directory` that mark this kind's outputs (before RECORD)
    dir_legacy: tuple[str, ...] = ()   # names inside an output folder that mark it as this kind's
    key: str = "out"                   # the option that named `directory`
    what: str = "finished outputs"     # for the overwrite message: "a finished measurement"
    again: str = "replace them"        # ... "pass overwrite=true to <again>"

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.files, *self.dirs)


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def check_location(directory: Path, key: str = "out") -> None:
    """The output folder exists as a writable folder, or can be created (its nearest existing ancestor is
    a writable folder); a file, a dangling symbolic link or a path through a file is a named UsageError."""
    directory = Path(directory)
    given = f"{key}={directory}"
    probe = directory
    while not probe.exists():
        if probe.is_symlink():
            raise UsageError(f"{given}: {probe} is a dangling symbolic link (to {os.readlink(probe)}, which does not "
                             "exist); remove the link or give another folder")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == directory else f"goes through {probe}, which is a file"
        raise UsageError(f"{given}: {where}, not a folder; give a folder for the outputs")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == directory else f"cannot be created: {probe} is not writable"
        raise UsageError(f"{given}: {what}; give a folder you can write to")


def _same(a: Path, b: Path) -> bool:
    """One file under two names: equal resolved paths, or (both existing) equal st_dev/st_ino (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def check_inputs(plan: OutputPlan) -> None:
    """No output of the plan is one of its inputs, and no output folder holds one."""
    for name in plan.names:
        out = plan.directory / name
        for given in plan.inputs:
            if given is None or not _lexists(given):
                continue
            clash = _inside(given, out) if name in plan.dirs else _same(out, given)
            if clash:
                role = "holds" if name in plan.dirs and not _same(out, given) else "is"
                raise UsageError(f"{plan.key}={plan.directory}: {plan.command} would write {out}, which {role} its "
                                 f"input {given}; inputs are never replaced (not even with overwrite=true): give "
                                 f"another {plan.key}=")


def read_record(directory: Path) -> dict[str, str]:
    """name -> kind from the folder's RECORD; {} when there is none (or it is not a record)."""
    path = Path(directory) / RECORD
    try:
        obj = json.loads(path.read_text(encoding="utf-8")) if path.is_file() and path.stat().st_size < 1 << 20 else {}
    except (OSError, ValueError):
        return {}
    outputs = obj.get("outputs") if isinstance(obj, dict) else None
    return {k: v for k, v in outputs.items() if isinstance(v, str)} if isinstance(outputs, dict) else {}


def owner(plan: OutputPlan, name: str, record: dict[str, str]) -> str | None:
    """The kind of command that wrote `name` in the plan's folder (None: not a command of this project's)."""
    if name in record:
        return record[name]
    if name not in plan.names or not any(_lexists(plan.directory / m) for m in plan.legacy):
        return None
    if name in plan.dirs:
        folder = plan.directory / name
        return plan.kind if not plan.dir_legacy or any(_lexists(folder / m) for m in plan.dir_legacy) else None
    return plan.kind


def check_owned(plan: OutputPlan, overwrite: bool) -> list[str]:
    """Every existing output path was written by this kind of command; a finished one needs overwrite.
    Returns the output names that exist."""
    record = read_record(plan.directory)
    existing = [n for n in plan.names if _lexists(plan.directory / n)]
    for name in existing:
        path = plan.directory / name
        if name in plan.files and path.is_dir() and not path.is_symlink():
            raise UsageError(f"{plan.key}={plan.directory}: {plan.command} writes the file {path}, and a folder "
                             "is there; move it away or give another folder")
        who = owner(plan, name, record)
        if who != plan.kind:
            by = f"it belongs to a {who}" if who else f"it was not written by {plan.command} (no {RECORD} entry)"
            raise UsageError(f"{plan.key}={plan.directory}: {plan.command} would replace {path}, but {by}; "
                             f"overwrite=true replaces only {plan.command}'s own outputs, never other files: move "
                             f"it away or give another {plan.key}=")
    if plan.marker and plan.marker in existing:
        refuse_overwrite(plan.directory, existing, overwrite=overwrite, what=plan.what, again=plan.again)
    return existing


def check_outputs(plan: OutputPlan, overwrite: bool = False) -> list[str]:
    """All checks of the module docstring; writes nothing. Returns the output names that exist already."""
    check_location(plan.directory, plan.key)
    check_inputs(plan)
    return check_owned(plan, overwrite)


def claim_outputs(plan: OutputPlan) -> None:
    """Create the folder and record the plan's output names as this kind's (atomic; merged with the record)."""
    record = read_record(plan.directory)
    wanted = {name: plan.kind for name in plan.names}
    if all(record.get(k) == v for k, v in wanted.items()) and (plan.directory / RECORD).is_file():
        return
    write_json(plan.directory / RECORD, {"about": "which kind of command wrote each output in this folder "
                                                  "(measure/common/outputs.py)", "outputs": {**record, **wanted}})


def prepare_outputs(plan: OutputPlan, overwrite: bool = False, *, claim: bool = True) -> list[str]:
    """check_outputs, then (claim=True: the process that writes) claim_outputs."""
    existing = check_outputs(plan, overwrite)
    if claim:
        claim_outputs(plan)
    return existing


def existing_inputs(paths: Iterable[Path | str | None]) -> tuple[Path, ...]:
    """The given paths that exist (inputs that are not there cannot be replaced), as Paths."""
    return tuple(Path(p) for p in paths if p is not None and _lexists(Path(p)))
