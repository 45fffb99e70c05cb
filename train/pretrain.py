"""Base stage: a hub/local model as is, or a tiny model built locally and pretrained from scratch.

    accelerate launch train/pretrain.py recipe=recipes/toy.yaml [overwrite=true] [model.pretrain.args.num_train_epochs=2]

With `model.build`, a byte-level BPE tokenizer is trained on the corpus and a randomly initialised
llama/qwen2 model of the given sizes is created (train/tiny.py); with `model.pretrain`, TRL's
SFTTrainer then trains every parameter on the `text` dataset (plain causal LM loss). The result is
checkpoints/<name>/base/, which later stages start from. Without `pretrain`, base/stage.json only
points at the hub id or local path.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from measure.backends import load_tokenizer
from measure.errors import exit_on_usage_error
from train import checkpoint as ckpt
from train.stages import finish, measure_after, stage_main, train_with_trl


def ensure_world(recipe: dict) -> None:
    """Generate the recipe's toy world (train/world.py) once; later stages read its splits."""
    if recipe.get("world"):
        from train.world import write_world
        write_world(recipe["world"], seed=recipe["seed"], out_dir=ckpt.world_dir(recipe))


def run_base(recipe: dict, *, overwrite: bool = False, measure: bool = True) -> dict | None:
    from accelerate import PartialState
    from train.data import corpus_texts, load_training_data
    state = PartialState()
    out = ckpt.stage_dir(recipe, "base")
    if state.is_main_process:
        ckpt.guard_overwrite(recipe, "base", overwrite)
        ensure_world(recipe)
    state.wait_for_everyone()
    model_cfg, started = recipe["model"], time.time()
    base_dir, world = Path(recipe["_recipe_path"]).parent, ckpt.world_dir(recipe)
    if "path" in model_cfg and "pretrain" not in model_cfg:
        manifest = None
        if state.is_main_process:
            manifest = ckpt.write_manifest(recipe, "base", trainer="none", merged_model=ckpt.model_source(recipe, "base"),
                                           external=True, model_files=ckpt.external_model_files(recipe, "base"))
            if measure:
                measure_after(recipe, "base")
        state.wait_for_everyone()
        return manifest
    if "build" in model_cfg:
        build = dict(model_cfg["build"])
        source = out / "init"
        if state.is_main_process and not (source / "config.json").exists():
            from train.tiny import build_tiny_model
            corpus_spec = build.pop("corpus", None) or model_cfg["pretrain"]["dataset"]
            texts = corpus_texts(corpus_spec, base_dir=base_dir, world_dir=world, where="model.build.corpus")
            build.pop("corpus", None)
            build_tiny_model(source, texts, seed=recipe["seed"], **build)
        state.wait_for_everyone()
        source = str(source)
    else:
        source = ckpt.model_source({**recipe, "model": {"path": model_cfg["path"]}}, "base")
    fields: dict = {"initial_model": source if "build" not in model_cfg else "built locally (train/tiny.py)",
                    "build": model_cfg.get("build")}
    tokenizer = load_tokenizer(source)
    if "pretrain" in model_cfg:
        dataset, fingerprints = load_training_data(
            model_cfg["pretrain"]["dataset"], trainer="pretrain", prompt_format=recipe["prompt_format"],
            base_dir=base_dir, world_dir=world, where="model.pretrain.dataset")
        model = ckpt.load_model(source, model_cfg.get("dtype"))
        trainer, metrics = train_with_trl("sft", model=model, tokenizer=tokenizer, dataset=dataset,
                                          args=model_cfg["pretrain"].get("args", {}), out=out, seed=recipe["seed"])
        fields.update(finish(trainer, tokenizer, out, is_peft=False), datasets=fingerprints, train_metrics=metrics)
    elif state.is_main_process:  # a built model used untrained
        for item in Path(source).iterdir():
            shutil.move(str(item), out / item.name)
        fields["merged_model"] = str(out)
    manifest = None
    if state.is_main_process:
        shutil.rmtree(out / "init", ignore_errors=True)
        manifest = ckpt.write_manifest(recipe, "base", trainer="pretrain" if "pretrain" in model_cfg else "none",
                                       wall_time_s=round(time.time() - started, 3), **fields)
        if measure:
            measure_after(recipe, "base")
    state.wait_for_everyone()
    return manifest


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    stage_main(None, sys.argv[1:] if argv is None else argv, runner=run_base)


if __name__ == "__main__":
    main()
