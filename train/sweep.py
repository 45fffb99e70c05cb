"""Mitigation grids: every combination of a grid is a child run of one stage, trained, measured and
placed on an SCR-vs-accuracy frontier against the parent stage.

    python -m train.sweep recipe=recipes/toy.yaml stage=dpo grid.stages.dpo.args.beta=[0.01,0.1,0.5] \\
        grid.stages.dpo.args.loss_type=[[sigmoid],[ipo]] [signal=greedy_entropy_mean] [overwrite=true] \\
        [measure=false] [dotted recipe overrides, applied to the parents and every variant]

or a `sweep:` section in the recipe (CLI `grid.<key>=` axes are added to it, replacing an axis of the
same key; CLI `stage=` / `signal=` replace its values):

    sweep:
      stage: dpo
      grid: {stages.dpo.args.beta: [0.05, 0.5], stages.dpo.args.loss_type: [[sigmoid], [ipo]]}
      signal: greedy_entropy_mean   # optional: the signal whose AUROC is the second frontier axis

Only keys under `stages.<stage>.` may vary: the variants share every parent stage. The main chain's
ancestors of <stage> are trained first when missing (reused when finished) and the parent is measured
as the reference point. Each variant is checkpoints/<name>/sweeps/<stage>/<variant>/, a chain dir of
its own whose ancestor stages are relative symlinks to the main chain's; its <stage>/ is trained and
measured there by the same code as the stage scripts. A finished variant (or parent) is reused only if
it matches the recipe and its parent (train/reuse.py; else exit 2 before anything runs); a failed one is
reported (status + error) and the others go on. Every combination's recipe is validated before
anything runs (a bad key or value type -> exit 2 naming it); values TRL itself rejects fail only their
variant. Outputs (written by train/sweep_report.py), in sweeps/<stage>/: sweep.json (grid, parent
references, one row per variant: values, status trained|reused|failed, error, per-benchmark
SCR/accuracy/AUROC with CIs, frontier membership), sweep.md (the table) and frontier.png. Exit 0, or 1
when a variant failed (the report is still written).
"""
from __future__ import annotations

import gc
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.common.errors import UsageError, exit_on_usage_error, suggest
from measure.common.fields import declared, has_kind, type_names
from measure.common.io import provenance, sha256_json, write_json
from measure.common.outputs import check_outputs, claim_outputs
from measure import SIGNALS, SignalKey
from train import checkpoint as ckpt
from train.measure_stage import measure_stage
from train.pretrain import run_base
from train.recipe import BASE, Recipe, load_recipe
from train.recipe_spec import SweepSpec
from train.reuse import chain_hint, check_reusable
from train.stages import run_stage
from train.sweep_records import SweepPoint, SweepResult, SweepRow
from train.sweep_report import SWEEP_OUTPUTS, mark_frontier, write_outputs
from train.options import RecipeOptions, parse_recipe_cli
from train.outputs import check_chain, claim_chain, folder_plan

SWEEP_KEYS = declared(SweepSpec)   # the `sweep:` section's keys and types, declared once (train/recipe_spec.py)
DEFAULT_SIGNAL = SweepSpec.signal


@dataclass(frozen=True)
class Variant:
    name: str
    values: dict[str, Any]   # grid key -> value of this combination
    recipe: Recipe           # the child recipe (output_dir = the variant dir)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'stages': {'dpo.args.beta': [..]}} -> {'stages.dpo.args.beta': [..]}: YAML may nest or dot keys."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def sweep_spec(section: dict | None, cli: dict[str, Any]) -> tuple[str, dict[str, list], str]:
    """(stage, grid axes, signal) from the recipe's `sweep:` section and the CLI, checked."""
    section = dict(section or {})
    for key, value in section.items():
        if key not in SWEEP_KEYS:
            raise UsageError(f"sweep.{key}: unknown key{suggest(key, SWEEP_KEYS)}")
        if not has_kind(value, SWEEP_KEYS[key].kinds):
            raise UsageError(f"sweep.{key}: expected {type_names(SWEEP_KEYS[key].kinds)}, got {type(value).__name__} {value!r}")
    grid = {**flatten(section.get("grid") or {}), **cli["grid"]}
    stage, signal = cli["stage"] or section.get("stage"), cli["signal"] or section.get("signal", DEFAULT_SIGNAL)
    if not stage:
        raise UsageError("no stage to sweep: pass stage=<name> or set sweep.stage in the recipe")
    if not grid:
        raise UsageError("no grid: pass grid.<dotted key>=[v1,v2] (e.g. grid.stages.dpo.args.beta=[0.05,0.5]) "
                         "or set sweep.grid in the recipe")
    for key, values in grid.items():
        if not key.startswith(f"stages.{stage}."):
            raise UsageError(f"grid.{key}: only keys under stages.{stage}. may vary (the variants share every "
                             f"other setting and the parent stages)")
        if not isinstance(values, list) or not values:
            raise UsageError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
        seen = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(seen)) != len(seen):
            raise UsageError(f"grid.{key}: a value is listed twice ({values!r})")
    if SignalKey.parse(signal).name not in SIGNALS:
        raise UsageError(f"signal: unknown {signal!r}{suggest(signal, SIGNALS)}")
    return stage, grid, signal


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return json.dumps(value) if isinstance(value, (bool, type(None))) else str(value)


