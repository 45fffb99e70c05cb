"""Run one recipe's chain under several seeds and state only what every seed shows.

    python -m train.seeds recipe=recipes/toy.yaml [seeds=[0,1,2]] [overwrite=true] [dotted overrides]
    make demo-seeds      (the toy chain under seeds 0, 1, 2; about 12 min on 2 CPU cores)

Why: a chain's numbers are one draw. Two fresh runs on one machine are byte-identical, but another seed
-- or another CPU, whose float32 reductions round differently and so drift apart over ~1000 pretraining
steps -- gives other numbers. A finding is only as strong as the range it holds over.

Seed k sets both the recipe's `seed` (for the toy: the generated world, weight init, data order) and
`measure.seed` (the sampling stream), and runs the whole chain into <output_dir>-seeds/seed<k>/ (output_dir:
the recipe's, or given as an override; finished
stages are reused, as in train.chain). Then <output_dir>-seeds/seeds.json and seeds.md summarize, per
benchmark, from each seed's compare.json, cascade.json and dpo_effect.json: each stage's accuracy and SCR
per clusterer as min-max over seeds (with every value), each transition's SCR difference range and in
how many seeds it is significant (Holm, as the verdict counts it), and how often each verdict came out.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.common.errors import UsageError, exit_on_usage_error
from measure import read_cascade, read_comparison
from measure.common.io import read_jsonl, write_json, write_text
from measure.common.outputs import check_outputs, claim_outputs
from measure.common.values import as_seed
from train import layout
from train.chain import run_chain
from train.effect_records import REPORT, read_effect
from train.recipe import Recipe, load_recipe
from train.options import RecipeOptions, parse_recipe_cli
from train.outputs import check_chain, folder_plan

DEFAULT_SEEDS = (0, 1, 2)
SIGNAL = "greedy_entropy_mean"   # the AUROC the summary tracks (token entropy of the greedy answer)


def seed_dir(root: Path, seed: int) -> Path:
    return root / f"seed{seed}"


def compare_dirs(recipe: Recipe) -> dict[str, Path]:
    """benchmark -> the compare dir train.measure_stage.compare_and_cascade writes for this chain."""
    return layout.compare_dirs(Path(recipe.output_dir), [b.name for b in recipe.measure.benchmarks])


def span(values: list[float | None]) -> dict[str, Any]:
    """min, max and every value (None where a seed has no number)."""
    known = [v for v in values if v is not None]
    return {"min": min(known) if known else None, "max": max(known) if known else None, "values": values}


def world_buckets(run: Path, stages: list[str], bench: str, clusterer: str) -> dict[str, dict[str, dict]] | None:
    """For a toy-world chain (<run>/world/eval.jsonl): SCR under `clusterer` and accuracy per stage and per
    question bucket -- how often the fact was in the pretraining corpus, or `reasoning` -- from each stage's
    questions.jsonl. None for a chain without a generated world."""
    world = run / "world" / "eval.jsonl"
    if not world.exists():
        return None
    questions = [q for _, q in read_jsonl(world)]
    bucket = {q["id"]: q["bucket"] if q.get("kind") == "recall" else q.get("kind", "other") for q in questions}
    # most-seen facts first, then the questions that are not recall (reasoning)
    seen = {bucket[q["id"]]: q.get("corpus_count", -1) if q.get("kind") == "recall" else -1 for q in questions}
    order = sorted(seen, key=lambda b: -seen[b])
    out: dict[str, dict[str, dict]] = {}
    for stage in stages:
        rows = [r for _, r in read_jsonl(layout.benchmark_dir(run / stage, bench) / "questions.jsonl")]
        per: dict[str, dict] = {}
        for name in [b for b in order if any(bucket[r["id"]] == b for r in rows)]:
            mine = [r for r in rows if bucket[r["id"]] == name]
            per[name] = {"n": len(mine), "scr": sum(r["n_clusters"][clusterer] == 1 for r in mine) / len(mine),
                         "accuracy": sum(r.get("judgement") == "correct" for r in mine) / len(mine)}
        out[stage] = per
    return out


def summarize(runs: dict[int, Recipe]) -> dict[str, Any]:
    """The cross-seed summary of finished chains (seed -> its resolved recipe)."""
    seeds = list(runs)
    first = runs[seeds[0]]
    last = first.stage_names[-1]
    out: dict[str, Any] = {"seeds": seeds, "benchmarks": {}}
    for bench in compare_dirs(first):
        comps = {s: read_comparison(compare_dirs(r)[bench]) for s, r in runs.items()}
        c0 = comps[seeds[0]]
        stages = {}
        for st in c0.stages:
            per = [comps[s].per_stage[st] for s in seeds]
            stages[st] = {"accuracy": span([p.accuracy for p in per]),
                          "scr": {c: span([p.clusterers[c].scr for p in per]) for c in c0.clusterers},
                          "mean_clusters": {c: span([p.clusterers[c].mean_clusters for p in per]) for c in c0.clusterers},
                          f"auroc_{SIGNAL}": span([p.auroc.get(SIGNAL) for p in per])}
        transitions = []
        for row in c0.transitions:
            key = row.key
            rows = [next(t for t in comps[s].transitions if t.key == key) for s in seeds]
            alpha = comps[seeds[0]].verdict.alpha
            transitions.append({"from": key[0], "to": key[1], "clusterer": key[2],
                                "scr_diff": span([r.scr_diff for r in rows]),
                                "rise_significant": sum(r.mcnemar_p_holm < alpha and r.scr_diff > 0 for r in rows),
                                "fall_significant": sum(r.mcnemar_p_holm < alpha and r.scr_diff < 0 for r in rows)})
        verdicts = Counter(comps[s].verdict.transition or "none" for s in seeds)
        cascades = {}
        for s, r in runs.items():
            path = layout.benchmark_dir(Path(r.output_dir) / last, bench) / "cascade"
            if (path / "cascade.json").exists():
                cascades[s] = read_cascade(path).cascade.at_coverage.get("0.5")
        cascade = None if not cascades else {
            key: span([getattr(cascades[s], key) if cascades.get(s) else None for s in seeds])
            for key in ("accuracy", "coverage", "relative_cost")}
        out["benchmarks"][bench] = {"stages": stages, "clusterers": c0.clusterers, "transitions": transitions,
                                    "verdicts": dict(verdicts), "cascade_at_0.5": cascade}
        tables = {s: world_buckets(Path(r.output_dir), c0.stages, bench, c0.clusterers[0]) for s, r in runs.items()}
        if all(tables.values()):
            t0 = tables[seeds[0]]
            out["benchmarks"][bench]["buckets"] = {"clusterer": c0.clusterers[0], "stages": {
                st: {b: {"n": t0[st][b]["n"], **{k: span([tables[s][st][b][k] for s in seeds]) for k in ("scr", "accuracy")}}
                     for b in t0[st]} for st in c0.stages}}
    effects = {s: Path(r.output_dir) for s, r in runs.items()}
    if all((p / REPORT).exists() for p in effects.values()):
        reports = [read_effect(p).stages for p in effects.values()]
        out["dpo_acted"] = {st: sum(bool(r[st].acted) if st in r else False for r in reports) for st in reports[0]}
    return out


def _fmt(sp: dict[str, Any]) -> str:
    if sp["min"] is None:
        return "-"
    return f"{sp['min']:.3f}" if sp["min"] == sp["max"] else f"{sp['min']:.3f}..{sp['max']:.3f}"


def render(summary: dict[str, Any]) -> str:
    """seeds.md: ranges (min..max over seeds), significance counts, verdict counts, and the claims every seed supports."""
    k = len(summary["seeds"])
    lines = [f"# {k} seeds: {', '.join(map(str, summary['seeds']))}", "",
             "Ranges are min..max over seeds; 'k / n' counts the seeds where a test is significant after Holm."]
    for bench, b in summary["benchmarks"].items():
        labels = b["clusterers"]
        lines += ["", f"## {bench}", "", "| stage | accuracy | " + " | ".join(f"SCR {c}" for c in labels)
                  + f" | AUROC {SIGNAL} |", "|---" * (3 + len(labels)) + "|"]
        for st, s in b["stages"].items():
            lines.append(f"| {st} | {_fmt(s['accuracy'])} | " + " | ".join(_fmt(s["scr"][c]) for c in labels)
                         + f" | {_fmt(s['auroc_' + SIGNAL])} |")
        lines += ["", "| transition | clusterer | SCR diff | significant rise | significant fall |", "|---|---|---|---|---|"]
        for t in b["transitions"]:
            lines.append(f"| {t['from']} -> {t['to']} | {t['clusterer']} | {_fmt(t['scr_diff'])} | "
                         f"{t['rise_significant']} / {k} | {t['fall_significant']} / {k} |")
        lines += ["", "Verdict (homogenization first appears at): "
                  + "; ".join(f"{v}: {n} / {k}" for v, n in sorted(b["verdicts"].items(), key=lambda x: -x[1]))]
        every = [f"{t['from']} -> {t['to']} ({t['clusterer']})" for t in b["transitions"] if t["rise_significant"] == k]
        lines.append("Significant SCR rise in every seed: " + (", ".join(every) or "none") + ".")
        if b.get("buckets"):
            bk = b["buckets"]
            names = list(next(iter(bk["stages"].values())))
            lines += ["", f"SCR ({bk['clusterer']}) / accuracy by question bucket (toy world: corpus frequency of the fact, "
                      "or a reasoning question):", "", "| stage | " + " | ".join(
                          f"{n} ({bk['stages'][next(iter(bk['stages']))][n]['n']})" for n in names) + " |",
                      "|---" * (1 + len(names)) + "|"]
            for st, per in bk["stages"].items():
                lines.append(f"| {st} | " + " | ".join(f"{_fmt(per[n]['scr'])} / {_fmt(per[n]['accuracy'])}" for n in names) + " |")
        if b["cascade_at_0.5"]:
            c = b["cascade_at_0.5"]
            lines.append("")
            lines.append(f"Cascade at 50% target coverage: accuracy {_fmt(c['accuracy'])}, realized coverage "
                         f"{_fmt(c['coverage'])}, relative cost {_fmt(c['relative_cost'])}.")
    if "dpo_acted" in summary:
        lines.append("")
        lines.append("DPO acted (dpo_effect.json): " + "; ".join(f"{st}: {n} / {k}" for st, n in summary["dpo_acted"].items()))
    return "\n".join(lines) + "\n"


def seed_recipe(path: str, overrides: dict[str, Any], seed: int, root: Path) -> Recipe:
    return load_recipe(path, {**overrides, "seed": seed, "measure.seed": seed,
                              "output_dir": str(seed_dir(root, seed))})


@dataclass(frozen=True)
class SeedsOptions(RecipeOptions):
    seeds: list = field(default_factory=lambda: list(DEFAULT_SEEDS), metadata={"help": "the seeds (at least two)"})
    overwrite: bool = field(default=False, metadata={"help": "retrain finished chains"})


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    opts, overrides = parse_recipe_cli(argv, __doc__, SeedsOptions)
    seeds = opts["seeds"] if isinstance(opts["seeds"], list) else [opts["seeds"]]
    seeds = [as_seed(s, f"seeds.{i}") for i, s in enumerate(seeds)]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise UsageError(f"seeds: give at least two distinct seeds, got {seeds}")
    for key in ("seed", "measure.seed"):
        if key in overrides:
            raise UsageError(f"{key}=: set by train.seeds for each seed; give seeds=[...] instead")
    root = Path(load_recipe(opts["recipe"], overrides).output_dir + "-seeds")
    runs = {s: seed_recipe(opts["recipe"], overrides, s, root) for s in seeds}   # every recipe checked first
    if not all(r.measure.benchmarks for r in runs.values()) or len(runs[seeds[0]].stage_names) < 2:
        raise UsageError(f"{opts['recipe']}: train.seeds compares stages, so the recipe needs measure.benchmarks "
                         "and at least one stage after base")
    command = "python -m train.seeds"
    folder = folder_plan(command, "seeds summary", root, ("seeds.json", "seeds.md"),
                         [seed_dir(root, s).name for s in seeds], runs[seeds[0]])
    check_outputs(folder)
    for recipe in runs.values():   # every chain's output folder and inputs, before the first one trains
        check_chain(recipe, command)
    claim_outputs(folder)
    for s, recipe in runs.items():
        print(f"[seeds] seed {s}: {recipe.output_dir}")
        run_chain(recipe, overwrite=opts["overwrite"])
    summary = summarize(runs)
    write_json(root / "seeds.json", summary)
    text = render(summary)
    write_text(root / "seeds.md", text)
    print(text + f"\nwritten: {root / 'seeds.json'}, {root / 'seeds.md'}")


if __name__ == "__main__":
    main()
