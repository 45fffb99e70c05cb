"""The one command line of every entry point: `key=value` options, `--help`, required options.

    @dataclass(frozen=True)
    class Options:
        recipe: str | None = field(default=None, metadata={"help": "the recipe file", "required": True,
                                                           "placeholder": "<path to recipes/NAME.yaml>"})
        overwrite: bool = field(default=False, metadata={"help": "redo finished work"})

    opts, rest = parse_cli(argv, __doc__, Options)   # rest: the key=value pairs that are not options

`-h`, `--help` or `help` anywhere prints the entry point's docstring and a table of its options (and of
any further declarations passed as `sections`, e.g. the recipe's keys or the measure settings), read from
the dataclass fields (measure.common.fields), and exits 0. Otherwise the arguments are parsed as
`key=value` overrides (measure.common.overrides), the declared options are popped with their defaults and
checked against the default's type, and a missing required option is a UsageError
(`missing recipe=<path to recipes/NAME.yaml>`).
"""
from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Sequence

from measure.common.errors import UsageError, suggest
from measure.common.fields import declared, describe
from measure.common.overrides import parse_overrides, pop_known

HELP_WORDS = ("-h", "--help", "help")


def wants_help(argv: Sequence[str]) -> bool:
    return any(a in HELP_WORDS for a in argv)


def table(cls: type, *, assign: bool = False) -> str:
    """One line per declared field: `key` (`key=...` for options), then describe()'s types, default and help."""
    rows = [(f"{key}=..." if assign else key, describe(d)) for key, d in declared(cls).items()]
    width = max((len(k) for k, _ in rows), default=0) + 2
    return "\n".join(f"  {k.ljust(width)}{text}" for k, text in rows)


def help_text(doc: str | None, options: type | None = None, sections: Sequence[tuple[str, type]] = (),
              positional: str | None = None) -> str:
    """The entry point's docstring, then its options and every further declaration, as tables."""
    parts = [inspect.cleandoc(doc or "")]
    if positional:
        parts.append(f"positional: {positional}")
    if options is not None and declared(options):
        parts.append("options:\n" + table(options, assign=True))
    for title, cls in sections:
        parts.append(f"{title}:\n" + table(cls))
    return "\n\n".join(p for p in parts if p) + "\n"


def answer_help(argv: Sequence[str], doc: str | None, options: type | None = None,
                sections: Sequence[tuple[str, type]] = (), positional: str | None = None) -> None:
    """`-h` / `--help` / `help` among the arguments: print the help and exit 0."""
    if wants_help(argv):
        try:
            print(help_text(doc, options, sections, positional), flush=True)
        except BrokenPipeError:   # `--help | head`: the reader left; end quietly, as a pager-friendly CLI does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)


def defaults(options: type) -> dict[str, Any]:
    return {key: d.default for key, d in declared(options).items()}


def parse_cli(argv: Sequence[str] | None, doc: str | None, options: type | None = None, *,
              sections: Sequence[tuple[str, type]] = (), strict: bool = False, typed: bool = True,
              positional: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options with their defaults, the remaining key=value overrides) of an entry point's arguments.

    argv None: sys.argv[1:]. strict: a key that is no option is an error (close matches suggested).
    typed=False: options are not checked against their default's type (the caller checks them itself).
    positional: the option that collects the arguments without `=` (a list); else they are errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
    answer_help(argv, doc, options, sections, positional)
    loose = [a for a in argv if "=" not in a] if positional else []
    overrides = parse_overrides([a for a in argv if a not in loose])
    known = defaults(options) if options is not None else {}
    if strict:
        for key in overrides:
            if key not in known:
                raise UsageError(f"unknown key {key!r}{suggest(key, known)}")
    if typed:
        opts = pop_known(overrides, known)
    else:
        opts = {key: overrides.pop(key, default) for key, default in known.items()}
    if positional:
        opts[positional] = loose
    for key, d in (declared(options) if options is not None else {}).items():
        if d.required and opts.get(key) in (None, ""):
            placeholder = options.__dataclass_fields__[d.name].metadata.get("placeholder", "...")
            raise UsageError(f"missing {key}={placeholder}")
    return opts, overrides
