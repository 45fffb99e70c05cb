"""Cross-stage comparison: where in a training chain does homogenization appear, and under which clusterers?

    python -m measure compare runs=[dirA,dirB] labels=[a,b] out=<dir>  any measured runs, in this order
    python -m measure compare <dir> [benchmark=...]                    the runs <dir>/runs.json lists

The library compares an explicit, ordered list of measured runs; it knows no training chain. A run list
file (RUN_LIST, `<dir>/runs.json`) names such lists for a directory -- train/layout.py writes one into a
chain dir, listing every measured stage in chain order, per benchmark:

    {"about": "...", "runs": {"<benchmark>": [{"label": "base", "path": "base/measure/gsm8k"}, ...]},
     "notes": {"<benchmark>": ["stage 'kto' has no gsm8k measurement; left out"]}}

paths relative to <dir> (or absolute); notes (optional) are copied into compare.json. The comparison
goes to <dir>/compare/ (<dir>/compare/<benchmark>/ when runs.json lists several) unless out= says otherwise. A run may name the run it is compared with (`"vs":
"<label>"`): a list where any run does is compared in PAIRS of runs, not as a sequence
(measure.analysis.run_pairs; a chain whose stages branch lists each stage against its parent).

Inputs are measure dirs (questions.jsonl + report.json, optionally samples.jsonl). Questions are matched
by id; every stage must hold exactly the same ids. Clusterers are those present in every stage.

Between consecutive stages (or within each listed pair of runs), per clusterer, on the same questions: exact McNemar on the single-cluster
indicator, Wilcoxon signed-rank on the cluster counts (with rank-biserial effect size) and Newcombe's
paired score interval of the SCR difference; per stage, Clopper-Pearson intervals of SCR; Holm correction over ALL tests of the comparison; the verdict by
VERDICT_RULE. Per continuous homogeneity measure (measure.scoring.homogeneity) present in every run: Wilcoxon
signed-rank on the per-question differences and a paired bootstrap interval of the mean difference, in the
same Holm family; the verdict adds one line for them (measure.analysis.measure_tests.MEASURE_RULE). The
statistics themselves, and their exact definitions, are in measure.analysis.paired_stats and measure_tests.

Sensitivity (SCR vs threshold, vs N and vs answer length, from saved outputs only) is in
measure.analysis.sensitivity.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from measure.analysis.compare_render import IMAGES, render
from measure.common.errors import UsageError
from measure.common.io import provenance, read_json
from measure.common.outputs import OutputPlan, check_outputs, claim_outputs, existing_inputs
from measure.scoring.intervals import PROPORTION_CI_METHOD, proportion_ci
from measure.scoring.metrics import finite_mean, scr
from measure.analysis.measure_tests import MEASURE_RULE, common_measures, measure_line, paired_measure_test
from measure.analysis.paired_stats import ALPHA, apply_holm, pair_agreement, paired_tests, verdict
from measure.analysis.power import POWER, min_detectable_rise
from measure.analysis.run_pairs import check_pairs, read_run_pairs, steps
from measure.analysis.measured_run import MeasuredRun, load_run, measure_dir
from measure.common.jsonrecords import record_from_json
from measure.records.records import MIN_SAMPLES
from measure.records.comparison import (Agreement, ClustererStats, Comparison, HolmFamily, MeasureTransition,
                                        StageSummary, Transition, transition_from_json)
from measure.analysis.length_sensitivity import DEFAULT_LENGTHS
from measure.analysis.sensitivity import sensitivity

OUTPUTS = ("compare.json", "compare.md", "compare.html")
N_BOOT = 1000            # paired bootstrap resamples of the continuous measures' mean differences
RUN_LIST = "runs.json"   # <dir>/runs.json: named, ordered lists of measured runs (the module docstring)


def _few(ids: Sequence[str], k: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:k])
    return f"{len(ids)} id(s): {shown}{', ...' if len(ids) > k else ''}"


def match_questions(stages: list[MeasuredRun]) -> list[MeasuredRun]:
    """Every stage reordered to the first stage's question order; any id mismatch -> UsageError."""
    ref = stages[0]
    order = [r.id for r in ref.records]
    out = [ref]
    for st in stages[1:]:
        by_id = {r.id: r for r in st.records}
        missing = [i for i in order if i not in by_id]
        extra = sorted(set(by_id) - set(order))
        if missing or extra:
            parts = [f"stage {st.label!r} ({st.path}) lacks {_few(missing)} of stage {ref.label!r}"] if missing else []
            parts += [f"stage {st.label!r} has {_few(extra)} not in stage {ref.label!r}"] if extra else []
            raise UsageError("questions do not match across stages (compare needs the same question ids): "
                             + "; ".join(parts))
        out.append(MeasuredRun(st.label, st.path, tuple(by_id[i] for i in order), st.report))
    return out


