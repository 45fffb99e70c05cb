"""Run a recipe's whole chain in order -- base, then every stage -- skipping stages already finished.

    python -m train.chain recipe=recipes/toy.yaml [overwrite=true] [measure=false] [compare=false] [dpo_effect=false] [dotted overrides]

Each stage runs through the same code as its script (train/pretrain.py, train/sft.py, ...), in this
process. A finished stage (stage.json present) is reused only if it was trained with what the recipe
asks for now, on the parent that is there now (train/reuse.py; else exit 2 naming the stage and the keys
that differ, before anything is written); an interrupted one resumes from its last complete Trainer
checkpoint. After the last stage, when the recipe measures benchmarks, the cross-stage
comparison (python -m measure compare) and the cascade of the last stage are written too, and for a
chain with a DPO stage, <chain>/dpo_effect.json (train/dpo_effect.py: did DPO move its reward margins and
its weights, and the held-out log-probabilities when the stage names `heldout` pairs). When stages were
measured while they trained (`measure.during_training`, train/dynamics.py), <chain>/dynamics.png shows
it across the chain (train/dynamics_plot.py), also as a section of compare.html.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

from measure import load_tokenizer
from measure.common.errors import exit_on_usage_error
from measure.common.io import read_json, write_json
from train import checkpoint as ckpt
from train.data import load_training_data
from train.dpo_effect import write_report
from train.dynamics_plot import write_chain_picture
from train.measure_stage import compare_and_cascade
from train.pretrain import run_base
from train.recipe import BASE, Recipe, load_recipe, resolved_args
from train.reuse import chain_hint, check_reusable
from train.self_pairs import check_recipe as check_self_pairs
from train.stages import check_chat_template, measure_after, run_stage
from train.options import RecipeOptions, parse_recipe_cli
from train.outputs import check_chain, claim_chain


def preflight(recipe: Recipe) -> None:
    """Load every file/hub dataset once before anything is written, so a malformed row fails first.
    (Generated toy-world splits are checked when they are generated, self-generated pairs when they are
    sampled; their prompts are checked here.)"""
    jobs = [(f"stages.{s}.dataset", spec.dataset, spec.trainer, spec.prompt_format)
            for s, spec in recipe.stages.items() if not spec.external]
    if recipe.model.pretrain is not None:
        jobs.append(("model.pretrain.dataset", recipe.model.pretrain.dataset, "pretrain", recipe.prompt_format))
    for where, spec, trainer, prompt_format in jobs:
        specs = spec if isinstance(spec, list) else [spec]
        if any(isinstance(one, dict) and ("world" in one or "self_pairs" in one) for one in specs):
            continue
        load_training_data(spec, trainer=trainer, prompt_format=prompt_format, base_dir=recipe.base_dir, where=where)
    check_self_pairs(recipe)   # self-generated pairs: their prompts load and are not evaluation questions
    # a chat stage on a given base model without a chat template (a pretrained base): fail now, not after
    # the base is measured (a built/pretrained base gets its tokenizer later; train/stages.py checks it then)
    chat_on_base = [s for s, spec in recipe.stages.items() if not spec.external and spec.parent == BASE
                    and spec.prompt_format == "chat"]
    if chat_on_base and ckpt.external_model(recipe, BASE) is not None:
        tokenizer = load_tokenizer(ckpt.model_source(recipe, BASE))
        for stage in chat_on_base:
            check_chat_template(recipe, stage, tokenizer, resolved_args(recipe.stages[stage].args, recipe.base_dir))


def run_chain(recipe: Recipe, *, overwrite: bool = False, measure: bool = True, compare: bool = True,
              effect: bool = True) -> dict:
    check_chain(recipe, "python -m train.chain")   # output_dir and the recipe's inputs, before any work
    preflight(recipe)
    timings_path = ckpt.chain_dir(recipe) / "chain_timings.json"
    # a reused stage keeps the seconds of the run that trained it, so the file always tells real cost
    previous = read_json(timings_path) if timings_path.exists() else {}
    timings: dict[str, float] = {}
    reused: list[str] = []
    if not overwrite:  # before anything is written: a finished stage is reused only if it matches the recipe
        for stage in recipe.stage_names:
            if ckpt.is_finished(recipe, stage):
                check_reusable(recipe, stage, chain_hint(recipe))
    claim_chain(recipe)
    write_json(ckpt.chain_dir(recipe) / "chain.json", {"name": recipe.name, "stages": recipe.stage_names,
                                                       "output_dir": str(ckpt.chain_dir(recipe).resolve()),
                                                       "recipe": recipe.to_dict()})
    for stage in recipe.stage_names:
        started = time.time()
        if ckpt.is_finished(recipe, stage) and not overwrite:
            print(f"[chain] {stage}: finished, reusing {ckpt.stage_dir(recipe, stage)}")
            reused.append(stage)
            if measure:
                measure_after(recipe, stage, shard=True)  # every process is here: resume or reuse, sharded
        else:
            print(f"[chain] {stage}: running")
            if stage == BASE:
                run_base(recipe, overwrite=overwrite, measure=measure)
            else:
                run_stage(recipe, stage, overwrite=overwrite, measure=measure)
        gc.collect()
        timings[stage] = round(time.time() - started, 2)
        print(f"[chain] {stage}: done in {timings[stage]:.1f}s")
        if stage in reused and isinstance(previous.get(stage), (int, float)):
            timings[stage] = previous[stage]
    if measure and compare and recipe.measure.benchmarks and len(recipe.stage_names) > 1:
        started = time.time()
        compare_and_cascade(recipe, overwrite=True)  # derived from the stage reports: always rebuilt
        timings["compare+cascade"] = round(time.time() - started, 2)
    if effect and any(spec.trainer == "dpo" for spec in recipe.stages.values()):
        started = time.time()
        write_report(recipe)  # <chain>/dpo_effect.json: did DPO move its margins and its weights
        timings["dpo_effect"] = round(time.time() - started, 2)
    started = time.time()
    if write_chain_picture(recipe) is not None:   # the stages' dynamics.jsonl on one axis (measure.during_training)
        timings["dynamics"] = round(time.time() - started, 2)
    write_json(timings_path, {**timings, "reused": reused})
    return timings


@dataclass(frozen=True)
class ChainOptions(RecipeOptions):
    overwrite: bool = field(default=False, metadata={"help": "retrain finished stages (default: reuse them)"})
    measure: bool = field(default=True, metadata={"help": "measure every stage (the recipe's measure section, "
                                                   "measure.during_training included)"})
    compare: bool = field(default=True, metadata={"help": "compare the stages and run the cascade after the chain"})
    dpo_effect: bool = field(default=True, metadata={"help": "write the DPO effect report of each dpo stage"})


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    opts, overrides = parse_recipe_cli(argv, __doc__, ChainOptions)
    recipe = load_recipe(opts["recipe"], overrides)
    run_chain(recipe, overwrite=opts["overwrite"], measure=opts["measure"], compare=opts["compare"],
              effect=opts["dpo_effect"])


if __name__ == "__main__":
    main()
