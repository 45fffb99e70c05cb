"""Cross-stage comparison: where in a training chain does homogenization appear, and under which clusterers?

    python -m measure compare checkpoints/<name> [benchmark=...]       every measured stage, chain order
    python -m measure compare runs=[dirA,dirB] labels=[a,b] out=<dir>  any measured checkpoints

Inputs are measure dirs (questions.jsonl + report.json, optionally samples.jsonl). Questions are matched
by id; every stage must hold exactly the same ids. Clusterers are those present in every stage.

Between consecutive stages, per clusterer, on the same questions: exact McNemar on the single-cluster
indicator, Wilcoxon signed-rank on the cluster counts (with rank-biserial effect size) and Newcombe's
paired score interval of the SCR difference; per stage, Clopper-Pearson intervals of SCR; Holm correction over ALL tests of the comparison; the verdict by
VERDICT_RULE. The statistics themselves, and their exact definitions, are in measure.analysis.paired_stats.

Sensitivity (SCR vs threshold and vs N, from saved outputs only) is in measure.analysis.sensitivity.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from measure.analysis.compare_render import render
from measure.common.errors import UsageError
from measure.common.io import provenance, read_json, refuse_overwrite
from measure.scoring.intervals import PROPORTION_CI_METHOD, proportion_ci
from measure.scoring.metrics import scr
from measure.analysis.paired_stats import ALPHA, apply_holm, pair_agreement, paired_tests, verdict
from measure.analysis.measured_run import MeasuredRun, benchmark_dir, load_run, measure_dir, stage_benchmarks
from measure.records.results import ClustererStats, Comparison, StageSummary, Transition, transition_from_json
from measure.analysis.sensitivity import sensitivity

OUTPUTS = ("compare.json", "compare.md", "compare.html")


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


def counts(stage: MeasuredRun, clusterer: str) -> np.ndarray:
    return np.array([int(r.n_clusters[clusterer]) for r in stage.records])


# ---------------------------------------------------------------- per-stage summary

def _mean(values) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
    return float(np.mean(v)) if v else None


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
        token_entropy_mean=_mean(r.signals.get("greedy_entropy_mean") for r in stage.records),
        auroc=report.auroc if report else {}, auroc_single_cluster=report.auroc_single_cluster if report else {},
        clusterers=per)


# ---------------------------------------------------------------- transitions and clusterer agreement

def stage_transitions(stages: list[MeasuredRun], clusterers: list[str], *, alpha: float) -> tuple[list[Transition], int]:
    rows = [{"from": a.label, "to": b.label, "clusterer": c, **paired_tests(counts(a, c), counts(b, c))}
            for a, b in zip(stages, stages[1:]) for c in clusterers]
    family = apply_holm(rows, alpha)
    return [transition_from_json(r) for r in rows], family


def stage_agreement(stage: MeasuredRun, clusterers: list[str]) -> list[dict]:
    out = []
    for i, a in enumerate(clusterers):
        for b in clusterers[i + 1:]:
            out.append({"a": a, "b": b, **pair_agreement(counts(stage, a) == 1, counts(stage, b) == 1,
                                                         [r.clusters.get(a, []) for r in stage.records],
                                                         [r.clusters.get(b, []) for r in stage.records])})
    return out


# ---------------------------------------------------------------- the engine

def _check_outputs(out_dir: Path, overwrite: bool) -> None:
    refuse_overwrite(out_dir, OUTPUTS, overwrite=overwrite, what="comparison outputs")


def _setting_notes(stages: list[MeasuredRun]) -> list[str]:
    notes = []
    for key in ("n_samples", "temperature", "top_p", "max_new_tokens"):
        vals = {st.label: getattr(st.report.settings, key) if st.report else None for st in stages}
        if len({repr(v) for v in vals.values()}) > 1:
            notes.append(f"stages differ in {key}: " + ", ".join(f"{k}={v}" for k, v in vals.items())
                         + " (SCR depends on it; differences may not be due to training)")
    return notes


def compare_stages(stages: list[MeasuredRun], out_dir: Path, overwrite: bool, *, alpha: float = ALPHA, seed: int = 0, sensitivity_clusterers: Sequence[str] | None = None,
                   notes: Sequence[str] = (), benchmark: str | None = None) -> Comparison:
    """Compare loaded stages (in order) and write compare.json/md/html + plots into out_dir."""
    out_dir = Path(out_dir)
    _check_outputs(out_dir, overwrite)
    if len(stages) < 2:
        raise UsageError(f"compare needs at least two measured stages, got {len(stages)}")
    if len({st.label for st in stages}) != len(stages):
        raise UsageError(f"stage labels must be unique, got {[st.label for st in stages]}")
    stages = match_questions(stages)
    clusterers, cl_notes = common_clusterers(stages)
    rows, family = stage_transitions(stages, clusterers, alpha=alpha)
    sens, s_notes = sensitivity(stages, clusterers, sensitivity_clusterers)
    result = Comparison(
        benchmark=benchmark, stages=[st.label for st in stages], n_questions=len(stages[0].records), clusterers=clusterers,
        per_stage={st.label: stage_summary(st, clusterers) for st in stages},
        transitions=rows, holm={"method": "holm", "family_size": family, "alpha": alpha,
                                "family": "every McNemar and Wilcoxon test, every transition and clusterer"},
        verdict=verdict(rows, clusterers, alpha),
        agreement={st.label: stage_agreement(st, clusterers) for st in stages},
        sensitivity=sens, notes=[*notes, *cl_notes, *_setting_notes(stages), *s_notes],
        settings={"alpha": alpha, "seed": seed}, provenance=provenance(seed), out_dir=str(out_dir))
    render(result, stages, out_dir)
    return result


# ---------------------------------------------------------------- entry points (the CLI calls these)

def compare_runs(runs: list[Path], labels: list[str] | None, out_dir: Path, overwrite: bool = False, *,
                 alpha: float = ALPHA, seed: int = 0, sensitivity_clusterers: Sequence[str] | None = None) -> Comparison:
    """Compare any measured runs in the given order; labels default to the stage/dir names
    (<stage>/measure/<benchmark> -> <stage>). sensitivity_clusterers: threshold grids to re-cluster
    (None -> jaccard, plus embedding when used in every stage; [] -> none)."""
    if not runs or len(runs) < 2:
        raise UsageError("runs: give at least two measured dirs, e.g. runs=[checkpoints/x/base/measure/gsm8k,...]")
    if out_dir is None:
        raise UsageError("out: give the output dir for the comparison, e.g. out=compare/")
    dirs = [measure_dir(Path(r)) for r in runs]
    if labels is not None and len(labels) != len(dirs):
        raise UsageError(f"labels: {len(labels)} labels for {len(dirs)} runs")
    if labels is None:
        labels = [d.parent.parent.name if d.parent.name == "measure" else d.name for d in dirs]
        labels = [lab if labels.count(lab) == 1 else f"{lab}#{i + 1}" for i, lab in enumerate(labels)]
    elif len(set(map(str, labels))) != len(labels):
        raise UsageError(f"labels must be unique, got {labels}")
    _check_outputs(Path(out_dir), overwrite)
    return compare_stages([load_run(d, str(lab)) for d, lab in zip(dirs, labels)], Path(out_dir), overwrite,
                          alpha=alpha, seed=seed, sensitivity_clusterers=sensitivity_clusterers)


def chain_order(chain_dir: Path) -> list[str]:
    """MeasuredRun names in chain order: chain.json's "stages" when present, else base then stage.json chain_index."""
    chain_dir = Path(chain_dir)
    if not chain_dir.is_dir():
        raise UsageError(f"{chain_dir}: not a directory (expected checkpoints/<name>)")
    if (chain_dir / "chain.json").exists():
        stages = read_json(chain_dir / "chain.json").get("stages")
        if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
            raise UsageError(f"{chain_dir / 'chain.json'}: 'stages' must be a list of stage names")
        return stages
    found = {}
    for manifest in sorted(chain_dir.glob("*/stage.json")):
        name = manifest.parent.name
        index = read_json(manifest).get("chain_index")
        if name != "base" and (isinstance(index, bool) or not isinstance(index, int)):
            raise UsageError(f"{manifest}: no integer 'chain_index', cannot order the chain")
        found[name] = -1 if name == "base" else index
    if not found:
        raise UsageError(f"{chain_dir}: no stage dirs (*/stage.json); is this checkpoints/<name>?")
    return sorted(found, key=lambda k: (found[k], k))


