"""Stage reuse that knows what it reuses: a finished stage is reused only if it was trained with what the
recipe asks for now, on top of the parent checkpoint that is there now.

    check_reusable(recipe, "dpo", hint)   # UsageError naming the stage and every key that differs

What a stage depends on (`stage_spec`) is read from the resolved recipe its stage.json recorded and
from the current recipe by the same function, so the two are compared like for like: trainer, `from`,
mode, args, dataset specs, resolved LoRA, prompt format, seed, dtype/quantization (base: the model
section and the world). Besides: the content of every local dataset file (sha256 against the
fingerprints stage.json recorded; hub datasets are compared by id/config/split, not downloaded
again; self-generated pairs by the stage.json hash of the stage they were sampled from), and the parent's
stage.json hash (`parent_hash`) against the parent that is finished now.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from measure.common.errors import UsageError
from measure.common.io import sha256_file, to_jsonable
from train import checkpoint as ckpt
from train.manifest import StageManifest
from train.paths import looks_local, resolve_path
from train.recipe import BASE, Recipe


def stage_spec(recipe: Recipe, stage: str) -> dict:
    """What the weights of `stage` depend on, from a typed recipe (current, or as a stage.json recorded it),
    keyed by the recipe's own names so a difference reads like the YAML ('args.beta: 0.1 -> 0.5')."""
    model = dataclasses.asdict(recipe.model)
    if stage == BASE:
        return {"model": model, "seed": recipe.seed, "world": recipe.world,
                "prompt_format": recipe.prompt_format if recipe.model.pretrain is not None else None}
    spec = recipe.stages[stage]
    if spec.external:
        return {"trainer": "measure", "model": spec.model, "from": spec.parent}
    return {"trainer": spec.trainer, "from": spec.parent, "mode": spec.mode, "args": spec.args,
            "dataset": spec.dataset, "lora": spec.lora.settings() if spec.lora else None,
            "prompt_format": spec.prompt_format, "seed": recipe.seed,
            "dtype": model["dtype"], "quantization": model["quantization"]}


def held_out_digests(recipe: Recipe, stage: str) -> list[str | None]:
    """dataset_digests of a dpo stage's `heldout` pairs."""
    return dataset_digests(recipe, stage, recipe.stages[stage].heldout)


def dataset_digests(recipe: Recipe, stage: str, spec=None) -> list[str | None]:
    """sha256 of each local / generated-world dataset file of the stage as it is now (None: a hub dataset; for
    self-generated pairs, the stage.json hash of the stage they are sampled from); `spec`: another dataset
    field of the stage than its training data."""
    if spec is None:
        spec = (recipe.model.pretrain.dataset if recipe.model.pretrain else None) if stage == BASE \
            else recipe.stages[stage].dataset
    if spec is None:
        return []
    out: list[str | None] = []
    for one in spec if isinstance(spec, list) else [spec]:
        one = {"path": one} if isinstance(one, str) else one
        if "self_pairs" in one:   # pairs sampled from an earlier stage: they depend on that stage's stage.json
            source = one["self_pairs"]["from"]
            out.append(ckpt.manifest_hash(ckpt.stage_dir(recipe, source)) if ckpt.is_finished(recipe, source)
                       else "missing")
            continue
        if "world" in one:
            path = ckpt.world_dir(recipe) / f"{one['world']}.jsonl"
        elif looks_local(one["path"]):
            path = resolve_path(one["path"], recipe.base_dir)
        else:
            out.append(None)
            continue
        out.append(sha256_file(path) if path.is_file() else "missing")
    return out


def recorded_digests(manifest: StageManifest) -> list[str | None]:
    sources = [fp for fp in manifest.datasets if "combined_sha256" not in fp]
    return [fp.get("source_hash") if "self_pairs" in fp else fp.get("sha256") for fp in sources]


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(to_jsonable(obj), sort_keys=True))


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """'args.beta: 0.1 -> 0.5' for every leaf that differs (mappings compared key by key)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if old == new else [f"{prefix or 'value'}: {_show(old)} -> {_show(new)}"]


def stale_keys(recipe: Recipe, stage: str) -> list[str]:
    """Why the finished `stage` does not match the recipe (empty: it may be reused)."""
    manifest = ckpt.read_manifest(ckpt.stage_dir(recipe, stage))
    try:
        old = _plain(stage_spec(Recipe.from_mapping(manifest.recipe, recipe.path), stage))
    except (KeyError, TypeError, UsageError):
        old = None  # a stage.json from another layout: nothing to compare against
    out = differences(old, _plain(stage_spec(recipe, stage)))
    now = dataset_digests(recipe, stage)
    before = recorded_digests(manifest)
    if [d for d in now if d is not None] != [d for d in before if d is not None]:
        out.append("datasets: the content of a dataset file (for self-generated pairs: the stage they are sampled "
                   "from) changed since the stage was trained")
    parent = manifest.parent
    if parent is not None:
        if not ckpt.is_finished(recipe, parent):
            out.append(f"parent_hash: the parent {parent!r} is not finished (it will be trained anew)")
        elif manifest.parent_hash != ckpt.manifest_hash(ckpt.stage_dir(recipe, parent)):
            out.append(f"parent_hash: {parent!r} was retrained after this stage was trained on it")
    return out


def check_reusable(recipe: Recipe, stage: str, how: str) -> None:
    """Refuse (exit 2) to reuse a finished stage that does not match; `how` says how to proceed."""
    stale = stale_keys(recipe, stage)
    if stale:
        raise UsageError(f"stage {stage!r} at {ckpt.stage_dir(recipe, stage)} is finished but does not match the "
                         f"recipe ({'; '.join(stale)}); reusing it would misattribute its results. {how}")


def chain_hint(recipe: Recipe) -> str:
    return ("Retrain it with overwrite=true (python -m train.chain ... overwrite=true retrains every stage; "
            "accelerate launch train/<stage>.py ... overwrite=true only that one), or keep it and write this run "
            f"under a new name=<name> (now {recipe.name!r}) or output_dir=<dir>.")


def check_lineage(recipe: Recipe, stage: str, how: str) -> None:
    """Every finished ancestor of `stage` must match the recipe: the new stage.json records this recipe,
    so training on a stale parent would claim settings the parent was not trained with."""
    parent = recipe.parent_of(stage)
    while parent is not None:
        if ckpt.is_finished(recipe, parent):
            check_reusable(recipe, parent, how)
        parent = recipe.parent_of(parent)
