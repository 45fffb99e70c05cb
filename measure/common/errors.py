"""One error type for bad user input, and the wrapper that turns it into exit code 2.

Every CLI in the project (train/*.py, python -m train.chain, python -m measure ...) raises
`UsageError` for input the user can fix (a bad key, a missing file, a malformed line) and
lets `exit_on_usage_error` print it and exit 2. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
import functools
import sys
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


class UsageError(Exception):
    """Input the user can fix. The message names the file/line/key and the valid choices."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?) valid: a, b, c' -- appended to unknown-name errors."""
    choices = sorted(set(map(str, choices)))
    close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"{hint}; valid choices: {', '.join(choices)}"


def choose(kind: str, name: str, registry: dict[str, T]) -> T:
    """Look `name` up in a registry dict, or raise a UsageError that lists the valid names."""
    if name not in registry:
        raise UsageError(f"unknown {kind} {name!r}{suggest(name, registry)}")
    return registry[name]


def exit_on_usage_error(main: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return wrapped
