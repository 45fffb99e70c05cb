"""What the training entry points write and read, checked before any training (measure.common.outputs).

A chain writes into its output_dir: chain.json, chain_timings.json, runs.json, dpo_effect.json and the folders
of its stages, its generated world, its comparison and its sweeps; it reads the recipe file and every local
file the recipe names (datasets, held-out pairs, tokenizer corpus, model paths, chat templates, benchmark
files). `check_chain` runs the shared checks on that plan -- output_dir a writable folder or creatable, no
output on or around an input, nothing there that a training chain did not write -- before anything is
written; `claim_chain` records the chain's output names just before its first write. Sweeps and seeds
add their own folder (sweeps/<stage>/, <output_dir>-seeds/) as plans of their own kind.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from measure import PACKAGE_PREFIX, is_hub_id
from measure.common.outputs import OutputPlan, check_outputs, claim_outputs, existing_inputs
from train.paths import looks_local, resolve_path
from train.recipe import BASE, Recipe

CHAIN_FILES = ("chain.json", "chain_timings.json", "runs.json", "dpo_effect.json")
CHAIN_DIRS = ("world", "compare", "sweeps")
KIND = "training chain"


def _dataset_paths(spec: Any, base_dir: Path) -> Iterable[Path]:
    for one in spec if isinstance(spec, list) else [spec]:
        if isinstance(one, dict) and isinstance(one.get("self_pairs"), dict):   # its prompts' benchmark file
            one = one["self_pairs"].get("questions") or {}
        path = one if isinstance(one, str) else one.get("path") if isinstance(one, dict) else None
        if isinstance(path, str) and looks_local(path):
            yield resolve_path(path, base_dir)


def _model_path(reference: str | None, base_dir: Path) -> list[Path]:
    if not reference or is_hub_id(reference) or reference.startswith(PACKAGE_PREFIX):
        return []
    return [resolve_path(reference, base_dir)]


def recipe_inputs(recipe: Recipe) -> tuple[Path, ...]:
    """The recipe file and every local file or folder it names (generated-world splits and benchmark paths
    into the chain's own folders, "{world}/...", are outputs, not inputs)."""
    base = recipe.base_dir
    paths: list[Path] = [recipe.path, *_model_path(recipe.model.path, base)]
    if recipe.model.pretrain is not None:
        paths += _dataset_paths(recipe.model.pretrain.dataset, base)
    if recipe.model.build and recipe.model.build.get("corpus"):
        paths += _dataset_paths(recipe.model.build["corpus"], base)
    for spec in recipe.stages.values():
        paths += [*_dataset_paths(spec.dataset, base), *_dataset_paths(spec.heldout, base), *_model_path(spec.model, base)]
        template = spec.args.get("chat_template_path")
        if isinstance(template, str) and looks_local(template):
            paths.append(resolve_path(template, base))
    for bench in recipe.measure.benchmarks:
        if bench.path and "{" not in bench.path:
            paths.append(resolve_path(bench.path, base))
    return existing_inputs(paths)


def chain_plan(recipe: Recipe, command: str) -> OutputPlan:
    stages = recipe.stage_names
    return OutputPlan(command, KIND, Path(recipe.output_dir), files=CHAIN_FILES, dirs=(*stages, *CHAIN_DIRS),
                      inputs=recipe_inputs(recipe), key="output_dir",
                      legacy=("chain.json", *(f"{s}/stage.json" for s in stages), *(f"{s}/trainer" for s in stages)),
                      dir_legacy=("stage.json", "trainer", "world.json", "compare.json", *stages,
                                  *(b.name for b in recipe.measure.benchmarks)))


def check_chain(recipe: Recipe, command: str) -> None:
    """The output checks of a chain (exit 2 naming the paths); writes nothing. A stage's own "finished"
    guard (stage.json, overwrite=true) stays with the stage (train/checkpoint.py guard_overwrite)."""
    check_outputs(chain_plan(recipe, command), overwrite=True)


def claim_chain(recipe: Recipe) -> None:
    """Record the chain's output names in its output_dir, just before its first write (main process)."""
    claim_outputs(chain_plan(recipe, "a training chain"))


def folder_plan(command: str, kind: str, directory: Path, files: tuple[str, ...], dirs: Iterable[str],
                recipe: Recipe, marker: str | None = None) -> OutputPlan:
    """The plan of a folder of summaries beside the chains (sweeps/<stage>/, <output_dir>-seeds/)."""
    return OutputPlan(command, kind, Path(directory), files=files, dirs=tuple(dirs), inputs=recipe_inputs(recipe),
                      key="output_dir", marker=marker, legacy=files[:1], dir_legacy=("chain.json", BASE))
