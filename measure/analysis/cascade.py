"""Cheapest-first cascade of uncertainty signals, as a selective predictor fit and evaluated honestly.

    python -m measure cascade <measure dir | samples.jsonl beside questions.jsonl> [signals=[...] costs=[...]]

CASCADE_DEFINITION below is the precise rule (also written into cascade.md). Inputs: questions.jsonl
(signals + labels) and, when present, report.json, whose "timing" gives the default costs as work units
(greedy pass, sampling, each clusterer) that a stage pays only when no earlier stage has paid them
(measure.analysis.cascade_costs; if a unit is not measured, every cost falls back to the documented unit costs,
UNIT_COSTS, and the output says so). cascade.md/json show the accounting.

Only labelled questions (label true/false) with a finite value of every selected signal are used; the
excluded counts are reported. Fitting sees the calibration rows only, scoring the evaluation rows only
(`analyze_split` asserts the index sets are disjoint); with cv_folds=k every question is evaluated once,
by a cascade fit on the other k-1 folds, and the reported numbers are means over folds.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from measure.analysis.cascade_costs import CostModel, resolve_costs
from measure.analysis.cascade_render import write_cascade
from measure.common.errors import UsageError
from measure.common.io import provenance
from measure.common.outputs import OutputPlan, check_outputs, claim_outputs, existing_inputs
from measure.scoring.metrics import auroc, aurc, finite, prr
from measure.analysis.measured_run import load_run, measure_dir
from measure.records.cascade_result import CascadeCurve, CascadeResult, CoveragePoint

DEFAULT_SIGNALS = ("response_length", "greedy_entropy_mean", "n_clusters@embedding", "n_clusters@nli")
TARGETS = (0.3, 0.5, 0.8)
CURVE = tuple(round(0.1 * i, 1) for i in range(1, 11))   # includes every target
GRID_LEVELS = 8        # candidate thresholds per signal: order statistics at 8 levels in [c, 1), plus "off"
MAX_COMBOS = 20000     # fewer levels per signal when (levels + 1) ** n_signals would exceed this
OUTPUTS = ("cascade.json", "cascade.md", "risk_coverage.png")
CASCADE_DEFINITION = (
    "Cascade: signals s_1..s_m sorted by cost (cheapest first), one threshold t_j per signal (t_j = off means "
    "the stage is skipped: never computed, never abstains). A question is processed stage by stage: compute "
    "s_j; if s_j > t_j abstain and stop (later signals are never computed), else pass on; the cascade answers "
    "(gives the greedy answer) only when every active stage passes. Cost of a question = the cost of the work "
    "its computed stages need, each piece of work paid once: a stage adds only the work (greedy pass, sampling, "
    "a clusterer) that no earlier computed stage has paid, and the judge is never a cost; relative cost = mean "
    "cost / the cost of computing every signal (each piece of work once). Given or unit costs are per signal "
    "and additive. Fitting for a target "
    "coverage c on the calibration split: every combination of per-signal candidate thresholds (for each of "
    "GRID_LEVELS levels l evenly spaced in [c, 1), the ceil(l n_cal)-th smallest calibration value of that "
    "signal, plus off) is tried; among those answering at least ceil(c n_cal) calibration questions the one with "
    "the highest calibration accuracy wins, ties broken by lower cost then higher coverage. The fitted "
    "cascade is then applied unchanged to the evaluation split, whose realized coverage is reported. Each "
    "single signal is a baseline fit by the same procedure with m = 1. Risk-coverage curve: targets "
    "0.1..1.0; 'aurc_grid' is the mean evaluation risk over those targets (comparable across methods); "
    "'aurc'/'prr'/'auroc' of single signals are the usual threshold-free metrics on the evaluation split.")


@dataclass(frozen=True)
class Cascade:
    signals: tuple[str, ...]
    costs: tuple[float, ...]           # standalone cost per signal
    thresholds: tuple[float, ...]      # math.inf = stage off
    model: CostModel | None = None     # shared work; None: the costs are additive

    def describe(self) -> dict[str, float | None]:
        return {s: (t if math.isfinite(t) else None) for s, t in zip(self.signals, self.thresholds)}

    def added_costs(self) -> list[float]:
        """What each stage adds when a question reaches it (0 for stages that are off)."""
        model = self.model or CostModel.additive(self.signals, self.costs)
        return model.added([math.isfinite(t) for t in self.thresholds])


# ---------------------------------------------------------------- pure core

def apply_cascade(cascade: Cascade, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(answered mask, cost per question) for rows of X (columns = cascade.signals)."""
    X = np.asarray(X, dtype=float)
    reached, cost = np.ones(len(X), dtype=bool), np.zeros(len(X))
    for j, (t, added) in enumerate(zip(cascade.thresholds, cascade.added_costs())):
        if math.isfinite(t):
            cost += added * reached
            reached &= X[:, j] <= t
    return reached, cost


