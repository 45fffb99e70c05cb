"""Where a recipe's relative paths point: one rule for datasets, models, templates and benchmark files.

    resolve_path("data/sft.jsonl", recipe.base_dir)   # cwd first, then the recipe's folder, then its parent

A leaf of `train`: the recipe schema, the data loaders and the checkpoint layout all import it.
"""
from __future__ import annotations

from pathlib import Path

DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".gz", ".txt")


def looks_local(path: str) -> bool:
    """A path (relative or absolute, or with a data-file extension) rather than a hub id like 'org/name'."""
    return path.startswith((".", "/", "~")) or Path(path).suffix in DATA_SUFFIXES or path.count("/") != 1


def resolve_path(path: str, base_dir: Path) -> Path:
    """Relative paths: from the current directory if they exist there, else from the recipe's folder,
    else from its parent (the project root, for recipes in recipes/)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for root in (base_dir, base_dir.parent):
        if (root / p).exists():
            return root / p
    return p
