"""File edges: atomic writes, JSON/JSONL/CSV rows with their file:line, and the provenance block every output records."""
from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

from measure.common.bounded import FILE, Limit, check_size, lines, read_bytes, require_regular
from measure.common.errors import UsageError
from measure.common.machine import machine_info

TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets",
                    "sentence-transformers", "scikit-learn", "scipy", "numpy", "gguf", "alignment-tax")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds. A write the
    system refuses (permissions, a full disk, a file where a folder should be) is a UsageError naming
    `path`, and the temp file is removed: never a partial output."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs should get the usual permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror or e}); nothing was written there") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, numpy scalars/arrays, tuples, paths -> plain JSON types (NaN -> null)."""
    import dataclasses
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy array or scalar
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def refuse_overwrite(directory: str | os.PathLike, names: Iterable[str], *, overwrite: bool, what: str,
                     again: str = "replace them") -> list[str]:
    """The one overwrite guard (reports, comparisons, cascades, stages): finished outputs in `directory` are
    never replaced without overwrite=true. Returns the names that exist (to clear when overwriting)."""
    existing = [n for n in names if (Path(directory) / n).exists()]
    if existing and not overwrite:
        raise UsageError(f"{directory} already holds {what} ({', '.join(existing)}); pass overwrite=true to {again}")
    return existing


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` as a Path if it is an existing regular file; a missing path, a directory or a special file
    (/dev/zero, a FIFO) is a named UsageError (measure.common.bounded)."""
    return require_regular(path, what)


def not_utf8(path: Path, data: bytes, e: UnicodeDecodeError) -> UsageError:
    """The error for undecodable bytes, naming file:line (the line the bad byte is on)."""
    line = data.count(b"\n", 0, e.start) + 1
    return UsageError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start}); save the file as UTF-8")


def read_text(path: str | os.PathLike, what: str = "file", encoding: str = "utf-8", limit: Limit = FILE) -> str:
    """A whole text file, checked: a regular file within `limit` bytes that decodes as UTF-8 (errors name file:line)."""
    path = Path(path)
    data = read_bytes(path, what, limit)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise not_utf8(path, data, e) from None


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(to_jsonable(row), allow_nan=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object), streamed with the line and size limits of measure.common.bounded;
    a bad line is a UsageError naming file:line, a truncated or corrupt .gz one naming the file."""
    path = require_file(path)
    check_size(path)
    gz = path.suffix == ".gz"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        rows = lines(f, path)
        lineno = 0
        while True:
            try:
                lineno, raw = next(rows, (None, None))
            except (EOFError, OSError, zlib.error) as e:   # gzip.BadGzipFile is an OSError
                if not gz:
                    raise
                raise UsageError(f"{path}: truncated or corrupt gzip data after line {lineno} ({e}); download or "
                                 "compress the file again") from None
            if raw is None:
                return
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UsageError(f"{path}:{lineno}: not UTF-8 text ({e.reason}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


_WS = re.compile(r"\s*")


def _json_array_rows(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    """Items of a top-level JSON array, each with the file:line where it starts (for error messages)."""
    decoder, line = json.JSONDecoder(), 1
    pos = _WS.match(text).end() + 1  # past "["
    last = 0
    while True:
        pos = _WS.match(text, pos).end()
        if text.startswith("]", pos):
            return
        line += text.count("\n", last, pos)
        last = pos
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        yield f"{path}:{line}", obj
        pos = _WS.match(text, pos).end()
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            line += text.count("\n", last, pos)
            raise UsageError(f"{path}:{line}: invalid JSON (expected ',' or ']' after an array item)")


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    check_size(require_file(path))
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            for number, row in enumerate(reader, 1):
                yield f"{path}: row {number} (line {reader.line_num})", row
        except csv.Error as e:
            raise UsageError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


def iter_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, raw row) for every data row of a CSV, JSON-array or JSONL file."""
    try:
        if path.suffix.lower() == ".csv":
            yield from _csv_rows(path)
            return
        if path.suffix.lower() != ".gz":
            text = read_text(path, encoding="utf-8-sig")
            if text.lstrip().startswith("["):
                yield from _json_array_rows(path, text)
                return
        for lineno, obj in read_jsonl(path):
            yield f"{path}:{lineno}", obj
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The project's git commit (with '+dirty' when the tree has changes), or None outside git."""
    here = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(seed: int | None = None, recipe: dict | None = None) -> dict[str, Any]:
    """The block every output file carries: seed, resolved recipe, git commit, package versions and the
    machine (measure.common.machine: CPU, threads, torch's kernels and BLAS; what bit-identity depends on)."""
    return {"seed": seed, "recipe": recipe, "git_commit": git_commit(), "versions": package_versions(),
            "machine": machine_info()}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(to_jsonable(obj), sort_keys=True).encode()).hexdigest()