def candidate_thresholds(values: np.ndarray, coverage: float, levels: int = GRID_LEVELS) -> list[float]:
    if coverage >= 1.0:
        return [math.inf]
    # The k-th smallest value lets at least k questions pass (more with ties): k = ceil(level * n).
    ordered = np.sort(np.asarray(values, dtype=float))
    ks = [max(1, math.ceil(round(level * len(ordered), 9))) for level in np.linspace(coverage, 1.0, levels + 1)[:-1]]
    return [*sorted({float(ordered[k - 1]) for k in ks}), math.inf]


def fit_cascade(X: np.ndarray, correct: np.ndarray, costs: Sequence[float], coverage: float,
                signals: Sequence[str], levels: int = GRID_LEVELS, model: CostModel | None = None) -> Cascade:
    """Exhaustive grid search of CASCADE_DEFINITION on (X, correct) = the calibration rows only.
    `model` charges shared work once (None: `costs` are additive)."""
    model = model or CostModel.additive(signals, costs)
    X, y = np.asarray(X, dtype=float), np.asarray(correct, dtype=bool)
    n, m = X.shape
    while levels > 1 and (levels + 1) ** m > MAX_COMBOS:
        levels -= 1
    need = math.ceil(round(coverage * n, 9))
    cands = [candidate_thresholds(X[:, j], coverage, levels) for j in range(m)]
    masks = [np.array([X[:, j] <= t for t in cands[j]]) for j in range(m)]
    last_on = np.isfinite(cands[-1])
    best_key, best = None, None
    # The last stage is vectorized over its candidates; the loop runs over the others' combinations.
    for combo in itertools.product(*(range(len(c)) for c in cands[:-1])):
        reached, cost = np.ones(n, dtype=bool), 0.0
        added = model.added([math.isfinite(cands[j][g]) for j, g in enumerate(combo)] + [True])
        for j, g in enumerate(combo):
            if math.isfinite(cands[j][g]):
                cost += added[j] * reached.mean()
                reached = reached & masks[j][g]
        answered = masks[-1] & reached
        n_ans, n_cor = answered.sum(1), (answered & y).sum(1)
        total = cost + np.where(last_on, added[-1] * reached.mean(), 0.0)
        for g in np.flatnonzero((n_ans >= need) & (n_ans > 0)):
            key = (n_cor[g] / n_ans[g], -total[g], n_ans[g])
            if best_key is None or key > best_key:
                best_key, best = key, (*combo, g)
    return Cascade(tuple(signals), tuple(float(c) for c in costs), tuple(cands[j][g] for j, g in enumerate(best)), model)


def evaluate(cascade: Cascade, X: np.ndarray, correct: np.ndarray, total_cost: float) -> dict:
    answered, cost = apply_cascade(cascade, X)
    y = np.asarray(correct, dtype=bool)
    k = int(answered.sum())
    return {"coverage": k / len(y), "accuracy": float(y[answered].mean()) if k else None, "n_answered": k,
            "relative_cost": float(cost.mean() / total_cost)}


def holdout_split(n: int, calib_fraction: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if not 0.0 < calib_fraction < 1.0:
        raise UsageError(f"calib_fraction: must be in (0, 1), got {calib_fraction}")
    n_cal = int(round(calib_fraction * n))
    if n_cal < 2 or n - n_cal < 2:
        raise UsageError(f"{n} usable questions cannot be split {calib_fraction:g}/{1 - calib_fraction:g} into "
                         "calibration and evaluation sets of at least 2 questions each")
    perm = np.random.default_rng(seed).permutation(n)
    return [(np.sort(perm[:n_cal]), np.sort(perm[n_cal:]))]


def cv_splits(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2 or n < 2 * k:
        raise UsageError(f"cv_folds: must be an integer >= 2 with at least 2 questions per fold ({n} usable), got {k!r}")
    folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), np.sort(f)) for i, f in enumerate(folds)]