def variant_name(values: dict[str, Any]) -> str:
    """'beta=0.01,loss_type=ipo': the last key part per axis (more parts if two axes share it), values
    with lists joined by '+', anything outside [A-Za-z0-9._+=,-] replaced so the name is a safe dir name."""
    keys = list(values)
    depth = {k: 1 for k in keys}
    while True:  # lengthen clashing labels until every axis has its own
        labels = {k: ".".join(k.split(".")[-depth[k]:]) for k in keys}
        clash = [k for k in keys if list(labels.values()).count(labels[k]) > 1 and depth[k] < len(k.split("."))]
        if not clash:
            break
        for k in clash:
            depth[k] += 1
    name = ",".join(f"{labels[k]}={_fmt(values[k])}" for k in keys)
    name = re.sub(r"[^A-Za-z0-9._+=,-]", "-", name)
    if len(name) > 120:  # keep paths short; the hash keeps truncated names distinct
        name = name[:110] + "-" + sha256_json(values)[:8]
    return name


def plan(recipe_path: str, overrides: dict, stage: str, grid: dict[str, list], *,
         measure: bool = True) -> tuple[Recipe, list[Variant]]:
    """The main recipe and every variant's recipe, all validated before anything is written."""
    main = load_recipe(recipe_path, overrides)
    training = [s for s, spec in main.stages.items() if not spec.external]
    if stage not in training:
        raise UsageError(f"stage={stage!r}: not a training stage of {recipe_path}{suggest(stage, training)}")
    both = sorted(set(grid) & set(overrides))
    if both:
        raise UsageError(f"{', '.join(both)}: given both as a grid axis and as an override; give it once")
    if measure and not main.measure.benchmarks:
        raise UsageError(f"{recipe_path}: a sweep measures every variant, but measure.benchmarks is empty "
                         "(pass measure=false to train only)")
    root = ckpt.chain_dir(main) / "sweeps" / stage
    variants = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        name = variant_name(values)
        try:
            child = load_recipe(recipe_path, {**overrides, **values, "output_dir": str(root / name)})
        except UsageError as e:
            raise UsageError(f"grid variant {name}: {e}") from None
        variants.append(Variant(name, values, child))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise UsageError(f"two grid combinations get the same variant name ({names}); make the values distinct")
    return main, variants


def ancestors(recipe: Recipe, stage: str) -> list[str]:
    """The stages `stage` is trained on top of, in chain order (base first)."""
    chain, parent = [], recipe.parent_of(stage)
    while parent != BASE:
        chain.append(parent)
        parent = recipe.parent_of(parent)
    return [BASE, *reversed(chain)]


def check_reuse(main: Recipe, variants: list[Variant], stage: str, needed: set[str], *, overwrite: bool) -> None:
    """Before anything runs: every finished parent, and (without overwrite) every finished variant, must
    match what the sweep asks for now (train/reuse.py), else exit 2 naming the stage and the keys."""
    for parent in main.stage_names:
        if parent in needed and ckpt.is_finished(main, parent):
            check_reusable(main, parent, chain_hint(main))
    how = ("Pass overwrite=true to retrain the variants, or sweep under a new name=<name> "
           f"(now {main.name!r}) or output_dir=<dir>.")
    for variant in variants if not overwrite else ():
        if ckpt.is_finished(variant.recipe, stage):
            try:
                check_reusable(variant.recipe, stage, how)
            except UsageError as e:
                raise UsageError(f"grid variant {variant.name}: {e}") from None


def ensure_parents(main: Recipe, needed: set[str]) -> None:
    """Train the main chain's missing ancestor stages with the runners python -m train.chain uses.
    Only the direct parents get measured (by run_sweep: they are the reference points)."""
    for stage in main.stage_names:
        if stage in needed and not ckpt.is_finished(main, stage):
            print(f"[sweep] parent {stage}: running")
            run_base(main, measure=False) if stage == BASE else run_stage(main, stage, measure=False)
            gc.collect()


def link_parents(main: Recipe, variant: Variant, stages: list[str]) -> None:
    """Relative symlinks child/<ancestor> -> main chain's dir (they survive moving checkpoints/ as a whole)."""
    root = ckpt.chain_dir(variant.recipe)
    root.mkdir(parents=True, exist_ok=True)
    shared = [*stages, "world"] if ckpt.world_dir(main) and ckpt.world_dir(main).exists() else stages
    for stage in shared:
        link, target = root / stage, ckpt.chain_dir(main) / stage
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(target.resolve(), root.resolve()), target_is_directory=True)


