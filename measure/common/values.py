"""Scalar checks every CLI and the recipe validator share: the one boolean parser, bounded integers,
finite numbers. A value that fails is a UsageError naming its key and what is valid.

Bounds (documented in README "Bad input"):
  * booleans are YAML `true` / `false` only (`yes`, `1`, `flase` are errors, never "truthy");
  * every number in a recipe or a setting is finite (no .nan / .inf) and every integer fits in a signed
    64-bit integer (what torch tensors and the Trainer's step counters hold);
  * seeds are within 0 .. 2**32 - 1 (transformers.set_seed seeds numpy, which accepts no more).
"""
from __future__ import annotations

import math
from typing import Any

from measure.common.errors import UsageError

INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1


def as_bool(value: Any, key: str) -> bool:
    """`true` / `false` as YAML parses them; anything else (a typo such as 'flase', 'yes', 1) is an error."""
    if isinstance(value, bool):
        return value
    raise UsageError(f"{key}: expected true or false, got {value!r}; valid choices: true, false")


def as_int(value: Any, key: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (not a bool, not a float, not text) within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
    lo = -INT64_MAX if lo is None else lo
    hi = INT64_MAX if hi is None else hi
    if not lo <= value <= hi:
        raise UsageError(f"{key}: {value} is out of range; valid: {lo} .. {hi}")
    return value


def as_number(value: Any, key: str, lo: float | None = None, hi: float | None = None) -> float:
    """A finite int or float within [lo, hi], returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
    check_number(value, key)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UsageError(f"{key}: {value} is out of range; valid: {'-inf' if lo is None else lo} .. "
                         f"{'inf' if hi is None else hi}")
    return float(value)


def as_seed(value: Any, key: str) -> int:
    return as_int(value, key, 0, SEED_MAX)


def check_number(value: Any, key: str) -> None:
    """Floats finite, integers within the signed 64-bit range; anything else passes untouched."""
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{key}: {value!r} is not a finite number")
    if isinstance(value, int) and not -INT64_MAX <= value <= INT64_MAX:
        raise UsageError(f"{key}: {value} is out of range (integers must fit in 64 bits: "
                         f"-{INT64_MAX} .. {INT64_MAX})")


def check_numbers(tree: Any, where: str) -> None:
    """check_number on every value of a nested mapping/list; errors name the dotted key path."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            check_numbers(value, f"{where}.{key}" if where else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            check_numbers(value, f"{where}[{i}]")
    else:
        check_number(tree, where)


def typed_option(value: Any, default: Any, key: str) -> Any:
    """A plain CLI option checked against the type of its default (bool, int, float); None: any value."""
    if value is default or default is None:
        return value
    if isinstance(default, bool):
        return as_bool(value, key)
    if isinstance(default, int):
        return as_int(value, key)
    if isinstance(default, float):
        return as_number(value, key)
    return value