def common_clusterers(stages: list[MeasuredRun]) -> tuple[list[str], list[str]]:
    """Clusterer labels present for every question of every stage (first stage's order), and notes."""
    per = [[c for c in st.records[0].n_clusters if all(c in r.n_clusters for r in st.records)] for st in stages]
    common = [c for c in per[0] if all(c in p for p in per[1:])]
    notes = [f"clusterer {c!r} is not in every stage; left out" for c in dict.fromkeys(sum(per, [])) if c not in common]
    if not common:
        raise UsageError("no clusterer was used in every stage: " + "; ".join(
            f"{st.label}: {', '.join(p) or 'none'}" for st, p in zip(stages, per)))
    return common, notes


def check_samples(stages: list[MeasuredRun], clusterers: list[str]) -> None:
    """SCR needs N >= 2 (one sample is always one cluster): a run scored before that rule is refused by name."""
    for st in stages:
        for r in st.records:
            short = [c for c in clusterers if len(r.clusters.get(c) or ()) < MIN_SAMPLES]
            if short:
                raise UsageError(f"{st.path / 'questions.jsonl'}: question {r.id!r} has {len(r.clusters.get(short[0]) or ())} "
                                 f"sample(s) under {short[0]!r}; SCR needs at least {MIN_SAMPLES} per question (one sample "
                                 f"is always one cluster): measure stage {st.label!r} again with n_samples >= {MIN_SAMPLES}")


def counts(stage: MeasuredRun, clusterer: str) -> np.ndarray:
    return np.array([int(r.n_clusters[clusterer]) for r in stage.records])


# ---------------------------------------------------------------- per-stage summary

def stage_summary(stage: MeasuredRun, clusterers: list[str]) -> StageSummary:
    labels = [r.label for r in stage.records if r.label is not None]
    per = {}
    for c in clusterers:
        d = counts(stage, c)
        per[c] = ClustererStats(scr=scr(d), scr_ci=proportion_ci(int((d == 1).sum()), len(d)),
                                scr_ci_method=PROPORTION_CI_METHOD, mean_clusters=float(d.mean()),
                                n_single=int((d == 1).sum()),
                                count_hist={str(k): int((d == k).sum()) for k in range(1, int(d.max()) + 1)})
    report = stage.report
    return StageSummary(
        path=str(stage.path), n_questions=len(stage.records),
        n_samples=max(len(v) for r in stage.records for v in r.clusters.values()) if stage.records[0].clusters else None,
        accuracy=float(np.mean(labels)) if labels else None, n_labelled=len(labels),
        n_ambiguous=sum(r.judgement == "ambiguous" for r in stage.records),
        token_entropy_mean=finite_mean(r.signals.get("greedy_entropy_mean") for r in stage.records),
        auroc=report.auroc if report else {}, auroc_single_cluster=report.auroc_single_cluster if report else {},
        clusterers=per,
        homogeneity_mean={k: m for k in dict.fromkeys(k for r in stage.records for k in r.homogeneity)
                          if (m := finite_mean(r.homogeneity.get(k) for r in stage.records)) is not None})


# ---------------------------------------------------------------- transitions and clusterer agreement

