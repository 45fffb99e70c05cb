"""Homogenization during training, the chain's side: a recipe's `measure.during_training` block turned into
the probe each training stage is measured on while it trains, and the same measurement of a stage's saved
Trainer checkpoints afterwards.

    python -m train.dynamics recipe=recipes/toy.yaml stage=dpo [checkpoints=<dir>] [out=<file>] [overwrite=true]

While training (train/stages.py, train/pretrain.py): each stage the block covers gets measure's
HomogenizationCallback (measure/live.py), which writes <stage>/dynamics.jsonl (measure.records.dynamics)
and logs `homogenization/*` through the Trainer's report_to. The probe: `limit` questions of the block's
benchmark (default: the measure section's first; `{world}` paths resolved like the stage measurements),
sampled with the measure section's settings (n_samples: the block's when it gives one).

After the fact (this CLI): every complete checkpoint-* of the stage's Trainer dir (<stage>/trainer/, kept
after a finished stage with `stages.<stage>.keep_checkpoints: true`; or any TRL output_dir given as
checkpoints=) is loaded -- a LoRA checkpoint as its adapter on the base it names, unmerged, as it was
while training -- and measured on the same probe by the same code (measure.measure_live), into the
same dynamics.jsonl: a step already in the file is not measured again (overwrite=true starts the file
afresh); the epoch and the Trainer's log at that step come from the checkpoint's trainer_state.json.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from measure import (DYNAMICS_FILE, BenchmarkSpec, HomogenizationCallback, MeasureSettings, ProbeRecord,
                     load_tokenizer, measure_live, parse_measure_settings, probe_questions, read_probe_records,
                     write_probe_records)
from measure.common.errors import UsageError, exit_on_usage_error, suggest
from measure.common.io import read_json
from train import checkpoint as ckpt
from train.measure_stage import resolve_benchmark_path
from train.options import parse_recipe_cli
from train.recipe import BASE, Recipe, load_recipe


@dataclass(frozen=True)
class Probe:
    """What one stage is measured on, and when."""
    questions: list
    judge: str | None
    settings: MeasureSettings
    prompt_format: str
    every: int | None
    evaluations: int | None
    at_start: bool
    stop_when: dict | None


def trained_stages(recipe: Recipe) -> list[str]:
    stages = [s for s, spec in recipe.stages.items() if not spec.external]
    return [BASE, *stages] if recipe.model.pretrain is not None else stages


def probe_benchmark(recipe: Recipe) -> BenchmarkSpec:
    """The block's benchmark (or the measure section's first) with the block's limit and resolved paths."""
    block = recipe.during_training
    if block.benchmark is not None:
        spec = parse_measure_settings({"benchmarks": [block.benchmark]}, "measure.during_training").benchmarks[0]
    else:
        spec = recipe.measure.benchmarks[0]
    return resolve_benchmark_path(dataclasses.replace(spec, limit=block.limit), recipe)


def probe_for(recipe: Recipe, stage: str) -> Probe | None:
    """The probe of `stage`, or None when the recipe measures nothing during training or not this stage."""
    block = recipe.during_training
    if block is None or stage not in trained_stages(recipe) or (block.stages is not None and stage not in block.stages):
        return None
    settings = recipe.measure
    if block.n_samples is not None:
        settings = dataclasses.replace(settings, n_samples=block.n_samples)
    questions, judge = probe_questions(probe_benchmark(recipe), settings.seed, "measure.during_training.benchmark")
    return Probe(questions, judge, settings, recipe.prompt_format_of(stage), block.every, block.evaluations,
                 block.at_start, block.stop_when)


def dynamics_path(recipe: Recipe, stage: str) -> Path:
    return ckpt.stage_dir(recipe, stage) / DYNAMICS_FILE


def callback_for(recipe: Recipe, stage: str) -> Callable | None:
    """trainer -> the stage's HomogenizationCallback (train_with_trl adds it), or None."""
    probe = probe_for(recipe, stage)
    if probe is None:
        return None
    return lambda trainer: HomogenizationCallback(
        trainer, probe.questions, every=probe.every, evaluations=probe.evaluations, out=dynamics_path(recipe, stage),
        settings=probe.settings, prompt_format=probe.prompt_format, at_start=probe.at_start,
        stop_when=probe.stop_when)


# ---------------------------------------------------------------- saved checkpoints, after the fact

