"""Base stage: a hub/local model as is, or a tiny model built locally and pretrained from scratch.

    accelerate launch train/pretrain.py recipe=recipes/toy.yaml [overwrite=true] [model.pretrain.args.num_train_epochs=2]

With `model.build`, a byte-level BPE tokenizer is trained on the corpus and a randomly initialised
llama/qwen2 model of the given sizes is created (train/tiny.py); with `model.pretrain`, TRL's
SFTTrainer then trains every parameter on the `text` dataset (plain causal LM loss). The result is
checkpoints/<name>/base/, which later stages start from. Without `pretrain`, base/stage.json only
points at the hub id or local path.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from measure import load_tokenizer
from measure.common.errors import exit_on_usage_error
from train import checkpoint as ckpt
from train.data import corpus_texts, load_training_data
from train.dynamics import callback_for
from train.manifest import StageManifest
from train.outputs import claim_chain
from train.recipe import BASE, ModelSpec, Recipe
from train.stages import finish, measure_after, stage_main, train_with_trl
from train.tiny import build_tiny_model
from train.world import write_world


def ensure_world(recipe: Recipe) -> None:
    """Generate the recipe's toy world (train/world.py) once; later stages read its splits."""
    if recipe.world:
        write_world(recipe.world, seed=recipe.seed, out_dir=ckpt.world_dir(recipe))


def run_base(recipe: Recipe, *, overwrite: bool = False, measure: bool = True) -> StageManifest | None:
    from accelerate import PartialState
    state = PartialState()
    out = ckpt.stage_dir(recipe, BASE)
    if state.is_main_process:
        ckpt.guard_overwrite(recipe, BASE, overwrite)
        claim_chain(recipe)   # the first write of the chain's base: every check has passed
        ensure_world(recipe)
    state.wait_for_everyone()
    model_cfg, started = recipe.model, time.time()
    base_dir, world = recipe.base_dir, ckpt.world_dir(recipe)
    if model_cfg.path is not None and model_cfg.pretrain is None:
        manifest = None
        if state.is_main_process:
            manifest = ckpt.write_manifest(recipe, BASE, trainer="none", merged_model=ckpt.model_source(recipe, BASE),
                                           external=True, model_files=ckpt.external_model_files(recipe, BASE))
            if measure:
                measure_after(recipe, BASE)
        state.wait_for_everyone()
        return manifest
    if model_cfg.build is not None:
        build = dict(model_cfg.build)
        source = out / "init"
        if state.is_main_process and not (source / "config.json").exists():
            corpus_spec = build.pop("corpus", None) or model_cfg.pretrain.dataset
            texts = corpus_texts(corpus_spec, base_dir=base_dir, world_dir=world, where="model.build.corpus")
            build_tiny_model(source, texts, seed=recipe.seed, **build)
        state.wait_for_everyone()
        source = str(source)
    else:  # a given model, pretrained further: load it as an external base
        source = ckpt.model_source(dataclasses.replace(recipe, model=ModelSpec(path=model_cfg.path)), BASE)
    fields: dict = {"initial_model": source if model_cfg.build is None else "built locally (train/tiny.py)",
                    "build": model_cfg.build}
    tokenizer = load_tokenizer(source)
    if model_cfg.pretrain is not None:
        dataset, fingerprints = load_training_data(
            model_cfg.pretrain.dataset, trainer="pretrain", prompt_format=recipe.prompt_format,
            base_dir=base_dir, world_dir=world, where="model.pretrain.dataset")
        model = ckpt.load_model(source, model_cfg.dtype)
        probe = callback_for(recipe, BASE) if measure else None   # measure.during_training: a pretrained base too
        trainer, metrics = train_with_trl("sft", model=model, tokenizer=tokenizer, dataset=dataset,
                                          args=model_cfg.pretrain.args, out=out, seed=recipe.seed,
                                          callbacks=[probe] if probe else [])
        fields.update(finish(trainer, tokenizer, out, is_peft=False), datasets=fingerprints, train_metrics=metrics)
    elif state.is_main_process:  # a built model used untrained
        for item in Path(source).iterdir():
            shutil.move(str(item), out / item.name)
        fields["merged_model"] = str(out)
    manifest = None
    if state.is_main_process:
        shutil.rmtree(out / "init", ignore_errors=True)
        manifest = ckpt.write_manifest(recipe, BASE, trainer="pretrain" if model_cfg.pretrain is not None else "none",
                                       wall_time_s=round(time.time() - started, 3), **fields)
        if measure:
            measure_after(recipe, BASE)
    state.wait_for_everyone()
    return manifest


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    stage_main(None, argv, __doc__, runner=run_base)


if __name__ == "__main__":
    main()
