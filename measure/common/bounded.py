"""Bounded reads: no input file, however made, can make a command read forever or fill the memory.

Every file a command reads goes through measure.common.io (read_text, read_json, read_jsonl, iter_rows),
which uses these checks:
  * the path is a REGULAR file (after symlinks): a device such as /dev/zero, a FIFO or a socket never
    ends or never holds still, so it is refused as "not a regular file" before one byte is read;
  * JSONL (plain or .gz) is streamed line by line, each line read with a maximum length, so an endless
    line (a file without newlines, a gzip bomb) stops at the limit instead of at MemoryError;
  * a whole-file read (JSON, CSV, recipes) and the decompressed bytes of a .gz are capped in total;
    YAML recipes have a lower cap of their own (a recipe is a few KB; PyYAML builds nodes for every byte).
The limits are far above anything a real run writes (a samples.jsonl line at N=1000 with token statistics
is a few MB) and are named in the error with the environment variable that raises them.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from measure.common.errors import UsageError

MB = 1 << 20


@dataclass(frozen=True)
class Limit:
    env: str          # the environment variable that sets it, in MB
    default_mb: int
    what: str         # what it bounds, for the error message

    def bytes(self) -> int:
        raw = os.environ.get(self.env)
        if raw is None or raw == "":
            return self.default_mb * MB
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise UsageError(f"{self.env}={raw!r}: expected a whole number of megabytes >= 1 ({self.what})")
        return value * MB

    def exceeded(self, path: Path, detail: str) -> UsageError:
        return UsageError(f"{path}: {detail} is over the limit of {self.bytes() // MB} MB on {self.what}; a real "
                          f"input stays far below it. If this file is genuine, raise the limit: {self.env}=<MB>")


LINE = Limit("ALIGNMENT_TAX_MAX_LINE_MB", 64, "one line of a JSONL file")
FILE = Limit("ALIGNMENT_TAX_MAX_FILE_MB", 8192, "the size of one input file (decompressed for .gz)")
YAML = Limit("ALIGNMENT_TAX_MAX_YAML_MB", 16, "the size of a YAML recipe")


def require_regular(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` as a Path if it is an existing regular file (symlinks followed); else a named UsageError."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise UsageError(f"{path}: {what} not found (a symbolic link to {os.readlink(path)}, which does not exist)") from None
        raise UsageError(f"{path}: {what} not found") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: is a directory; expected a {what}")
    if not stat.S_ISREG(mode):
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
        raise UsageError(f"{path}: not a regular file ({kind}); give the {what} as a regular file "
                         "(a pipe or device could be read forever)")
    return path


def check_size(path: Path, limit: Limit = FILE) -> None:
    """Refuse a file whose size on disk is over `limit` before reading it."""
    size = path.stat().st_size
    if size > limit.bytes():
        raise limit.exceeded(path, f"its size, {size / MB:.0f} MB,")


def read_bytes(path: str | os.PathLike, what: str = "file", limit: Limit = FILE) -> bytes:
    """The whole content of a regular file of at most `limit` bytes (read with the cap, in case it grows)."""
    path = require_regular(path, what)
    check_size(path, limit)
    with open(path, "rb") as f:
        data = f.read(limit.bytes() + 1)
    if len(data) > limit.bytes():
        raise limit.exceeded(path, "its size")
    return data


def lines(f: IO[bytes], path: Path, line_limit: Limit = LINE, file_limit: Limit = FILE) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of an open binary file, each line at most `line_limit`, all of them together
    (decompressed, for gzip) at most `file_limit`."""
    max_line, max_total = line_limit.bytes(), file_limit.bytes()
    total, lineno = 0, 0
    while True:
        raw = f.readline(max_line + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > max_line and not raw.endswith(b"\n"):
            raise line_limit.exceeded(path, f"line {lineno}")
        total += len(raw)
        if total > max_total:
            raise file_limit.exceeded(path, f"its content (at line {lineno})")
        yield lineno, raw
