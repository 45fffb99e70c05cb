"""The one stage runner behind train/pretrain.py, sft.py, dpo.py (and the mitigation trainers).

It does what every stage script would otherwise repeat: guard the output, load the parent model
(merged, or its LoRA adapter for `mode: continue`), load the data in TRL's format, build the TRL
config from the recipe's `args` (names exactly TRL's), hand everything to the TRL trainer, save
adapter + merged model + tokenizer, and write stage.json last. The science lives in TRL.

Scale-out: the same scripts run under the shipped accelerate configs,
    accelerate launch --config_file recipes/accelerate/{ddp,fsdp,zero3}.yaml train/sft.py recipe=...
(FSDP / ZeRO-3 weights are gathered through Trainer.save_model before the merge, see `finish`), and
with `model.quantization` (QLoRA) the parent of every LoRA stage is loaded in 4 bit (bitsandbytes);
the adapter is then merged into the unquantized parent, so checkpoints stay plain full-precision.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from measure import leave_process_group, load_causal_lm, load_tokenizer
from measure.common.errors import UsageError
from train import checkpoint as ckpt
from train.data import load_training_data
from train.dynamics import callback_for
from train.manifest import StageManifest
from train.options import StageOptions, parse_recipe_cli
from train.outputs import check_chain, claim_chain
from train.measure_stage import measure_stage
from train.recipe import LoraSpec, Recipe, load_recipe, resolved_args
from train.reuse import chain_hint, check_lineage
from train.self_pairs import prepare as prepare_pairs
from train.trainers import TRAINER_SPECS


# transformers 5.x renamed gradient checkpointing (the old name is a deprecated alias until v6): set the
# name the installed config class has, and leave both alone when the recipe's args name either
CHECKPOINTING = ("activation_checkpointing", "gradient_checkpointing")


def cpu_safe_defaults(config_class, args: dict) -> dict[str, Any]:
    """Defaults that keep a CPU run working: TRL defaults bf16 and gradient checkpointing on."""
    import torch
    has_gpu = torch.cuda.is_available()
    defaults = {"bf16": has_gpu and torch.cuda.is_bf16_supported(), "report_to": "none", "save_total_limit": 2,
                "use_cpu": not has_gpu}
    names = {f.name for f in dataclasses.fields(config_class)}
    if not any(k in args for k in CHECKPOINTING):
        defaults[next(n for n in CHECKPOINTING if n in names)] = False
    return defaults


def build_config(trainer: str, args: dict, output_dir: Path, seed: int):
    cls = TRAINER_SPECS[trainer].config_class()
    values = {**cpu_safe_defaults(cls, args), "seed": seed, "data_seed": seed, **args, "output_dir": str(output_dir)}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:  # TRL/transformers reject a value combination
        raise UsageError(f"{trainer} args rejected by {cls.__name__}: {e}") from None


def lora_config(lora: LoraSpec):
    from peft import LoraConfig
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def quantization_config(recipe: Recipe):
    """QLoRA: `model.quantization` -> transformers.BitsAndBytesConfig (None when the recipe has none)."""
    quant = recipe.model.quantization
    if quant is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=quant.load_in_4bit, bnb_4bit_quant_type=quant.bnb_4bit_quant_type,
                              bnb_4bit_compute_dtype=getattr(torch, quant.bnb_4bit_compute_dtype),
                              bnb_4bit_use_double_quant=quant.bnb_4bit_use_double_quant)


def load_parent(recipe: Recipe, source: str, *, quantized: bool):
    """The parent model: as stored, or (QLoRA) in 4 bit on this process's GPU -- bitsandbytes weights
    cannot be moved after loading, so each DDP rank loads its own copy onto its own device."""
    if not quantized:
        return ckpt.load_model(source, recipe.model.dtype)
    from accelerate import PartialState
    config = quantization_config(recipe)
    return load_causal_lm(source, quantization_config=config, dtype=config.bnb_4bit_compute_dtype,
                          device_map={"": PartialState().local_process_index})


def prepare_model(recipe: Recipe, stage: str):
    """(model, tokenizer, peft_config, adapter_base, mode) for a training stage."""
    from peft import PeftModel
    spec = recipe.stages[stage]
    parent = ckpt.require_finished_parent(recipe, stage)
    parent_source = ckpt.model_source(recipe, parent)
    tokenizer = load_tokenizer(parent_source)
    lora = spec.lora
    quantized = lora is not None and recipe.model.quantization is not None  # QLoRA: only LoRA stages go 4-bit
    if spec.mode == "continue":
        parent_manifest = ckpt.read_manifest(ckpt.stage_dir(recipe, parent))
        if not parent_manifest.adapter:
            raise UsageError(f"stage {stage!r}: mode 'continue' needs a LoRA adapter in the parent {parent!r}")
        base = load_parent(recipe, parent_manifest.adapter_base, quantized=quantized)
        model = PeftModel.from_pretrained(base, parent_manifest.adapter, is_trainable=True)
        # TRL adds a frozen 'ref' copy of this adapter as the reference model
        return model, tokenizer, None, parent_manifest.adapter_base, "continue"
    model = load_parent(recipe, parent_source, quantized=quantized)
    # merge: the parent is already merged into `model`; a fresh adapter trains on top, and with the
    # adapter disabled the model *is* the parent, which TRL uses as the reference (no second copy)
    return model, tokenizer, (lora_config(lora) if lora else None), parent_source, "merge"


def check_chat_template(recipe: Recipe, stage: str, tokenizer, args: dict) -> None:
    """A `chat` stage renders its data with the parent tokenizer's chat template. A pretrained base model
    often has none (google/gemma-3-270m): say so before training, and how to give one, instead of
    TRL's error from inside its dataset preprocessing. An SFT stage can set it (TRL's
    `chat_template_path`); the stage then saves it with its tokenizer, so later stages inherit it."""
    spec = recipe.stages[stage]
    if spec.prompt_format != "chat" or getattr(tokenizer, "chat_template", None) or args.get("chat_template_path"):
        return
    parent = spec.parent
    fields = {f.name for f in dataclasses.fields(TRAINER_SPECS[spec.trainer].config_class())}
    fix = (f"set stages.{stage}.args.chat_template_path to a template file (recipes/chat_templates/gemma3.jinja "
           "for Gemma 3) or a tokenizer to copy it from" if "chat_template_path" in fields
           else "give an earlier SFT stage a chat template (its args.chat_template_path)")
    raise UsageError(f"stage {stage!r}: prompt_format 'chat' needs a chat template, and the tokenizer of its parent "
                     f"{parent!r} has none; {fix}, or train and measure it in prompt_format: qa")


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def train_with_trl(trainer_name: str, *, model, tokenizer, dataset, args: dict, out: Path, seed: int,
                   peft_config=None, callbacks: Sequence[Callable] = ()) -> tuple[Any, dict]:
    """Build the TRL config + trainer, train (resuming from the last checkpoint), return (trainer, metrics).
    callbacks: functions trainer -> TrainerCallback (a callback that needs its trainer, measure.live's)."""
    config = build_config(trainer_name, args, out / "trainer", seed)
    trainer_cls = TRAINER_SPECS[trainer_name].trainer_class()
    kwargs: dict[str, Any] = {"model": model, "args": config, "train_dataset": dataset, "processing_class": tokenizer}
    if peft_config is not None:
        kwargs["peft_config"] = peft_config
    trainer = trainer_cls(**kwargs)
    for make in callbacks:
        trainer.add_callback(make(trainer))
    resume = ckpt.trainer_checkpoint(out)
    if resume and trainer.accelerator.is_main_process:
        print(f"[alignment-tax] resuming {out.name} from {resume}")
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {**result.metrics, **ckpt.summarize_log(trainer.state.log_history), "global_step": result.global_step,
               "resumed_from": resume,
               "parameters": count_parameters(trainer.model)}
    return trainer, metrics


def needs_gather(trainer) -> bool:
    """FSDP and DeepSpeed (ZeRO-3) shard the weights across processes: only Trainer.save_model, called on
    every process, can assemble them (FULL_STATE_DICT / zero3_save_16bit_model in recipes/accelerate)."""
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))


