"""Measure a stage of a recipe: the recipe's `measure` section, run on the stage's model (measure.pipeline).

    python -m train.measure_stage recipe=recipes/toy.yaml stage=dpo [overwrite=true] [measure.n_samples=5]
    accelerate launch --num_processes 8 -m train.measure_stage recipe=recipes/zephyr.yaml stage=base   (sharded)

The stage scripts and the chain call `measure_stage` after training; `compare_and_cascade` runs after a
chain. This is the application's side of measurement: it knows recipes, stage dirs and stage.json (the
layout: train/layout.py); `measure` (the library) only ever sees a model reference, settings and an output
dir, and, to compare, an explicit list of measured runs. After measuring, <chain>/runs.json lists the
chain's measured runs (train.layout.write_run_list) for `python -m measure compare checkpoints/<name>`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from measure import (BenchmarkSpec, Report, RunIdentity, leave_process_group, measure_model, measured_with,
                     print_summary, ranks, read_report, run_cascade, stage_table)
from measure.common.errors import UsageError, exit_on_usage_error, suggest
from measure.common.io import provenance
from train import checkpoint as ckpt
from train.layout import benchmark_dir, compare_chain, compare_dirs, write_run_list
from train.paths import resolve_path
from train.recipe import Recipe, load_recipe
from train.options import parse_recipe_cli
from train.outputs import check_chain


def measure_dir(recipe: Recipe, stage: str, benchmark: str) -> Path:
    return benchmark_dir(ckpt.stage_dir(recipe, stage), benchmark)


def resolve_benchmark_path(spec: BenchmarkSpec, recipe: Recipe) -> BenchmarkSpec:
    """Benchmark paths may name the chain's generated world or output dir: "{world}/eval.jsonl"."""
    if spec.path is None:
        return spec
    path = spec.path.format(world=ckpt.world_dir(recipe), output_dir=ckpt.chain_dir(recipe))
    return dataclasses.replace(spec, path=str(resolve_path(path, recipe.base_dir)))


def reusable_report(out: Path, identity: RunIdentity, stage: str) -> Report:
    """The finished report of a stage, if it was measured on this stage's model with these settings."""
    report = read_report(out)
    stale = [k for k in ("stage_hash", "measured_with") if report.settings.get(k) != identity.labels[k]]
    if stale:
        what = {"stage_hash": f"another {stage} model (its stage.json changed)",
                "measured_with": "other measurement settings"}
        raise UsageError(f"{out / 'report.json'} was measured on {' and '.join(what[k] for k in stale)}; "
                         f"re-measure with python -m train.measure_stage recipe=<recipe> stage={stage} overwrite=true "
                         "(the chain's overwrite=true retrains every stage), or measure into a new name=/output_dir=")
    return report


def measure_stage(recipe: Recipe, stage: str, *, overwrite: bool = False, shard: bool = True) -> dict[str, Report]:
    """Measure one stage on each benchmark of the recipe's `measure` section; finished reports are reused.

    The stage is prompted in its own format (Recipe.prompt_format_of: a stage's
    `prompt_format`, else the recipe's). shard: see measure_model (True = every process calls this)."""
    settings = recipe.measure
    say = print if ranks(shard).main else (lambda *a, **k: None)
    reports = {}
    stage_hash = ckpt.manifest_hash(ckpt.stage_dir(recipe, stage))
    for spec in settings.benchmarks:
        out, spec = measure_dir(recipe, stage, spec.name), resolve_benchmark_path(spec, recipe)
        # the library records these labels verbatim and keys its resume cache on the stage.json hash
        identity = RunIdentity(model_key=stage_hash, labels={
            "stage": stage, "chain": recipe.name, "stage_hash": stage_hash,
            "measured_with": measured_with(settings, spec, recipe.prompt_format_of(stage))})
        if (out / "report.json").exists() and not overwrite:
            reports[spec.name] = reusable_report(out, identity, stage)
            say(f"[measure] {stage}/{spec.name}: report exists, reusing {out}")
            continue
        say(f"[measure] {stage}/{spec.name}: measuring")
        reports[spec.name] = measure_model(
            ckpt.model_source(recipe, stage), spec, settings, out,
            prompt_format=recipe.prompt_format_of(stage), overwrite=overwrite, shard=shard,
            provenance=provenance(seed=settings.seed, recipe=recipe.to_dict()), identity=identity)
    if settings.benchmarks and ranks(shard).main:
        try:  # <chain>/runs.json for `python -m measure compare <chain>`; a chain that cannot be ordered yet has none
            write_run_list(ckpt.chain_dir(recipe))
        except UsageError as e:
            say(f"[measure] no runs.json for the chain yet: {e}")
    return reports


def compare_and_cascade(recipe: Recipe, *, overwrite: bool = True) -> None:
    """After a chain: the cross-stage comparison per benchmark, and the cascade on the last stage."""
    settings = recipe.measure
    last = recipe.stage_names[-1]
    outs = compare_dirs(ckpt.chain_dir(recipe), [spec.name for spec in settings.benchmarks])
    for spec in settings.benchmarks:
        result = compare_chain(ckpt.chain_dir(recipe), spec.name, outs[spec.name], overwrite)
        print(stage_table(result, spec.name))
        try:
            run_cascade(measure_dir(recipe, last, spec.name), out_dir=measure_dir(recipe, last, spec.name) / "cascade",
                        seed=settings.seed, overwrite=overwrite)
        except UsageError as e:  # too few labelled questions: the comparison above stands, the cascade is not made
            print(f"[cascade] {last}/{spec.name}: not computed: {e}")


@dataclass(frozen=True)
class MeasureStageOptions:
    recipe: str | None = field(default=None, metadata={"help": "the recipe file (recipes/NAME.yaml)"})
    stage: str | None = field(default=None, metadata={"help": "the stage to measure (base or a recipe stage)"})
    overwrite: bool = field(default=False, metadata={"help": "measure again over a finished report"})


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    opts, args = parse_recipe_cli(argv, __doc__, MeasureStageOptions)
    if not opts["recipe"] or not opts["stage"]:
        raise UsageError("give recipe=recipes/<name>.yaml stage=<stage> (e.g. python -m train.measure_stage "
                         "recipe=recipes/toy.yaml stage=dpo)")
    recipe = load_recipe(opts["recipe"], args)
    if not recipe.measure.benchmarks:
        raise UsageError(f"{opts['recipe']}: the recipe's measure section lists no benchmarks "
                         "(add measure.benchmarks or pass measure.benchmarks=[gsm8k])")
    stage = opts["stage"]
    if stage not in recipe.stage_names:
        raise UsageError(f"stage={stage!r}: not a stage of {recipe.name}{suggest(str(stage), recipe.stage_names)}")
    if not ckpt.is_finished(recipe, stage):
        raise UsageError(f"stage {stage!r} has no finished checkpoint at {ckpt.stage_dir(recipe, stage)}; train it first")
    check_chain(recipe, "python -m train.measure_stage")   # the recipe's inputs are never measured over
    for name, report in measure_stage(recipe, stage, overwrite=opts["overwrite"]).items():
        print_summary(report, measure_dir(recipe, stage, name))
    leave_process_group()


if __name__ == "__main__":
    main()