def compare_chain(chain_dir: Path, benchmark: str | None = None, out_dir: Path | None = None, overwrite: bool = False, *,
                  alpha: float = ALPHA, seed: int = 0, sensitivity_clusterers: Sequence[str] | None = None) -> Comparison:
    """Every measured stage of checkpoints/<name>/ for one benchmark, in chain order -> <chain>/compare/."""
    chain_dir = Path(chain_dir)
    order = chain_order(chain_dir)
    measured = {s: stage_benchmarks(chain_dir / s) for s in order}
    benchmarks = sorted({b for bs in measured.values() for b in bs})
    if not benchmarks:
        raise UsageError(f"{chain_dir}: no measured stage (no <stage>/measure/<benchmark>/questions.jsonl)")
    if benchmark is None:
        if len(benchmarks) > 1:
            raise UsageError(f"{chain_dir}: several benchmarks measured; pass benchmark=<name>, one of: {', '.join(benchmarks)}")
        benchmark = benchmarks[0]
    elif benchmark not in benchmarks:
        raise UsageError(f"benchmark {benchmark!r} was not measured in {chain_dir}; valid choices: {', '.join(benchmarks)}")
    use = [s for s in order if benchmark in measured.get(s, [])]
    notes = [f"stage {s!r} has no {benchmark} measurement; left out" for s in order if s not in use]
    out_dir = Path(out_dir) if out_dir is not None else chain_dir / "compare"
    _check_outputs(out_dir, overwrite)
    stages = [load_run(benchmark_dir(chain_dir / s, benchmark), s) for s in use]
    return compare_stages(stages, out_dir, overwrite, notes=notes, benchmark=benchmark, alpha=alpha, seed=seed,
                          sensitivity_clusterers=sensitivity_clusterers)