def finish(trainer, tokenizer, out: Path, *, is_peft: bool, merge_base: str | None = None,
           dtype: str | None = None, keep_checkpoints: bool = False) -> dict:
    """Save adapter (if PEFT) + merged model + tokenizer; every process returns once the dir is complete.

    Plain runs (one process, DDP): the main process saves `trainer.model` directly. Sharded runs
    (FSDP, ZeRO-3) and QLoRA (`merge_base` given) go through `Trainer.save_model` on every process
    into out/gathered/ (full weights, or the adapter alone for PEFT); the main process then reloads
    that on CPU -- a PEFT adapter on top of the *unquantized* parent from `merge_base` -- merges, and
    saves, so the stage's merged model is always a plain full-precision transformers checkpoint.
    The Trainer's checkpoints (out/trainer/) are removed once the stage is saved, unless keep_checkpoints."""
    paths: dict[str, Any] = {}
    main = trainer.accelerator.is_main_process
    if needs_gather(trainer) or merge_base is not None:
        gathered = out / "gathered"
        trainer.save_model(str(gathered))  # a collective under FSDP/ZeRO-3: every process must call it
        trainer.accelerator.wait_for_everyone()
        if main:
            if is_peft:
                from peft import PeftModel
                if merge_base is None:
                    raise ValueError("finish: a sharded PEFT stage needs merge_base (the adapter's base model)")
                model = PeftModel.from_pretrained(ckpt.load_model(merge_base, dtype), gathered)
            else:
                model = ckpt.load_model(str(gathered), dtype)
            paths = ckpt.save_stage_model(model, tokenizer, out, is_peft=is_peft)
            shutil.rmtree(gathered, ignore_errors=True)
    elif main:
        paths = ckpt.save_stage_model(trainer.model, tokenizer, out, is_peft=is_peft)
    if main and not keep_checkpoints:
        shutil.rmtree(out / "trainer", ignore_errors=True)  # resume state is no longer needed
    trainer.accelerator.wait_for_everyone()
    return paths