def run_variant(main: Recipe, variant: Variant, stage: str, *, overwrite: bool, measure: bool) -> SweepRow:
    """Train + measure one variant (or reuse it); never raises for a failure of the variant itself."""
    child, started = variant.recipe, time.time()
    try:
        claim_chain(child)
        link_parents(main, variant, ancestors(child, stage))
        write_json(ckpt.chain_dir(child) / "variant.json", {"name": variant.name, "values": variant.values})
        if ckpt.is_finished(child, stage) and not overwrite:  # matches the recipe: check_reuse ran first
            status = "reused"
        else:
            run_stage(child, stage, overwrite=overwrite, measure=False)
            status = "trained"
        reports = points(child, stage) if measure else {}
        error = None
    except Exception as e:  # noqa: BLE001 - one variant's failure is reported, the sweep goes on
        status, reports, error = "failed", {}, f"{type(e).__name__}: {e}"
        print(f"[sweep] {variant.name}: FAILED: {error}", file=sys.stderr)
    row = SweepRow(name=variant.name, values=variant.values, dir=str(ckpt.stage_dir(child, stage)), status=status,
                   reports=reports, error=error, wall_time_s=round(time.time() - started, 2))
    gc.collect()
    return row


def points(recipe: Recipe, stage: str) -> dict[str, SweepPoint]:
    """The stage measured (or its finished reports reused) -> each benchmark's frontier coordinates."""
    return {b: SweepPoint.of(r) for b, r in measure_stage(recipe, stage).items()}


def run_sweep(recipe_path: str, overrides: dict, *, stage: str, grid: dict[str, list], signal: str,
              overwrite: bool = False, measure: bool = True) -> SweepResult:
    """Plan (validating every variant), train the missing parents, run every variant, write the report."""
    main, variants = plan(recipe_path, overrides, stage, grid, measure=measure)
    command = "python -m train.sweep"
    folder = folder_plan(command, "sweep", ckpt.chain_dir(main) / "sweeps" / stage, SWEEP_OUTPUTS,
                         [v.name for v in variants], main)
    for chain in (main, *(v.recipe for v in variants)):   # every output folder, before anything runs
        check_chain(chain, command)
    check_outputs(folder)
    parents = sorted({v.recipe.stages[stage].parent for v in variants}, key=main.stage_names.index)
    needed = {s for v in variants for s in ancestors(v.recipe, stage)}
    check_reuse(main, variants, stage, needed, overwrite=overwrite)
    ensure_parents(main, needed)
    references = [SweepRow(name=f"parent: {p}", stage=p, status="reference", dir=str(ckpt.stage_dir(main, p)),
                           reports=points(main, p) if measure else {}) for p in parents]
    claim_chain(main)
    claim_outputs(folder)
    rows = []
    for i, variant in enumerate(variants):
        print(f"[sweep] variant {i + 1}/{len(variants)}: {variant.name}")
        rows.append(run_variant(main, variant, stage, overwrite=overwrite, measure=measure))
    summary = SweepResult(recipe=main.name, stage=stage, grid=grid, signal=signal,
                          out_dir=str(ckpt.chain_dir(main) / "sweeps" / stage), references=references, variants=rows,
                          counts={s: sum(r.status == s for r in rows) for s in ("trained", "reused", "failed")},
                          provenance=provenance(seed=main.seed, recipe=main.to_dict()))
    return write_outputs(Path(summary.out_dir), mark_frontier(summary))


@dataclass(frozen=True)
class SweepOptions(RecipeOptions):
    stage: str | None = field(default=None, metadata={"help": "the stage to sweep (overrides sweep.stage)"})
    signal: str | None = field(default=None, metadata={"help": "the signal to report (overrides sweep.signal)"})
    overwrite: bool = field(default=False, metadata={"help": "rerun finished variants"})
    measure: bool = field(default=True, metadata={"help": "measure every variant"})
    # grid.<key>=[...]: a grid axis (overrides sweep.grid.<key>); see the docstring


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    opts, overrides = parse_recipe_cli(argv, __doc__, SweepOptions)
    cli_grid = {k.removeprefix("grid."): overrides.pop(k) for k in list(overrides) if k.startswith("grid.")}
    section = load_recipe(opts["recipe"], overrides).sweep
    stage, grid, signal = sweep_spec(section, {"grid": cli_grid, "stage": opts["stage"], "signal": opts["signal"]})
    summary = run_sweep(opts["recipe"], overrides, stage=stage, grid=grid, signal=signal,
                        overwrite=opts["overwrite"], measure=opts["measure"])
    if summary.counts["failed"]:
        raise SystemExit(1)  # the report is written; a non-zero exit tells scripts that a variant failed


if __name__ == "__main__":
    main()
