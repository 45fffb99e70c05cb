"""The one stage runner behind train/pretrain.py, sft.py, dpo.py (and the mitigation trainers).

It does what every stage script would otherwise repeat: guard the output, load the parent model
(merged, or its LoRA adapter for `mode: continue`), load the data in TRL's format, build the TRL
config from the recipe's `args` (names exactly TRL's), hand everything to the TRL trainer, save
adapter + merged model + tokenizer, and write stage.json last. The science lives in TRL.
"""
from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from measure.errors import UsageError
from train import checkpoint as ckpt


@dataclass(frozen=True)
class TrainerSpec:
    module: str          # where the TRL classes live
    config: str
    trainer: str
    reference: bool      # trains against a reference model (a frozen copy, or the adapter disabled)

    def _attr(self, name: str):
        try:
            return getattr(importlib.import_module(self.module), name)
        except (ImportError, AttributeError) as e:
            import trl
            raise UsageError(f"{name} is not available in the installed TRL {trl.__version__} "
                             f"(looked in {self.module}): {e}") from None

    def config_class(self):
        return self._attr(self.config)

    def trainer_class(self):
        return self._attr(self.trainer)


TRAINER_SPECS: dict[str, TrainerSpec] = {
    "sft": TrainerSpec("trl", "SFTConfig", "SFTTrainer", reference=False),
    "dpo": TrainerSpec("trl", "DPOConfig", "DPOTrainer", reference=True),
    "kto": TrainerSpec("trl", "KTOConfig", "KTOTrainer", reference=True),
    "orpo": TrainerSpec("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer", reference=False),
    "cpo": TrainerSpec("trl.experimental.cpo", "CPOConfig", "CPOTrainer", reference=False),
}


def cpu_safe_defaults() -> dict[str, Any]:
    """Defaults that keep a CPU run working: TRL defaults bf16 and gradient checkpointing on."""
    import torch
    has_gpu = torch.cuda.is_available()
    return {"bf16": has_gpu and torch.cuda.is_bf16_supported(), "gradient_checkpointing": False,
            "report_to": "none", "save_total_limit": 2, "use_cpu": not has_gpu}


def build_config(trainer: str, args: dict, output_dir: Path, seed: int):
    cls = TRAINER_SPECS[trainer].config_class()
    values = {**cpu_safe_defaults(), "seed": seed, "data_seed": seed, **args, "output_dir": str(output_dir)}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:  # TRL/transformers reject a value combination
        raise UsageError(f"{trainer} args rejected by {cls.__name__}: {e}") from None


def lora_config(settings: dict):
    from peft import LoraConfig
    return LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                      target_modules=settings["target_modules"], task_type="CAUSAL_LM")


def prepare_model(recipe: dict, stage: str):
    """(model, tokenizer, peft_config, adapter_base, mode) for a training stage."""
    from peft import PeftModel
    from train.recipe import lora_settings
    spec = recipe["stages"][stage]
    parent = ckpt.require_finished_parent(recipe, stage)
    parent_source = ckpt.model_source(recipe, parent)
    tokenizer = ckpt.load_tokenizer(parent_source)
    lora = lora_settings(recipe, stage)
    if spec["mode"] == "continue":
        parent_manifest = ckpt.read_manifest(ckpt.stage_dir(recipe, parent))
        if not parent_manifest.get("adapter"):
            raise UsageError(f"stage {stage!r}: mode 'continue' needs a LoRA adapter in the parent {parent!r}")
        base = ckpt.load_model(parent_manifest["adapter_base"], recipe["model"].get("dtype"))
        model = PeftModel.from_pretrained(base, parent_manifest["adapter"], is_trainable=True)
        # TRL adds a frozen 'ref' copy of this adapter as the reference model
        return model, tokenizer, None, parent_manifest["adapter_base"], "continue"
    model = ckpt.load_model(parent_source, recipe["model"].get("dtype"))
    # merge: the parent is already merged into `model`; a fresh adapter trains on top, and with the
    # adapter disabled the model *is* the parent, which TRL uses as the reference (no second copy)
    return model, tokenizer, (lora_config(lora) if lora else None), parent_source, "merge"


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def train_with_trl(trainer_name: str, *, model, tokenizer, dataset, args: dict, out: Path, seed: int,
                   peft_config=None) -> tuple[Any, dict]:
    """Build the TRL config + trainer, train (resuming from the last checkpoint), return (trainer, metrics)."""
    config = build_config(trainer_name, args, out / "trainer", seed)
    trainer_cls = TRAINER_SPECS[trainer_name].trainer_class()
    kwargs: dict[str, Any] = {"model": model, "args": config, "train_dataset": dataset, "processing_class": tokenizer}
    if peft_config is not None:
        kwargs["peft_config"] = peft_config
    trainer = trainer_cls(**kwargs)
    resume = ckpt.trainer_checkpoint(out)
    if resume and trainer.accelerator.is_main_process:
        print(f"[alignment-tax] resuming {out.name} from {resume}")
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {**result.metrics, **ckpt.summarize_log(trainer.state.log_history), "resumed_from": resume,
               "parameters": count_parameters(trainer.model)}
    return trainer, metrics