def run_stage(recipe: Recipe, stage: str, *, overwrite: bool = False, measure: bool = True) -> StageManifest | None:
    """Train one stage of the recipe (which must be a training stage) and write its checkpoint."""
    from accelerate import PartialState
    spec = recipe.stage(stage)
    state = PartialState()
    check_lineage(recipe, stage, chain_hint(recipe))  # before the overwrite guard clears anything
    if state.is_main_process:
        ckpt.guard_overwrite(recipe, stage, overwrite)
        claim_chain(recipe)   # the first write of this stage: every check has passed
    state.wait_for_everyone()
    if spec.external:
        return register_external(recipe, stage, measure=measure)
    started = time.time()
    out = ckpt.stage_dir(recipe, stage)
    # self-generated pairs (train/self_pairs.py): sampled once, by the main process; the others read its files
    built = prepare_pairs(recipe, stage) if state.is_main_process else None
    if state.is_main_process and spec.heldout is not None:
        prepare_pairs(recipe, stage, "heldout")   # sampled now, with the training pairs' source model at hand
    state.wait_for_everyone()
    dataset, fingerprints = load_training_data(
        spec.dataset, trainer=spec.trainer, prompt_format=spec.prompt_format, base_dir=recipe.base_dir,
        world_dir=ckpt.world_dir(recipe), where=f"stages.{stage}.dataset", seed=recipe.seed,
        self_pairs=built if built is not None else prepare_pairs(recipe, stage))
    model, tokenizer, peft_config, adapter_base, mode = prepare_model(recipe, stage)
    args = resolved_args(spec.args, recipe.base_dir)
    check_chat_template(recipe, stage, tokenizer, args)
    # measure.during_training: the probe measured while it trains (measure=false skips every measurement)
    probe = callback_for(recipe, stage) if measure else None
    trainer, metrics = train_with_trl(spec.trainer, model=model, tokenizer=tokenizer, dataset=dataset,
                                      args=args, out=out, seed=recipe.seed, peft_config=peft_config,
                                      callbacks=[probe] if probe else [])
    is_peft = peft_config is not None or mode == "continue"
    quantized = is_peft and recipe.model.quantization is not None
    gather = quantized or (is_peft and needs_gather(trainer))  # the merge needs the adapter's unsharded base
    paths = finish(trainer, tokenizer, out, is_peft=is_peft, merge_base=adapter_base if gather else None,
                   dtype=recipe.model.dtype, keep_checkpoints=spec.keep_checkpoints)
    manifest = None
    if state.is_main_process:
        manifest = ckpt.write_manifest(
            recipe, stage, mode=mode, lora=spec.lora.settings() if spec.lora else None,
            adapter_base=adapter_base if is_peft else None,
            datasets=fingerprints, train_metrics=metrics, wall_time_s=round(time.time() - started, 3), **paths)
        if measure:
            measure_after(recipe, stage)
    state.wait_for_everyone()
    return manifest