def stage_transitions(stages: list[MeasuredRun], clusterers: list[str], *, alpha: float,
                      seed: int = 0, n_boot: int = N_BOOT,
                      pairs: Sequence[tuple[str, str]] | None = None) -> tuple[list[Transition], list[MeasureTransition], int]:
    """Every test between consecutive stages (or the given (earlier, later) label pairs): per clusterer (McNemar +
    cluster-count Wilcoxon), per continuous measure (measure.analysis.measure_tests), all in one Holm family;
    returns (rows, measure rows, family size)."""
    tested = steps(stages, pairs)
    rows = [{"from": a.label, "to": b.label, "clusterer": c, **paired_tests(counts(a, c), counts(b, c))}
            for a, b in tested for c in clusterers]
    keys = common_measures([[r.homogeneity for r in st.records] for st in stages])
    measure_rows = [{"from": a.label, "to": b.label, "measure": k,
                     **paired_measure_test([r.homogeneity.get(k) for r in a.records],
                                           [r.homogeneity.get(k) for r in b.records], n_boot=n_boot, seed=seed)}
                    for a, b in tested for k in keys]
    family = apply_holm(rows, alpha, measure_rows)
    for r in rows:   # what each test could have seen (measure.analysis.power), at the strictest Holm step
        r["min_detectable_rise"] = min_detectable_rise(r["n"], r["b_single_to_multi"] / r["n"], alpha / family)
    return ([transition_from_json(r) for r in rows], [record_from_json(MeasureTransition, r) for r in measure_rows],
            family)


def stage_agreement(stage: MeasuredRun, clusterers: list[str]) -> list[Agreement]:
    out = []
    for i, a in enumerate(clusterers):
        for b in clusterers[i + 1:]:
            out.append(Agreement(a=a, b=b, **pair_agreement(counts(stage, a) == 1, counts(stage, b) == 1,
                                                            [r.clusters.get(a, []) for r in stage.records],
                                                            [r.clusters.get(b, []) for r in stage.records])))
    return out


# ---------------------------------------------------------------- the engine

def comparison_plan(out_dir: Path, run_dirs: Sequence[Path]) -> OutputPlan:
    """What a comparison writes (every image included) and reads (each run's files), for measure.common.outputs."""
    inputs = [Path(d) / n for d in run_dirs for n in ("questions.jsonl", "report.json", "samples.jsonl")]
    return OutputPlan("measure compare", "comparison", Path(out_dir), files=(*OUTPUTS, *IMAGES),
                      inputs=existing_inputs(inputs), marker="compare.json", legacy=("compare.json",),
                      what="comparison outputs")


def _setting_notes(stages: list[MeasuredRun]) -> list[str]:
    notes = []
    for key in ("n_samples", "temperature", "top_p", "max_new_tokens"):
        vals = {st.label: getattr(st.report.settings, key) if st.report else None for st in stages}
        if len({repr(v) for v in vals.values()}) > 1:
            notes.append(f"stages differ in {key}: " + ", ".join(f"{k}={v}" for k, v in vals.items())
                         + " (SCR depends on it; differences may not be due to training)")
    return notes


