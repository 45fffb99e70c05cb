"""Typed records inside the toolkit's JSON files, with ONE generic reader and ONE generic writer.

A record is a frozen dataclass subclassing JsonRecord. `record_from_json(cls, obj, **nested)` reads each
field from its JSON key (its name, or its metadata "key" where the JSON name is no identifier: "from" ->
`from_`); nested records arrive already typed through `nested`; a key the file lacks reads as the field's
default (None where it has none) and is remembered in `absent`, so `record_to_json` -- keys in field order,
absent ones left out -- writes an older file back byte for byte. `plain_fields` / `fields_to_json` do the same for a top-level result record (no
`absent`; its `out_dir` says where it was read from and is not part of the file).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Mapping

from measure.common.io import to_jsonable


@dataclass(frozen=True)
class JsonRecord:
    """A typed object inside a result file; `absent`: the JSON keys its file lacks (read as None, not written)."""
    absent: frozenset[str] = field(default=frozenset(), kw_only=True, repr=False, compare=False)


def _key(f) -> str:
    return f.metadata.get("key", f.name)


def _record_fields(cls) -> list:
    return [f for f in fields(cls) if f.name != "absent"]


def _default(f) -> Any:
    """An absent key's value: the field's declared default, else None."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def record_from_json(cls, obj: Mapping[str, Any], **nested: Any):
    """The one reader of a record: each field from its JSON key (its default, else None, where the file lacks
    it, remembered in `absent`); `nested` gives the already-typed values of nested fields."""
    values = {f.name: nested[f.name] if f.name in nested else obj[_key(f)] if _key(f) in obj else _default(f)
              for f in _record_fields(cls)}
    return cls(**values, absent=frozenset(_key(f) for f in _record_fields(cls) if _key(f) not in obj))


def record_to_json(record: JsonRecord) -> dict[str, Any]:
    """The one writer of a record: its JSON keys in field order, absent keys left out."""
    return {_key(f): json_value(getattr(record, f.name)) for f in _record_fields(record)
            if _key(f) not in record.absent}


def json_value(value: Any) -> Any:
    """A value on its way to JSON: records as objects, containers element by element."""
    if isinstance(value, JsonRecord):
        return record_to_json(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return to_jsonable(value)


def plain_fields(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The file's value of every field of a result record `cls` but out_dir (a field a file lacks reads as None)."""
    return {f.name: obj.get(f.name) for f in fields(cls) if f.name != "out_dir"}


def fields_to_json(record) -> dict[str, Any]:
    """Every field of a result record but out_dir, in field order (= the file's key order), nested records as objects."""
    return {f.name: json_value(getattr(record, f.name)) for f in fields(record) if f.name != "out_dir"}