def register_external(recipe: Recipe, stage: str, *, measure: bool) -> StageManifest | None:
    """A measure-only stage (a public checkpoint by hub id or path): record it, then measure it.
    Every process calls this, so the measurement is sharded across them (one process: unchanged)."""
    from accelerate import PartialState
    ckpt.require_finished_parent(recipe, stage)  # stage.json records the parent's hash
    state = PartialState()
    manifest = None
    if state.is_main_process:
        manifest = ckpt.write_manifest(recipe, stage, mode="measure-only", merged_model=ckpt.model_source(recipe, stage),
                                       external=True, model_files=ckpt.external_model_files(recipe, stage))
    state.wait_for_everyone()
    if measure:
        measure_after(recipe, stage, shard=True)
    return manifest


def measure_after(recipe: Recipe, stage: str, *, shard: bool = False) -> None:
    """Measure a finished stage when the recipe has benchmarks in its `measure` section.

    shard=True only where every process of the launch calls this (it splits the questions across
    them and synchronizes); the training stages call it from the main process alone (shard=False)."""
    if recipe.measure.benchmarks:
        measure_stage(recipe, stage, shard=shard)


def stage_main(trainer: str | None, argv: list[str] | None, doc: str | None = None, *,
               runner: Callable | None = None) -> None:
    """Shared CLI of the stage scripts: recipe=... [stage=...] [overwrite=true] [measure=false] [dotted overrides]
    (train/options.py StageOptions; `--help` prints the script's docstring `doc` and them)."""
    opts, overrides = parse_recipe_cli(argv, doc or __doc__, StageOptions)
    recipe = load_recipe(opts["recipe"], overrides)
    check_chain(recipe, f"train/{trainer or 'pretrain'}.py")   # output_dir and the recipe's inputs, before any work
    if runner is not None:  # pretrain: the base stage has its own runner
        runner(recipe, overwrite=opts["overwrite"], measure=opts["measure"])
        leave_process_group()
        return
    stages = [s for s, spec in recipe.stages.items() if spec.trainer == trainer]
    stage = opts["stage"] or (stages[0] if len(stages) == 1 else None)
    if stage is None:
        raise UsageError(f"the recipe has {len(stages)} {trainer!r} stages ({', '.join(stages) or 'none'}); "
                         f"pick one with stage=<name>")
    if stage not in recipe.stages or recipe.stages[stage].trainer != trainer:
        raise UsageError(f"stage={stage!r} is not a {trainer!r} stage of this recipe; its {trainer!r} stages: "
                         f"{', '.join(stages) or 'none'}")
    run_stage(recipe, stage, overwrite=opts["overwrite"], measure=opts["measure"])
    leave_process_group()