def analyze_split(X: np.ndarray, correct: np.ndarray, signals: Sequence[str], costs: Sequence[float],
                  fit_idx: np.ndarray, eval_idx: np.ndarray, model: CostModel | None = None) -> dict:
    """Fit on fit_idx rows, score eval_idx rows: the cascade and every single-signal baseline. Relative
    costs are against computing every signal (`model`'s total; the sum of `costs` when additive)."""
    model = model or CostModel.additive(signals, costs)
    if np.intersect1d(fit_idx, eval_idx).size:
        raise ValueError("calibration and evaluation rows overlap")
    Xf, yf, Xe, ye = X[fit_idx], correct[fit_idx], X[eval_idx], correct[eval_idx]
    total = model.total()
    methods = {"cascade": list(range(len(signals))), **{s: [j] for j, s in enumerate(signals)}}
    out = {"n_fit": int(len(fit_idx)), "n_eval": int(len(eval_idx)), "base_accuracy": float(ye.mean()), "methods": {}}
    for name, cols in methods.items():
        curve = []
        for c in CURVE:
            fitted = fit_cascade(Xf[:, cols], yf, [costs[j] for j in cols], c, [signals[j] for j in cols],
                                 model=model.subset(cols))
            curve.append({"target": c, **evaluate(fitted, Xe[:, cols], ye, total), "thresholds": fitted.describe()})
        entry = {"curve": curve}
        if name != "cascade":
            s, wrong = Xe[:, cols[0]], ~ye
            entry.update(aurc=aurc(s, wrong), prr=prr(s, wrong), auroc=auroc(s, wrong))
        out["methods"][name] = entry
    return out


