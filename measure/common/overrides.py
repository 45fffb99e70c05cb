"""`key=value` command-line overrides with dotted keys, the one convention of every CLI here.

    python -m train.chain recipe=recipes/toy.yaml stages.dpo.args.beta=0.05 seed=3

Values are parsed as YAML scalars/flow collections (measure.common.yamlload: strict booleans, no duplicate
keys), so `beta=0.05` is a float, `overwrite=true` a bool, `clusterers=[exact,jaccard]` a list, and
`name=run1` a string. Plain CLI options are checked against their default's type (`pop_known`): a
bool option takes only true/false, an int option only an integer.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import yaml

from measure.common.errors import UsageError
from measure.common.values import typed_option
from measure.common.yamlload import load_yaml


def parse_value(text: str) -> Any:
    try:
        return load_yaml(text) if text != "" else ""
    except yaml.YAMLError:
        return text  # not YAML: keep the literal string (e.g. "a: b" inside a prompt)


def parse_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> {'a.b': 1, 'c': 'x'} (flat, dotted keys kept)."""
    out: dict[str, Any] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key or key.startswith("-"):
            raise UsageError(f"argument {arg!r} is not of the form key=value (e.g. recipe=recipes/toy.yaml)")
        if key in out:
            raise UsageError(f"key {key!r} given twice on the command line")
        out[key] = parse_value(value)
    return out


def _index(node: list, part: str, dotted: str, where: str) -> int:
    """A list element named by its position: `measure.benchmarks.0.limit=10` (an existing element only)."""
    if not part.isdigit() or int(part) >= len(node):
        raise UsageError(f"override {dotted!r}: {where!r} is a list of {len(node)}; name an element by its "
                         f"position 0..{len(node) - 1}, got {part!r}")
    return int(part)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set tree['a']['b']['c'] = value for 'a.b.c', creating mappings on the way; a number after a list
    names one of its elements (tree['a'][0]['b'] for 'a.0.b')."""
    node: Any = tree
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i])
        if isinstance(node, list):
            part = _index(node, part, dotted, where)
        elif not isinstance(node, dict):
            raise UsageError(f"override {dotted!r}: {where!r} is a {type(node).__name__}, not a mapping")
        if i == len(parts) - 1:
            node[part] = value
            return
        child = node[part] if isinstance(node, list) else node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and isinstance(node, list):  # a list of names: expand to a mapping
            child = node[part] = {"name": child}
        node = child


def apply_overrides(tree: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of `tree` with every dotted override applied."""
    tree = copy.deepcopy(tree)
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return tree


def pop_known(overrides: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Split plain CLI options (e.g. overwrite, stage) from recipe overrides, with defaults. An option whose
    default is a bool / int / float must be one (`overwrite=flase` is an error, never truthy)."""
    return {k: typed_option(overrides.pop(k, default), default, k) for k, default in allowed.items()}