def finish(trainer, tokenizer, out: Path, *, is_peft: bool) -> dict:
    """Main process: save model artifacts; every process waits so none reads a half-written dir."""
    paths: dict[str, Any] = {}
    if trainer.accelerator.is_main_process:
        paths = ckpt.save_stage_model(trainer.model, tokenizer, out, is_peft=is_peft)
        shutil.rmtree(out / "trainer", ignore_errors=True)  # resume state is no longer needed
    trainer.accelerator.wait_for_everyone()
    return paths


def run_stage(recipe: dict, stage: str, *, overwrite: bool = False, measure: bool = True) -> dict | None:
    """Train one stage of the recipe (which must be a training stage) and write its checkpoint."""
    from accelerate import PartialState
    from train.data import load_training_data
    spec = recipe["stages"].get(stage)
    if spec is None:
        raise UsageError(f"unknown stage {stage!r}; the recipe's stages are: {', '.join(recipe['stages']) or '(none)'}")
    state = PartialState()
    if state.is_main_process:
        ckpt.guard_overwrite(recipe, stage, overwrite)
    state.wait_for_everyone()
    if spec["trainer"] == "measure":
        return register_external(recipe, stage, measure=measure)
    started = time.time()
    out = ckpt.stage_dir(recipe, stage)
    dataset, fingerprints = load_training_data(
        spec["dataset"], trainer=spec["trainer"], prompt_format=recipe["prompt_format"],
        base_dir=Path(recipe["_recipe_path"]).parent, world_dir=ckpt.world_dir(recipe),
        where=f"stages.{stage}.dataset", seed=recipe["seed"])
    model, tokenizer, peft_config, adapter_base, mode = prepare_model(recipe, stage)
    trainer, metrics = train_with_trl(spec["trainer"], model=model, tokenizer=tokenizer, dataset=dataset,
                                      args=spec["args"], out=out, seed=recipe["seed"], peft_config=peft_config)
    is_peft = peft_config is not None or mode == "continue"
    paths = finish(trainer, tokenizer, out, is_peft=is_peft)
    manifest = None
    if state.is_main_process:
        from train.recipe import lora_settings
        manifest = ckpt.write_manifest(
            recipe, stage, mode=mode, lora=lora_settings(recipe, stage), adapter_base=adapter_base if is_peft else None,
            datasets=fingerprints, train_metrics=metrics, wall_time_s=round(time.time() - started, 3), **paths)
        if measure:
            measure_after(recipe, stage)
    state.wait_for_everyone()
    return manifest


def register_external(recipe: dict, stage: str, *, measure: bool) -> dict:
    """A measure-only stage (a public checkpoint by hub id or path): record it, then measure it."""
    source = ckpt.model_source(recipe, stage)
    manifest = ckpt.write_manifest(recipe, stage, mode="measure-only", merged_model=source, external=True)
    if measure:
        measure_after(recipe, stage)
    return manifest


def measure_after(recipe: dict, stage: str) -> None:
    """Measure a finished stage when the recipe has benchmarks in its `measure` section."""
    if (recipe.get("measure") or {}).get("benchmarks"):
        from measure.pipeline import measure_stage
        measure_stage(recipe, stage)


def stage_main(trainer: str | None, argv: list[str], *, runner: Callable | None = None) -> None:
    """Shared CLI of the stage scripts: recipe=... [stage=...] [overwrite=true] [measure=false] [dotted overrides]."""
    from measure.overrides import parse_overrides, pop_known
    from train.recipe import load_recipe
    overrides = parse_overrides(argv)
    opts = pop_known(overrides, {"recipe": None, "stage": None, "overwrite": False, "measure": True})
    if not opts["recipe"]:
        raise UsageError("missing recipe=<path to recipes/NAME.yaml>")
    recipe = load_recipe(opts["recipe"], overrides)
    if runner is not None:  # pretrain: the base stage has its own runner
        runner(recipe, overwrite=bool(opts["overwrite"]), measure=bool(opts["measure"]))
        return
    stages = [s for s, spec in recipe["stages"].items() if spec["trainer"] == trainer]
    stage = opts["stage"] or (stages[0] if len(stages) == 1 else None)
    if stage is None:
        raise UsageError(f"the recipe has {len(stages)} {trainer!r} stages ({', '.join(stages) or 'none'}); "
                         f"pick one with stage=<name>")
    if stage not in recipe["stages"] or recipe["stages"][stage]["trainer"] != trainer:
        raise UsageError(f"stage={stage!r} is not a {trainer!r} stage of this recipe; its {trainer!r} stages: "
                         f"{', '.join(stages) or 'none'}")
    run_stage(recipe, stage, overwrite=bool(opts["overwrite"]), measure=bool(opts["measure"]))
