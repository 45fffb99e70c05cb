"""dynamics.jsonl: one record per measurement of a fixed probe set while a model trains (or of its saved
checkpoints afterwards), in step order. The one reader and the one writers of that file.

    {"step": 40, "epoch": 0.5, "source": "training", "n_questions": 32, "seconds": 6.1,
     "measures": {"scr/exact": 0.41, "mean_clusters/exact": 2.3, "pairwise_agreement/exact": 0.62,
                  "greedy_entropy_mean": 1.9, "accuracy": 0.25, "n_labelled": 28, "n_ambiguous": 4, ...},
     "intervals": {"scr/exact": [0.26, 0.57], "accuracy": [0.12, 0.43]},
     "train": {"loss": 0.61, "rewards/margins": 0.8, "learning_rate": 4e-05}, "stopped": null}

`measures` and `intervals` are keyed "<metric>" or "<metric>/<clusterer label>" (measure.scoring.probe);
`train` is what the Trainer logged at that very step (empty when it did not log there); `source` says who
measured: "training" (the callback, on the live model) or the checkpoint's directory name; `stopped` the
callback's stop rule this measurement met (training ended after that step), else null.

Appends are flushed and fsynced one record at a time, so a killed run loses at most the record being
written; a torn last line is dropped when read. `keep_through(path, step)` is how a resumed run drops
what it will measure again (every record after the step it resumes from), so a resumed file has each
step once.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from measure.common.errors import UsageError
from measure.common.io import write_jsonl
from measure.common.jsonrecords import JsonRecord, record_from_json, record_to_json

DYNAMICS_FILE = "dynamics.jsonl"


@dataclass(frozen=True)
class ProbeRecord(JsonRecord):
    step: int                                                  # optimizer steps done (Trainer's global_step)
    epoch: float | None                                        # Trainer's fractional epoch at that step
    measures: dict[str, float | None]                          # metric[/clusterer] -> value
    intervals: dict[str, list[float]] = field(default_factory=dict)   # metric[/clusterer] -> [lo, hi], 95%
    train: dict[str, float] = field(default_factory=dict)      # the Trainer's log at this step ({} if none)
    n_questions: int = 0
    seconds: float = 0.0                                       # wall seconds this measurement took
    source: str = "training"                                   # "training" or a checkpoint dir name
    stopped: str | None = None                                 # the stop rule met here (training ended after it)


def probe_record_to_json(record: ProbeRecord) -> dict:
    return record_to_json(record)


def read_probe_records(path: str | os.PathLike) -> list[ProbeRecord]:
    """Every record of a dynamics.jsonl in file order ([] when it does not exist). A torn last line (a kill
    mid-append) is ignored; a bad line anywhere else is a UsageError naming file:line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    out: list[ProbeRecord] = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict) or not isinstance(obj.get("step"), int) or \
                    not isinstance(obj.get("measures"), dict):
                raise ValueError("expected an object with an integer 'step' and a 'measures' mapping")
        except (UnicodeDecodeError, ValueError) as e:
            if lineno == len(lines):   # the last piece was never terminated by "\n": an interrupted append
                break
            raise UsageError(f"{path}:{lineno}: not a dynamics record ({e})") from None
        out.append(record_from_json(ProbeRecord, obj))
    return out


def append_probe_record(path: str | os.PathLike, record: ProbeRecord) -> None:
    """Append one record, flushed and fsynced (a torn tail of an earlier kill is cut first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        write_probe_records(path, read_probe_records(path))
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(probe_record_to_json(record), allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_probe_records(path: str | os.PathLike, records: list[ProbeRecord]) -> None:
    """The whole file at once (atomic), records sorted by step."""
    write_jsonl(path, [probe_record_to_json(r) for r in sorted(records, key=lambda r: r.step)])


def keep_through(path: str | os.PathLike, step: int) -> list[ProbeRecord]:
    """Drop every record after `step` (a run resuming from that step measures them again); returns the kept
    ones. The file is rewritten only when something is dropped."""
    records = read_probe_records(path)
    kept = [r for r in records if r.step <= step]
    if len(kept) != len(records):
        write_probe_records(path, kept)
    return kept
