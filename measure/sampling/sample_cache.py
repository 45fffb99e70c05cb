"""The sampling resume cache: rows appended (flushed, fsynced) after each batch, read back on a re-run.

A cache belongs to one set of sampling settings (`<cache>.settings.json`) and one model
(`<cache>.model.json`: the stage's stage.json hash, or the files of a local model); another setting,
another model, another question text or sample count is an error that says what differs, never a
silent mix. A torn last line
(a kill mid-write) is dropped, so the batch it belonged to is sampled again whole.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from measure.scoring.config import MeasureSettings
from measure.common.errors import UsageError
from measure.common.io import read_json, to_jsonable, write_json
from measure.records.records import Question, QuestionSamples, RunIdentity, parse_samples_row, samples_row_to_json


def cache_settings(settings: MeasureSettings, prompt_format: str, stop: Sequence[str]) -> dict:
    """What a cached row depends on (batch_size is absent: any batching gives valid samples). `token_ids`:
    the rows carry their generated token ids; a cache written before they did is refused like another
    setting, since resuming it would leave some rows of samples.jsonl without ids (no length curve)."""
    return to_jsonable({"prompt_format": prompt_format, "n_samples": settings.n_samples,
                        "temperature": settings.temperature, "top_p": settings.top_p,
                        "max_new_tokens": settings.max_new_tokens, "stop": list(stop),
                        "fewshot": settings.fewshot, "seed": settings.seed, "decoder": settings.decoder,
                        "token_ids": True})


def read_cache(path: Path) -> dict[str, QuestionSamples]:
    """Rows of a sampling cache by id. A truncated last line (an interrupted write) is dropped from the file."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    rows: dict[str, QuestionSamples] = {}
    good_end, pos = 0, 0
    lines = data.split(b"\n")
    for lineno, raw in enumerate(lines, 1):
        complete = lineno < len(lines)  # the piece after the last "\n" was never terminated
        if raw.strip():
            try:
                obj = json.loads(raw.decode("utf-8")) if complete else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise UsageError(f"{path}:{lineno}: corrupt line in the sampling cache; delete the file to re-sample") from None
            if obj is None:
                break
            if not isinstance(obj, dict):
                raise UsageError(f"{path}:{lineno}: expected a JSON object in the sampling cache")
            row = parse_samples_row(obj, f"{path}:{lineno}")
            rows[row.question.id] = row
        pos += len(raw) + 1
        good_end = min(pos, len(data))
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows


def append_cache(path: Path, rows: Sequence[QuestionSamples]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(to_jsonable(samples_row_to_json(row)), allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def open_cache(path: Path, meta: dict, questions: Sequence[Question], n: int) -> dict[str, QuestionSamples]:
    meta_path = path.with_name(path.name + ".settings.json")
    if meta_path.exists() and path.exists() and path.stat().st_size:
        old = read_json(meta_path)
        if old != meta:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {meta.get(k)!r}" for k in sorted(set(old) | set(meta))
                             if old.get(k) != meta.get(k))
            raise UsageError(f"{path}: the sampling cache was made with other settings ({diff}); "
                             "delete it or re-run with the same settings")
    else:
        write_json(meta_path, meta)
    cached = read_cache(path)
    by_id = {q.id: q for q in questions}
    for qid, row in cached.items():
        if qid in by_id and (row.question.text != by_id[qid].text or len(row.samples) != n):
            raise UsageError(f"{path}: cached question {qid!r} does not match this run (other question text "
                             "or sample count); delete the cache to re-sample")
    return {qid: row for qid, row in cached.items() if qid in by_id}


def cache_files(path: Path) -> tuple[Path, Path, Path]:
    """The resume cache and its two sidecars (settings, model)."""
    return path, path.with_name(path.name + ".settings.json"), path.with_name(path.name + ".model.json")


def model_identity(model_source: str, identity: RunIdentity | None) -> dict:
    """What says "the same model" across a resume: the caller's model_key when it gives one, else the
    reference and, for a local dir or file, the names, sizes and modification times of its files (hashing
    the weights would cost as much as a batch; a retrained or replaced model has new files)."""
    if identity is not None and identity.model_key:
        return {"model_key": identity.model_key}
    path = Path(model_source)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    return {"model": model_source, "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def claim_cache(path: Path, identity: dict) -> None:
    """Tie a resume cache to one model. A non-empty cache of another model (or of unknown model: written
    before this check existed) is an error; an empty or new one is claimed for `identity`."""
    _, settings_path, model_path = cache_files(path)
    identity = to_jsonable(identity)
    if path.exists() and path.stat().st_size:
        old = read_json(model_path) if model_path.exists() else None
        if old != identity:
            raise UsageError(f"{path}: the sampling cache was made with another model ({old} -> {identity}); "
                             "delete it (and its .settings.json / .model.json) to sample this model afresh")
        return
    for stale in (path, settings_path):  # an empty cache: nothing to keep, its settings start afresh too
        stale.unlink(missing_ok=True)
    write_json(model_path, identity)