def compare_stages(stages: list[MeasuredRun], out_dir: Path, overwrite: bool, *, alpha: float = ALPHA, seed: int = 0, sensitivity_clusterers: Sequence[str] | None = None,
                   notes: Sequence[str] = (), benchmark: str | None = None,
                   sensitivity_lengths: Sequence[int] = DEFAULT_LENGTHS,
                   pairs: Sequence[tuple[str, str]] | None = None) -> Comparison:
    """Compare loaded stages (in order; with `pairs`, each (earlier, later) pair of labels instead of consecutive
    stages) and write compare.json/md/html + plots into out_dir.
    sensitivity_lengths: answer lengths (tokens) of the length curves, besides each run's max_new_tokens."""
    out_dir = Path(out_dir)
    plan = comparison_plan(out_dir, [st.path for st in stages])
    check_outputs(plan, overwrite)
    if len(stages) < 2:
        raise UsageError(f"compare needs at least two measured stages, got {len(stages)}")
    if len({st.label for st in stages}) != len(stages):
        raise UsageError(f"stage labels must be unique, got {[st.label for st in stages]}")
    pairs = None if pairs is None else check_pairs(pairs, [st.label for st in stages])
    stages = match_questions(stages)
    clusterers, cl_notes = common_clusterers(stages)
    check_samples(stages, clusterers)
    rows, measure_rows, family = stage_transitions(stages, clusterers, alpha=alpha, seed=seed, pairs=pairs)
    sens, s_notes = sensitivity(stages, clusterers, sensitivity_clusterers, sensitivity_lengths)
    result = Comparison(
        benchmark=benchmark, stages=[st.label for st in stages], n_questions=len(stages[0].records), clusterers=clusterers,
        per_stage={st.label: stage_summary(st, clusterers) for st in stages},
        transitions=rows, holm=HolmFamily(method="holm", family_size=family, alpha=alpha,
                                          family=f"every McNemar and Wilcoxon test, every {'transition' if pairs is None else 'pair'}"
                                                 " and clusterer, and every continuous measure's Wilcoxon test"),
        verdict=dataclasses.replace(verdict(rows, clusterers, alpha, each=pairs is not None),
                                    measures_text=measure_line(measure_rows, alpha),
                                    measures_rule=MEASURE_RULE),
        measure_transitions=measure_rows,
        agreement={st.label: stage_agreement(st, clusterers) for st in stages},
        sensitivity=sens, notes=[*notes, *cl_notes, *_setting_notes(stages), *s_notes],
        settings={"alpha": alpha, "seed": seed, "power": POWER,
                  "power_assumption": "min_detectable_rise: exact McNemar power by enumeration at alpha / (Holm "
                                      "family size), single -> multi rate = the observed b / n",
                  **({"design": "pairs", "pairs": [list(p) for p in pairs]} if pairs is not None else {})},
        provenance=provenance(seed), out_dir=str(out_dir))
    claim_outputs(plan)
    render(result, stages, out_dir)
    return result


# ---------------------------------------------------------------- entry points (the CLI calls these)

def default_labels(dirs: list[Path]) -> list[str]:
    """Each run's dir name, or the nearest parent name that tells the runs apart (a/x/toy, b/x/toy -> a, b);
    runs no name tells apart are numbered (run#1, run#2)."""
    resolved = [Path(os.path.abspath(d)) for d in dirs]
    for depth in range(max(len(d.parts) for d in resolved)):
        labels = [d.parts[-1 - depth] if depth < len(d.parts) else "" for d in resolved]
        if all(labels) and len(set(labels)) == len(labels):
            return labels
    names = [d.name for d in dirs]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def compare_runs(runs: list[Path], labels: list[str] | None, out_dir: Path, overwrite: bool = False, *,
                 alpha: float = ALPHA, seed: int = 0, sensitivity_clusterers: Sequence[str] | None = None,
                 notes: Sequence[str] = (), benchmark: str | None = None,
                 sensitivity_lengths: Sequence[int] = DEFAULT_LENGTHS,
                 pairs: Sequence[tuple[str, str]] | None = None) -> Comparison:
    """Compare any measured runs in the given order (pairs: (earlier label, later label) pairs of runs to test
    instead of consecutive runs); labels default to default_labels. sensitivity_clusterers:
    threshold grids to re-cluster (None -> jaccard, plus embedding when used in every stage; [] -> none);
    sensitivity_lengths: the length curves' answer lengths (plus each run's max_new_tokens); notes and
    benchmark are recorded in compare.json."""
    if not runs or len(runs) < 2:
        raise UsageError("runs: give at least two measured dirs, e.g. runs=[runA/measured,runB/measured]")
    if out_dir is None:
        raise UsageError("out: give the output dir for the comparison, e.g. out=compare/")
    dirs = [measure_dir(Path(r)) for r in runs]
    if labels is not None and len(labels) != len(dirs):
        raise UsageError(f"labels: {len(labels)} labels for {len(dirs)} runs")
    if labels is None:
        labels = default_labels(dirs)
    elif len(set(map(str, labels))) != len(labels):
        raise UsageError(f"labels must be unique, got {labels}")
    check_outputs(comparison_plan(Path(out_dir), dirs), overwrite)   # before the runs are loaded
    return compare_stages([load_run(d, str(lab)) for d, lab in zip(dirs, labels)], Path(out_dir), overwrite,
                          alpha=alpha, seed=seed, sensitivity_clusterers=sensitivity_clusterers, notes=notes,
                          benchmark=benchmark, sensitivity_lengths=sensitivity_lengths, pairs=pairs)