def saved_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, dir) of every complete checkpoint-<step> in a Trainer output dir, by step."""
    found = [(int(p.name.split("-")[-1]), p) for p in Path(directory).glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and ckpt.checkpoint_complete(p)]
    return sorted(found)


def load_checkpoint(path: Path, dtype: str | None = None):
    """A full checkpoint as saved, or a LoRA checkpoint as its adapter on the base model its
    adapter_config.json names (not merged: the arithmetic of the model while it trained)."""
    import torch
    config = path / "adapter_config.json"
    if config.is_file():
        from peft import PeftModel
        base = read_json(config).get("base_model_name_or_path")
        if not base:
            raise UsageError(f"{config}: names no base_model_name_or_path to load the adapter on")
        model = PeftModel.from_pretrained(ckpt.load_model(base, dtype), path)
    else:
        model = ckpt.load_model(str(path), dtype)
    return model.to("cuda" if torch.cuda.is_available() else "cpu")


def trainer_log(path: Path, step: int) -> tuple[float | None, dict]:
    """(epoch, what the Trainer logged at `step`) from a checkpoint's trainer_state.json."""
    state = read_json(path / "trainer_state.json")
    logged = {k: v for e in state.get("log_history", []) if e.get("step") == step and "train_runtime" not in e
              for k, v in e.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return state.get("epoch"), logged


def measure_checkpoints(recipe: Recipe, stage: str, *, checkpoints: Path | None = None, out: Path | None = None,
                        overwrite: bool = False) -> list[ProbeRecord]:
    """Measure every saved checkpoint of `stage` not yet in `out` on the stage's probe; returns the file's records."""
    probe = probe_for(recipe, stage)
    if probe is None:
        raise UsageError(f"stage {stage!r}: the recipe measures nothing during training for it; add a "
                         "measure.during_training block (every: <steps> or evaluations: <n>, limit: <questions>)"
                         + (f" that covers {stage!r}" if recipe.during_training is not None else ""))
    directory = Path(checkpoints) if checkpoints is not None else ckpt.stage_dir(recipe, stage) / "trainer"
    found = saved_checkpoints(directory)
    if not found:
        raise UsageError(f"{directory}: no complete checkpoint-* to measure (a finished stage keeps them only with "
                         f"stages.{stage}.keep_checkpoints: true and args.save_steps; or give checkpoints=<a Trainer "
                         "output_dir>)")
    out = Path(out) if out is not None else dynamics_path(recipe, stage)
    records = [] if overwrite else read_probe_records(out)
    done = {r.step for r in records}
    for step, path in found:
        if step in done:
            print(f"[dynamics] {stage}: step {step} is already in {out}, skipping {path.name}")
            continue
        print(f"[dynamics] {stage}: measuring {path}")
        model = load_checkpoint(path, recipe.model.dtype)
        live = measure_live(model, load_tokenizer(str(path)), probe.questions, probe.settings, probe.prompt_format,
                            judge=probe.judge)
        epoch, logged = trainer_log(path, step)
        records.append(ProbeRecord(step=step, epoch=epoch, measures=live.measures, intervals=live.intervals,
                                   train=logged, n_questions=live.n_questions, seconds=round(live.seconds, 3),
                                   source=path.name))
        write_probe_records(out, records)   # after each checkpoint: a kill keeps what was measured
        del model
    return read_probe_records(out)


@dataclass(frozen=True)
class DynamicsOptions:
    recipe: str | None = field(default=None, metadata={"help": "the recipe file", "required": True,
                                                       "placeholder": "<path to recipes/NAME.yaml>"})
    stage: str | None = field(default=None, metadata={"help": "the stage whose checkpoints are measured",
                                                      "required": True, "placeholder": "<stage>"})
    checkpoints: str | None = field(default=None, metadata={"help": "a Trainer output_dir holding checkpoint-*; "
                                                            "default: <stage>/trainer"})
    out: str | None = field(default=None, metadata={"help": "the dynamics.jsonl written; default: <stage>/dynamics.jsonl"})
    overwrite: bool = field(default=False, metadata={"help": "start the file afresh instead of adding missing steps"})


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    opts, overrides = parse_recipe_cli(argv, __doc__, DynamicsOptions)
    recipe = load_recipe(opts["recipe"], overrides)
    if opts["stage"] not in recipe.stage_names:
        raise UsageError(f"stage={opts['stage']!r}: not a stage of {recipe.name}"
                         f"{suggest(str(opts['stage']), recipe.stage_names)}")
    records = measure_checkpoints(recipe, opts["stage"], checkpoints=opts["checkpoints"], out=opts["out"],
                                  overwrite=opts["overwrite"])
    print(f"[dynamics] {opts['stage']}: {len(records)} records, steps {[r.step for r in records]}")


if __name__ == "__main__":
    main()
