"""One declaration per field: what a settings or recipe dataclass field says about itself, read back.

Each field is declared once, TRL style -- `field(default=..., metadata={"help": "...", ...})` -- and what
validation and `--help` need comes from that declaration:

    help      one line for --help tables
    choices   the values a field allows (checked where the mapping is validated)
    noun      the word an unknown-choice error names ("unknown chaining mode 'x'"); default none
    min, max  inclusive bounds of a number
    required  the key must be present in the mapping (a field without a default need not be: some are
              resolved from other keys)
    nullable  the key may be written as null (YAML `~`); otherwise None only means "absent"
    key       the mapping key when it is not the field name (`from` for StageSpec.parent); None: the field
              is not a mapping key (resolved or bookkeeping fields)
    yaml      the mapping's types when they differ from the typed field's (a stage's `lora: false`)

The types a mapping may give are derived from the type hints: a dataclass or a mapping is a dict, a list
or tuple a list, a float also takes an int, `X | None` is X (null only when `nullable`).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from measure.common.errors import UsageError, suggest
from measure.common.values import as_int, as_number

SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class Declared:
    """One field as a mapping key: its name there, the types it takes and what its metadata declares."""
    name: str                       # the dataclass attribute
    key: str                        # the mapping key
    kinds: tuple[type, ...]         # accepted python types (type(None) included when nullable); () = unchecked
    required: bool
    default: Any                    # MISSING when the field has none
    help: str = ""
    choices: tuple | None = None
    noun: str = ""
    lo: float | None = None
    hi: float | None = None


def kinds_of(hint: Any) -> tuple[type, ...]:
    """The plain python types a mapping value for this type hint may have (() when anything goes)."""
    if hint is Any:
        return ()
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: list[type] = []
        for arg in typing.get_args(hint):
            kinds = kinds_of(arg)
            if not kinds and arg is not type(None):
                return ()
            out += [k for k in kinds if k not in out]
        return tuple(out)
    base = origin or hint
    if base is type(None):
        return ()
    if base is float:
        return (int, float)
    if base in SCALARS:
        return (base,)
    if base in (list, tuple):
        return (list,)
    if base is dict or (isinstance(base, type) and issubclass(base, Mapping)) or dataclasses.is_dataclass(base):
        return (dict,)
    return ()


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def declared(cls: type) -> dict[str, Declared]:
    """Mapping key -> Declared, in declaration order, for every field of `cls` that is a mapping key."""
    hinted = hints(cls)
    out: dict[str, Declared] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        key = meta.get("key", f.name)
        if key is None:
            continue
        kinds = tuple(meta["yaml"]) if "yaml" in meta else kinds_of(hinted[f.name])
        kinds = tuple(k for k in kinds if k is not type(None))
        if meta.get("nullable") and kinds:
            kinds += (type(None),)
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        choices = meta.get("choices")
        out[key] = Declared(name=f.name, key=key, kinds=kinds, required=bool(meta.get("required")),
                            default=default, help=meta.get("help", ""),
                            choices=tuple(choices) if choices is not None else None, noun=meta.get("noun", ""),
                            lo=meta.get("min"), hi=meta.get("max"))
    return out


def type_names(kinds: tuple[type, ...]) -> str:
    """'int or float', 'dict or null': how errors and --help name a field's types."""
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def has_kind(value: Any, kinds: tuple[type, ...]) -> bool:
    """isinstance, except that a bool is not an int unless bool is one of the kinds; () accepts anything."""
    if not kinds:
        return True
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def describe(d: Declared) -> str:
    """The --help line after a key's name: its types, default, choices, bounds and help."""
    kinds = tuple(k for k in d.kinds if k is not type(None))
    bits = ["number" if set(kinds) == {int, float} else type_names(kinds) or "any"]
    if type(None) in d.kinds:
        bits[0] += " or null"
    if d.required:
        bits.append("required")
    elif d.default is not MISSING and d.default is not None and d.default != () and d.default != {}:
        bits.append(f"default {d.default!r}")
    if d.choices:
        bits.append("one of " + ", ".join(map(str, d.choices)))
    if d.lo is not None or d.hi is not None:
        bits.append(f"{'-inf' if d.lo is None else d.lo} .. {'inf' if d.hi is None else d.hi}")
    return f"[{'; '.join(bits)}] {d.help}".rstrip()


def check_mapping(node: Any, cls: type, where: str) -> None:
    """A mapping against a dataclass's declared fields (a recipe section, the toy world): unknown and missing
    keys, types (from the type hints), choices and bounds (from the field metadata)."""
    schema = declared(cls)
    if not isinstance(node, dict):
        raise UsageError(f"{where}: expected a mapping with keys {', '.join(schema)}, got {type(node).__name__}")
    for key in node:
        if key not in schema:
            raise UsageError(f"{where}: unknown key {key!r}{suggest(str(key), schema)}")
    for key, d in schema.items():
        if key not in node:
            if d.required:
                raise UsageError(f"{where}: missing required key {key!r}")
            continue
        value = node[key]
        if value is None and type(None) in d.kinds:
            continue
        if not has_kind(value, d.kinds):
            raise UsageError(f"{where}.{key}: expected {type_names(d.kinds)}, got {type(value).__name__} {value!r}")
        if d.choices is not None and value not in d.choices:
            noun = f"{d.noun} " if d.noun else ""
            raise UsageError(f"{where}.{key}: unknown {noun}{value!r}{suggest(str(value), d.choices)}")
        if d.lo is not None or d.hi is not None:
            (as_int if isinstance(value, int) else as_number)(value, f"{where}.{key}", d.lo, d.hi)