def read_run_list(directory: Path) -> dict[str, tuple[list[tuple[str, Path]], list[str]]]:
    """The one reader of <directory>/runs.json: list name -> ([(label, run dir)] in order, notes)."""
    directory = Path(directory)
    path = directory / RUN_LIST
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory (give a dir with a {RUN_LIST}, or runs=[dirA,dirB])")
    if not path.exists():
        raise UsageError(f"{directory}: no {RUN_LIST} listing the measured runs to compare. A training chain writes "
                         "it when it measures or compares its stages: run `python -m train.measure_stage recipe=<recipe> "
                         "stage=<stage>` (or the chain, `python -m train.chain recipe=<recipe>`) once; or compare runs "
                         "explicitly: python -m measure compare runs=[dirA,dirB] labels=[a,b] out=<dir>")
    obj = read_json(path)
    lists = obj.get("runs") if isinstance(obj, dict) else None
    ok = isinstance(lists, dict) and all(
        isinstance(v, list) and all(isinstance(r, dict) and isinstance(r.get("label"), str) and isinstance(r.get("path"), str)
                                    for r in v) for v in lists.values())
    if not ok:
        raise UsageError(f"{path}: 'runs' must map a name to a list of {{\"label\": ..., \"path\": ...}} objects")
    notes = obj.get("notes") or {}
    return {name: ([(r["label"], directory / r["path"]) for r in rows], list(notes.get(name) or []))
            for name, rows in lists.items()}


def compare_listed(directory: Path, benchmark: str | None = None, out_dir: Path | None = None, overwrite: bool = False, *,
                   alpha: float = ALPHA, seed: int = 0, sensitivity_clusterers: Sequence[str] | None = None,
                   sensitivity_lengths: Sequence[int] = DEFAULT_LENGTHS) -> Comparison:
    """Compare the runs <directory>/runs.json lists for one benchmark (the only one when it lists one), as a
    sequence or, when its runs name a `vs`, in pairs -> <directory>/compare/ (<directory>/compare/<benchmark>/ when
    the file lists several benchmarks, so one comparison never replaces another's) unless out_dir."""
    directory = Path(directory)
    lists = read_run_list(directory)
    names = sorted(lists)
    if not names:
        raise UsageError(f"{directory / RUN_LIST}: lists no measured runs")
    if benchmark is None:
        if len(names) > 1:
            raise UsageError(f"{directory}: several benchmarks measured; pass benchmark=<name>, one of: {', '.join(names)}")
        benchmark = names[0]
    elif benchmark not in lists:
        raise UsageError(f"benchmark {benchmark!r} was not measured in {directory}; valid choices: {', '.join(names)}")
    runs, notes = lists[benchmark]
    out_dir = Path(out_dir) if out_dir is not None else directory / "compare" / (benchmark if len(names) > 1 else "")
    return compare_runs([p for _, p in runs], [lab for lab, _ in runs], out_dir, overwrite, alpha=alpha, seed=seed,
                        sensitivity_clusterers=sensitivity_clusterers, notes=notes, benchmark=benchmark,
                        sensitivity_lengths=sensitivity_lengths, pairs=read_run_pairs(directory / RUN_LIST)[benchmark])
