"""The one YAML reader for recipes and `key=value` overrides: strict where PyYAML is lenient.

  * booleans are `true` / `false` only -- PyYAML (YAML 1.1) also reads yes/no/on/off as booleans, so
    `overwrite=yes` or `lora: off` would mean something the user may not have meant; here they stay text
    and the key's own check rejects them;
  * a key given twice in one mapping is an error naming its line (PyYAML keeps the last silently);
  * aliases are expanded into independent copies (an override of one copy never changes the other), and
    only up to MAX_VALUES values in all: an alias bomb (a few lines expanding to billions of values) is
    refused before anything is built, as is an alias that refers to itself.
Errors are yaml.YAMLError with a problem_mark, so callers report them as <file>:<line>.
A recipe file is read before it gets here with the YAML size cap of measure.common.bounded (train/recipe.py:
regular files only, ALIGNMENT_TAX_MAX_YAML_MB), so no file makes PyYAML read or build without bound.
"""
from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

MAX_VALUES = 100_000   # expanded values per document; shipped recipes have a few hundred
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with true/false-only booleans and duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:   # `<<: *defaults` then explicit keys: YAML's override, not a duplicate
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:            # unhashable key: SafeLoader reports it
                    continue
                if seen:
                    raise ConstructorError(None, None, f"duplicate key {key!r} (first given on line {first_line[key]})",
                                           key_node.start_mark)
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
StrictLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` becomes once every alias is copied out (memoized: the bomb is never built)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise ConstructorError(None, None, "an alias refers to the node that contains it (a recursive structure)",
                               node.start_mark)
    open_nodes.add(id(node))
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes, open_nodes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, sizes, open_nodes) + _expanded_size(v, sizes, open_nodes) for k, v in node.value)
    open_nodes.discard(id(node))
    sizes[id(node)] = total
    if total > MAX_VALUES:
        raise ConstructorError(None, None, f"this value expands to more than {MAX_VALUES} values through aliases "
                               "(an alias bomb?); write the values out or use fewer aliases", node.start_mark)
    return total


def _unshared(obj: Any) -> Any:
    """A copy in which no mapping or list is reachable twice (aliases in PyYAML share one object)."""
    if isinstance(obj, dict):
        return {k: _unshared(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unshared(v) for v in obj]
    return obj


def load_yaml(text: str) -> Any:
    """Parse one YAML document strictly (see the module docstring). Raises yaml.YAMLError."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return _unshared(loader.construct_document(node))
    finally:
        loader.dispose()