def _avg(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def combine(folds: list[dict]) -> dict:
    """Means over folds (one fold for a hold-out split) of every reported number."""
    out = {}
    for name in folds[0]["methods"]:
        curves = [f["methods"][name]["curve"] for f in folds]
        curve = [CoveragePoint(target=pts[0]["target"], **{k: _avg(p[k] for p in pts) for k in ("coverage", "accuracy", "relative_cost")},
                               thresholds=[p["thresholds"] for p in pts]) for pts in zip(*curves)]
        risks = [_avg(1 - p["accuracy"] for p in c if p["accuracy"] is not None) for c in curves]
        scores = {key: _avg(f["methods"][name][key] for f in folds)        # the baselines' only
                  for key in ("aurc", "prr", "auroc") if key in folds[0]["methods"][name]}
        out[name] = CascadeCurve(at_coverage={str(p.target): p for p in curve if p.target in TARGETS}, curve=curve,
                                 aurc_grid=_avg(risks), **scores,
                                 absent=frozenset(k for k in ("aurc", "prr", "auroc") if k not in scores))
    return out


def baseline_notes(methods: dict[str, CascadeCurve], trivial: str = "response_length") -> list[str]:
    """An explicit note for every target coverage where the trivial baseline beats (or ties) the cascade."""
    if trivial not in methods:
        return [f"the trivial baseline {trivial!r} is not among the signals, so it could not be compared"]
    notes = []
    for c, casc in methods["cascade"].at_coverage.items():
        base = methods[trivial].at_coverage[c]
        if base.accuracy is None or casc.accuracy is None:
            continue
        verb = "beats" if base.accuracy > casc.accuracy else "ties" if base.accuracy == casc.accuracy else None
        if verb:
            notes.append(f"at {float(c):.0%} target coverage the trivial {trivial} baseline {verb} the cascade: "
                         f"accuracy {base.accuracy:.3f} (relative cost {base.relative_cost:.3f}) vs "
                         f"{casc.accuracy:.3f} (relative cost {casc.relative_cost:.3f})")
    return notes


# ---------------------------------------------------------------- edges

def select_signals(records, signals: Sequence[str] | None) -> tuple[list[str], list[str]]:
    present = list(dict.fromkeys(k for r in records for k, v in r.signals.items() if finite(v)))
    if signals is None:
        chosen = [s for s in DEFAULT_SIGNALS if s in present]
        notes = [f"default signal {s!r} is not in the data; skipped" for s in DEFAULT_SIGNALS if s not in present]
        if not chosen:
            raise UsageError(f"none of the default signals ({', '.join(DEFAULT_SIGNALS)}) is in the data; "
                             f"pass signals=[...] from: {', '.join(present) or 'none'}")
        return chosen, notes
    if isinstance(signals, str):
        signals = [signals]
    for s in signals:
        if s not in present:
            raise UsageError(f"signals: {s!r} has no values in questions.jsonl; valid choices: {', '.join(present) or 'none'}")
    if len(set(signals)) != len(signals) or not signals:
        raise UsageError(f"signals: give distinct signal names, got {list(signals)}")
    return list(signals), []


def run_cascade(measure_dir_or_samples: Path, signals: list[str] | None = None, costs: list[float] | None = None,
                out_dir: Path | None = None, seed: int = 0, calib_fraction: float = 0.5,
                cv_folds: int | None = None, overwrite: bool = False) -> CascadeResult:
    """Fit and evaluate the cascade; writes cascade.json, cascade.md and risk_coverage.png into out_dir
    (default <measure dir>/cascade/). Returns the cascade.json content as a CascadeResult."""
    mdir = measure_dir(Path(measure_dir_or_samples))
    out_dir = Path(out_dir) if out_dir is not None else mdir / "cascade"
    plan = OutputPlan("measure cascade", "cascade", out_dir, files=OUTPUTS, marker="cascade.json", legacy=("cascade.json",),
                      inputs=existing_inputs([mdir / "questions.jsonl", mdir / "report.json"]), what="cascade outputs")
    check_outputs(plan, overwrite)
    run = load_run(mdir, mdir.name, need_report=False)
    records = list(run.records)
    names, notes = select_signals(records, signals)
    model, cost_source, cost_notes = resolve_costs(names, costs, run.report.timing if run.report else None)
    order = sorted(range(len(names)), key=lambda j: model.standalone()[j])   # stable: ties keep the given order
    names, model = [names[j] for j in order], model.subset(order)
    cost_list = model.standalone()
    rows = [r for r in records if r.label is not None and all(finite(r.signals.get(s)) for s in names)]
    excluded = {"unlabelled": sum(r.label is None for r in records),
                **{f"missing {s}": sum(r.label is not None and not finite(r.signals.get(s)) for r in records) for s in names}}
    X = np.array([[float(r.signals[s]) for s in names] for r in rows]).reshape(len(rows), len(names))
    y = np.array([bool(r.label) for r in rows])
    if not rows:   # name the run and the cause, not only "0 usable questions"
        cause = (f"none of its {len(records)} questions is labelled (no gold answers for the judge, or judge none; "
                 "give 'label' or gold answers in the samples and score them again)" if excluded["unlabelled"] == len(records)
                 else f"no labelled question has a finite value of every signal ({', '.join(names)})")
        raise UsageError(f"cascade on {mdir}: no usable question: {cause}")
    try:
        splits = cv_splits(len(rows), cv_folds, seed) if cv_folds is not None else holdout_split(len(rows), calib_fraction, seed)
    except UsageError as e:
        raise UsageError(f"cascade on {mdir}: {e}") from None
    folds = [analyze_split(X, y, names, cost_list, f, e, model) for f, e in splits]
    methods = combine(folds)
    ids = [r.id for r in rows]
    cascade = methods.pop("cascade")
    result = CascadeResult(
        source=str(mdir), definition=CASCADE_DEFINITION, signals=names,
        costs=dict(zip(names, cost_list)), cost_source=cost_source, cost_accounting=model.accounting(names),
        n_questions=len(records), n_used=len(rows), excluded=excluded,
        split={"mode": f"{cv_folds}-fold cross-validation" if cv_folds is not None else "hold-out", "seed": seed,
               "calib_fraction": None if cv_folds is not None else calib_fraction,
               "folds": [{"n_calibration": f["n_fit"], "n_evaluation": f["n_eval"],
                          "evaluation_ids": [ids[i] for i in e]} for f, (_, e) in zip(folds, splits)]},
        base_accuracy=_avg(f["base_accuracy"] for f in folds), targets=list(TARGETS), cascade=cascade, baselines=methods,
        notes=[*notes, *cost_notes, *baseline_notes({"cascade": cascade, **methods})], provenance=provenance(seed),
        out_dir=str(out_dir))
    claim_outputs(plan)
    write_cascade(result, out_dir)
    return result
