"""Recipes: one YAML per ablation chain, `key=value` overrides, validated, then typed.

    recipe = load_recipe("recipes/toy.yaml", {"stages.dpo.args.beta": 0.05})
    recipe.stages["dpo"].args["beta"], recipe.stages["dpo"].parent, recipe.stage_names

`load_recipe` checks the mapping (train/recipe_schema.py: keys, types, values, files), builds frozen
dataclasses from it -- `Recipe`, `ModelSpec`, `StageSpec`, `LoraSpec`, `Quantization`, declared once in
train/recipe_spec.py (each field's default, help, choices and bounds) and re-exported here -- and checks
the rules across keys (`check_rules`). The few defaults that depend on other keys (a stage's parent and
prompt format, the output dir) are resolved in `Recipe.from_mapping` and nowhere else. `to_dict()` gives the resolved mapping that every manifest
records (the YAML as written plus the defaults); `Recipe.from_mapping(stage_json["recipe"])` reads one
back, so a recorded recipe and the current one are compared like for like (train/reuse.py).

Optional keys beyond the basics: a stage's `prompt_format` (overrides the recipe's for that stage),
`trainer: measure` stages (an existing checkpoint by hub id / path, measured only), a `dpo` stage's
`heldout` (preference pairs it is not trained on, for train/dpo_effect.py), a chat template file in a
stage's `args.chat_template_path` (found like a dataset path, see `resolved_args`), and
`model.quantization: {load_in_4bit: true}` (QLoRA; needs bitsandbytes and a CUDA GPU, checked here).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

import yaml

from measure.common.errors import UsageError
from measure.common.bounded import YAML
from measure.common.io import read_text
from measure.common.overrides import apply_overrides
from measure.common.yamlload import load_yaml
from train.paths import resolve_path
from train.recipe_schema import TEMPLATE_SUFFIXES, check_shape
from train.recipe_spec import (BASE, LoraSpec, ModelSpec, PretrainSpec, Quantization, Recipe,  # noqa: F401 (re-exported)
                               StageSpec)

def check_rules(recipe: Recipe) -> None:
    """The rules across keys, on the typed recipe: `mode: continue` trains on a LoRA parent's adapter;
    QLoRA needs a LoRA stage, bitsandbytes and a CUDA GPU."""
    for stage in recipe.stages.values():
        if stage.mode == "continue" and not (stage.lora and recipe.lora_of(stage.parent)):
            raise UsageError(f"stages.{stage.name}.mode: 'continue' keeps training the parent's LoRA adapter, so both "
                             f"{stage.name!r} and its parent {stage.parent!r} must be LoRA stages (recipe 'lora' set, "
                             "stage 'lora' not false)")
    where = "model.quantization"
    if recipe.model.quantization is None:
        return
    if not any(s.lora for s in recipe.stages.values()):
        raise UsageError(f"{where}: QLoRA trains LoRA adapters on a 4-bit parent; the recipe has no LoRA stage "
                         "(set a top-level 'lora' section or a stage 'lora'), or drop model.quantization")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError(f"{where}: 4-bit loading needs the bitsandbytes package, which is not installed "
                         "(pip install bitsandbytes, on a machine with a CUDA GPU), or drop model.quantization")
    import torch  # only for a QLoRA recipe
    if not torch.cuda.is_available():
        raise UsageError(f"{where}: 4-bit loading (bitsandbytes) needs a CUDA GPU and none is visible here; "
                         "drop model.quantization to train in full precision")


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read, override, validate and type a recipe. Raises UsageError on any problem."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"recipe file not found: {path}")
    try:
        raw = load_yaml(read_text(path, "recipe file", limit=YAML))   # bounded: measure.common.bounded
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a recipe is a YAML mapping (name, model, stages, ...)")
    raw = apply_overrides(raw, overrides or {})
    try:
        check_shape(raw, "", path.parent)  # key paths are built from "" so errors read "<file>: stages.dpo.args.beta: ..."
        recipe = Recipe.from_mapping(raw, path)
        check_rules(recipe)
    except UsageError as e:
        raise UsageError(f"{path}: {str(e).lstrip('.: ')}") from None
    return recipe


def resolved_args(args: Mapping, base_dir: Path) -> dict:
    """A stage's TRL args with a chat template file (`chat_template_path: recipes/chat_templates/x.jinja`)
    found like a dataset path -- TRL itself only looks in the current directory and would otherwise take
    the name for a hub model to clone the template from."""
    template = args.get("chat_template_path")
    if isinstance(template, str) and template.endswith(TEMPLATE_SUFFIXES):
        return {**args, "chat_template_path": str(resolve_path(template, base_dir))}
    return dict(args)
