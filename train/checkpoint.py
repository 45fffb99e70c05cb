"""Stage directory layout, the stage.json manifest, the overwrite guard, and parent model loading.

A stage is finished exactly when its stage.json exists: it is written last, atomically, after the
merged model, adapter and tokenizer. A stage dir without stage.json is an interrupted run; its
`trainer/` folder holds the Trainer checkpoints that a re-run resumes from.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from measure.common.errors import UsageError
from measure.common.io import provenance, read_json, refuse_overwrite, to_jsonable, write_json
from measure import PACKAGE_PREFIX, is_hub_id, load_causal_lm, resolve_model
from train.manifest import StageManifest, manifest_from_json
from train.paths import resolve_path
from train.recipe import BASE, Recipe

MANIFEST = "stage.json"


def chain_dir(recipe: Recipe) -> Path:
    return Path(recipe.output_dir)


def stage_dir(recipe: Recipe, stage: str) -> Path:
    return chain_dir(recipe) / stage


def world_dir(recipe: Recipe) -> Path | None:
    return chain_dir(recipe) / "world" if recipe.world else None


def is_finished(recipe: Recipe, stage: str) -> bool:
    return (stage_dir(recipe, stage) / MANIFEST).exists()


def read_manifest(directory: Path) -> StageManifest:
    path = Path(directory) / MANIFEST
    content = read_json(path)
    if not isinstance(content, dict):
        raise UsageError(f"{path}: a stage.json is a JSON object (name, stage, parent, recipe, ...), "
                         f"got {type(content).__name__}")
    return manifest_from_json(content)


def manifest_hash(directory: Path) -> str:
    return read_manifest(directory).hash


def guard_overwrite(recipe: Recipe, stage: str, overwrite: bool) -> None:
    """Refuse to touch a finished stage unless overwrite=true; with it, clear the stage dir."""
    directory = stage_dir(recipe, stage)
    if refuse_overwrite(directory, (MANIFEST,), overwrite=overwrite, what=f"stage {stage!r}, which is already finished",
                        again="train it again"):
        shutil.rmtree(directory)


def write_manifest(recipe: Recipe, stage: str, **fields: Any) -> StageManifest:
    """stage.json: resolved recipe, parent + its hash, git commit, package versions, seed, and `fields`
    (the base stage passes its `trainer`: pretrain or none)."""
    parent = recipe.parent_of(stage)
    given = fields.pop("trainer", None)
    trainer = given if stage == BASE else recipe.stages[stage].trainer
    manifest = to_jsonable({
        "name": recipe.name, "stage": stage, "chain_index": recipe.stage_names.index(stage),
        "output_dir": str(chain_dir(recipe).resolve()),
        "trainer": trainer, "parent": parent,
        "parent_hash": manifest_hash(stage_dir(recipe, parent)) if parent else None,
        **fields, **provenance(seed=recipe.seed, recipe=recipe.to_dict()),
    })
    write_json(stage_dir(recipe, stage) / MANIFEST, manifest)
    return manifest_from_json(manifest)


def external_model(recipe: Recipe, stage: str) -> str | None:
    """The model reference a stage names itself (the base's model.path, a `measure` stage's model), with a
    local path resolved from the recipe's folder; None for a stage the chain trains."""
    if stage == BASE:
        path = recipe.model.path if recipe.model.pretrain is None else None
    else:
        path = recipe.stages[stage].model if recipe.stages[stage].external else None
    if path is None or is_hub_id(path) or path.startswith(PACKAGE_PREFIX):
        return path
    return str(resolve_path(path, recipe.base_dir))


def external_model_files(recipe: Recipe, stage: str) -> dict:
    """What an external stage's stage.json records of its model: the reference, a GGUF's name, sha256, size
    and quantization, and the sha256 of every checkpoint file loaded (measure/sampling/model_source.py)."""
    return resolve_model(external_model(recipe, stage), f"{stage}.model").provenance()


def model_source(recipe: Recipe, stage: str) -> str:
    """Where `stage`'s full (merged) model loads from: a stage dir, or the loadable checkpoint of an external
    model (a hub id, a local dir, or a GGUF file / package converted once; measure/sampling/model_source.py)."""
    external = external_model(recipe, stage)
    if external is not None:
        return resolve_model(external, f"{stage}.model").path
    return str(stage_dir(recipe, stage))


def require_finished_parent(recipe: Recipe, stage: str) -> str:
    parent = recipe.stages[stage].parent
    if not is_finished(recipe, parent):
        raise UsageError(f"stage {stage!r} starts from {parent!r}, which is not finished "
                         f"({stage_dir(recipe, parent) / MANIFEST} is missing); run that stage first "
                         f"(python -m train.chain recipe={recipe.path} runs the whole chain)")
    return parent


def load_model(source: str, dtype: str | None = None):
    """A full model to train or merge on: pickled weights only weights-only (measure's load_causal_lm)."""
    import torch
    torch_dtype = getattr(torch, dtype) if dtype else "auto"
    return load_causal_lm(source, dtype=torch_dtype)


def save_stage_model(model, tokenizer, directory: Path, *, is_peft: bool) -> dict:
    """Save adapter (if PEFT) under adapter/, and the merged full model + tokenizer at the stage root."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"merged_model": str(directory)}
    if is_peft:
        adapter_dir = directory / "adapter"
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        out["adapter"] = str(adapter_dir)
        model = model.merge_and_unload()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return out


def checkpoint_complete(path: Path) -> bool:
    """transformers writes trainer_state.json last in a checkpoint (after weights, optimizer, scheduler,
    RNG state), so a checkpoint is complete when that file parses and names this checkpoint's step."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and state.get("global_step") == int(path.name.split("-")[-1])


def trainer_checkpoint(directory: Path) -> str | None:
    """The newest *complete* Trainer checkpoint to resume from, if an earlier run of this stage was
    interrupted. Torn ones (a kill between transformers' writes) are skipped with a warning; none
    complete -> None (train from the start)."""
    ckpts = [p for p in (directory / "trainer").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for path in sorted(ckpts, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if checkpoint_complete(path):
            return str(path)
        print(f"[alignment-tax] warning: skipping the incomplete Trainer checkpoint {path} "
              "(no readable trainer_state.json: interrupted while saving)", file=sys.stderr)
    return None


def summarize_log(log_history: list[dict]) -> dict:
    losses = [e["loss"] for e in log_history if "loss" in e]
    final = next((e for e in reversed(log_history) if "train_runtime" in e), {})
    return {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "n_logged": len(losses), **final, "log_history": log_history}
