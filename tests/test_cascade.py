"""measure/analysis/cascade.py: hand cases of the cascade rule and its cost, recovery of the known order and
thresholds on synthetic data, leakage (fit rows never scored), CV, costs, notes and the file edges."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from measure.analysis import cascade as cas
from measure.analysis.cascade_costs import CostModel
from measure.records.records import GenerationTiming
from measure.records.cascade_result import CascadeCurve, CoveragePoint
from measure.analysis.cascade import (Cascade, analyze_split, apply_cascade, baseline_notes, cv_splits, evaluate, fit_cascade,
                             holdout_split, run_cascade)
from measure.common.errors import UsageError


def test_apply_cascade_answers_and_cost_by_hand():
    c = Cascade(("a", "b", "c"), (1.0, 5.0, 10.0), (1.0, math.inf, 2.0))   # b is off: never computed
    X = np.array([[0.5, 9, 1.0],    # passes a, passes c -> answered, cost 1 + 10
                  [0.5, 9, 3.0],    # passes a, fails c  -> abstains, cost 1 + 10
                  [2.0, 9, 0.0]])   # fails a -> abstains at once, c never computed, cost 1
    answered, cost = apply_cascade(c, X)
    assert answered.tolist() == [True, False, False]
    assert cost.tolist() == [11.0, 11.0, 1.0]
    ev = evaluate(c, X, np.array([True, True, True]), total_cost=16.0)
    assert ev["coverage"] == pytest.approx(1 / 3) and ev["accuracy"] == 1.0
    assert ev["relative_cost"] == pytest.approx((11 + 11 + 1) / 3 / 16)


def test_shared_work_is_paid_once_by_hand():
    # response_length and greedy_entropy_mean both need the greedy pass (0.5 s); n_clusters@embedding needs
    # sampling (0.3 s) + the embedding clusterer (0.1 s). Stage 2 adds nothing, stage 3 adds 0.4.
    model = CostModel((frozenset({"greedy"}), frozenset({"greedy"}), frozenset({"sampling", "embedding"})),
                      (("greedy", 0.5), ("sampling", 0.3), ("embedding", 0.1)))
    assert model.standalone() == pytest.approx([0.5, 0.5, 0.4]) and model.total() == pytest.approx(0.9)
    assert model.added([True, True, True]) == pytest.approx([0.5, 0.0, 0.4])
    assert model.added([False, True, True]) == pytest.approx([0.0, 0.5, 0.4])    # stage 1 off: stage 2 pays
    c = Cascade(("response_length", "greedy_entropy_mean", "n_clusters@embedding"), tuple(model.standalone()),
                (1.0, 1.0, 1.0), model)
    X = np.array([[2.0, 0, 0],     # stops at stage 1: the greedy pass only
                  [0.0, 2, 0],     # stops at stage 2: still the greedy pass only
                  [0.0, 0, 2],     # reaches stage 3: everything
                  [0.0, 0, 0]])    # answered: everything
    answered, cost = apply_cascade(c, X)
    assert answered.tolist() == [False, False, False, True]
    assert cost == pytest.approx([0.5, 0.5, 0.9, 0.9])
    assert evaluate(c, X, np.ones(4, bool), model.total())["relative_cost"] == pytest.approx((0.5 + 0.5 + 0.9 + 0.9) / 4 / 0.9)
    # the additive view would have charged 0.5 + 0.5 at stage 2 and 1.4 in all
    assert apply_cascade(Cascade(c.signals, c.costs, c.thresholds), X)[1] == pytest.approx([0.5, 1.0, 1.4, 1.4])


def test_fit_single_signal_hand_case():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([True, True, False, False])
    half = fit_cascade(X, y, [1.0], 0.5, ["s"])
    assert half.thresholds == (1.0,)                     # answer the two low-score (correct) questions
    assert fit_cascade(X, y, [1.0], 1.0, ["s"]).thresholds == (math.inf,)   # full coverage: nothing computed
    # Coverage 0.3 of 4 questions needs ceil(1.2) = 2 answered: 0.3*4 rounding must not demand 3 or allow 1.
    assert fit_cascade(X, y, [1.0], 0.3, ["s"]).thresholds == (1.0,)


def synthetic(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """70% correct; 'informative' is in [0,1) when correct and [2,3) when wrong; 'noise' is independent."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.7
    informative = np.where(y, rng.random(n), 2 + rng.random(n))
    noise = rng.random(n)
    return np.column_stack([noise, informative]), y


def test_synthetic_cascade_recovers_order_thresholds_and_cost():
    X, y = synthetic()
    # Costs make 'informative' the cheapest, so it must run first although it is the second column.
    order = sorted(range(2), key=lambda j: [5.0, 1.0][j])
    names, costs = [["noise", "informative"][j] for j in order], [[5.0, 1.0][j] for j in order]
    assert names == ["informative", "noise"]
    (fit, ev), = holdout_split(len(y), 0.5, seed=0)
    res = analyze_split(X[:, order], y, names, costs, fit, ev)
    casc = {p["target"]: p for p in res["methods"]["cascade"]["curve"]}
    for target in (0.3, 0.5):
        p = casc[target]
        assert p["accuracy"] == 1.0                                 # only correct questions answered
        assert p["thresholds"]["noise"] is None                     # the noise stage is switched off
        assert 0.0 <= p["thresholds"]["informative"] < 2.0          # between the correct and wrong ranges
        assert p["relative_cost"] == pytest.approx(1.0 / 6.0)       # only the cheap stage ever runs
        assert p["coverage"] >= target - 0.1
    # At 80% coverage at most 70/80 can be right; the cascade must answer every correct one.
    assert casc[0.8]["accuracy"] == pytest.approx(y[ev].sum() / casc[0.8]["n_answered"])
    assert casc[1.0]["relative_cost"] == 0.0 and casc[1.0]["accuracy"] == pytest.approx(y[ev].mean())
    single = res["methods"]["informative"]
    assert single["auroc"] == 1.0 and single["prr"] == pytest.approx(1.0)
    assert res["methods"]["noise"]["curve"][4]["accuracy"] < 0.9    # the noise baseline cannot select


def test_leakage_calibration_rows_are_never_scored(monkeypatch):
    X, y = synthetic(200, seed=3)
    (fit, ev), = holdout_split(len(y), 0.5, seed=7)
    assert np.intersect1d(fit, ev).size == 0 and len(fit) + len(ev) == len(y)

    seen = []
    real_fit = cas.fit_cascade

    def spy(Xf, yf, costs, coverage, signals, **kw):
        seen.append(np.asarray(Xf).copy())
        return real_fit(Xf, yf, costs, coverage, signals, **kw)
    monkeypatch.setattr(cas, "fit_cascade", spy)
    analyze_split(X, y, ["noise", "informative"], [1.0, 2.0], fit, ev)
    fit_rows = {tuple(r) for r in X[fit]}
    for arr in seen:   # every fit saw exactly the calibration rows (cascade: both columns; singles: one)
        assert len(arr) == len(fit)
        if arr.shape[1] == 2:
            assert {tuple(r) for r in arr} == fit_rows

    # With thresholds that ignore the data, poisoning the calibration rows cannot change the scores...
    fixed = Cascade(("noise", "informative"), (1.0, 2.0), (0.9, 1.0))
    monkeypatch.setattr(cas, "fit_cascade", lambda Xf, yf, costs, coverage, signals, **kw:
                        Cascade(tuple(signals), tuple(costs), tuple(fixed.thresholds[["noise", "informative"].index(s)]
                                                                      for s in signals)))
    clean = analyze_split(X, y, ["noise", "informative"], [1.0, 2.0], fit, ev)
    Xp, yp = X.copy(), y.copy()
    Xp[fit], yp[fit] = 1e9, ~y[fit]
    assert analyze_split(Xp, yp, ["noise", "informative"], [1.0, 2.0], fit, ev) == clean
    # ...while poisoning the evaluation rows does (the test can fail).
    Xq, yq = X.copy(), y.copy()
    yq[ev] = ~y[ev]
    assert analyze_split(Xq, yq, ["noise", "informative"], [1.0, 2.0], fit, ev) != clean
    with pytest.raises(ValueError, match="overlap"):
        analyze_split(X, y, ["noise", "informative"], [1.0, 2.0], fit, np.r_[ev, fit[:1]])


def test_cv_splits_partition_and_disjoint():
    splits = cv_splits(23, 4, seed=1)
    assert len(splits) == 4
    evaluated = np.concatenate([e for _, e in splits])
    assert sorted(evaluated.tolist()) == list(range(23))
    for f, e in splits:
        assert np.intersect1d(f, e).size == 0 and len(f) + len(e) == 23
    with pytest.raises(UsageError, match="cv_folds"):
        cv_splits(5, 3, seed=0)
    with pytest.raises(UsageError, match="calib_fraction"):
        holdout_split(10, 1.0, seed=0)


def test_baseline_notes_beats_and_ties():
    def m(*accs):
        return CascadeCurve(at_coverage={str(c): CoveragePoint(target=c, coverage=c, accuracy=a, relative_cost=0.1, thresholds=[])
                                         for c, a in zip((0.3, 0.5, 0.8), accs)}, curve=[], aurc_grid=None)
    notes = baseline_notes({"cascade": m(0.9, 0.8, 0.7), "response_length": m(0.95, 0.8, 0.6)})
    assert len(notes) == 2
    assert "30% target coverage the trivial response_length baseline beats the cascade" in notes[0]
    assert "50%" in notes[1] and "ties" in notes[1]
    assert "not among the signals" in baseline_notes({"cascade": m(0.9, 0.8, 0.7)})[0]


# ---------------------------------------------------------------- file edges

def write_measure(d: Path, n: int = 120, timing: dict | None = None, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = bool(rng.random() < 0.6) if i % 17 else None                       # some unlabelled
        wrong = label is False
        rows.append({"id": f"q{i}", "n_clusters": {"embedding": 1}, "clusters": {"embedding": [0]},
                     "label": label, "judgement": None if label is None else ("correct" if label else "incorrect"),
                     "signals": {"response_length": float(rng.integers(1, 30)),
                                 "greedy_entropy_mean": float(rng.random() + (1.5 if wrong else 0)),
                                 "n_clusters@embedding": float(rng.integers(1, 4)) if i != 5 else None}})
    (d / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = {"n_questions": n, **({"timing": timing} if timing else {})}
    (d / "report.json").write_text(json.dumps(report))
    return d


def test_run_cascade_end_to_end_with_unit_costs(tmp_path):
    d = write_measure(tmp_path / "m")
    res = run_cascade(d, None, None, None, seed=3)
    out = d / "cascade"
    assert res.out_dir == str(out)
    for name in ("cascade.json", "cascade.md", "risk_coverage.png"):
        assert (out / name).exists()
    assert (out / "risk_coverage.png").read_bytes()[:4] == b"\x89PNG"
    assert res.signals == ["response_length", "greedy_entropy_mean", "n_clusters@embedding"]
    assert res.costs == {"response_length": 1.0, "greedy_entropy_mean": 2.0, "n_clusters@embedding": 10.0}
    assert res.cost_source == "unit costs" and any("unit costs" in n for n in res.notes)
    assert any("'n_clusters@nli' is not in the data" in n for n in res.notes)
    n_unlabelled = sum(1 for i in range(120) if i % 17 == 0)
    assert res.excluded["unlabelled"] == n_unlabelled and res.excluded["missing n_clusters@embedding"] == 1
    fold, = res.split["folds"]
    assert fold["n_calibration"] + fold["n_evaluation"] == res.n_used == 120 - n_unlabelled - 1
    assert fold["n_evaluation"] == len(set(fold["evaluation_ids"]))
    for method in [res.cascade, *res.baselines.values()]:
        assert set(method.at_coverage) == {"0.3", "0.5", "0.8"}
    assert set(res.baselines) == set(res.signals) and res.baselines["greedy_entropy_mean"].prr is not None
    assert res.cascade.absent == {"aurc", "prr", "auroc"} and not res.baselines["greedy_entropy_mean"].absent
    # The entropy signal separates by construction: the cascade beats answering everything at 50%.
    assert res.cascade.at_coverage["0.5"].accuracy > res.base_accuracy
    md = (out / "cascade.md").read_text()
    assert cas.CASCADE_DEFINITION in md and "accuracy @50%" in md
    saved = json.loads((out / "cascade.json").read_text())
    assert saved["split"]["seed"] == 3
    again = run_cascade(d, None, None, tmp_path / "again", seed=3)
    assert again.cascade.at_coverage == res.cascade.at_coverage          # seeded: reproducible


def test_overwrite_refusal_and_samples_path(tmp_path):
    d = write_measure(tmp_path / "m", n=40)
    (d / "samples.jsonl").write_text("{}\n")
    run_cascade(d / "samples.jsonl", ["greedy_entropy_mean"], None, None, seed=0)    # samples file beside questions
    with pytest.raises(UsageError, match="overwrite=true"):
        run_cascade(d, ["greedy_entropy_mean"], None, None, seed=0)
    run_cascade(d, ["greedy_entropy_mean"], None, None, seed=0, overwrite=True)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "samples.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match="score the samples first"):
        run_cascade(lone / "samples.jsonl", None, None, None, seed=0)


def test_costs_from_timing_given_costs_and_cv(tmp_path):
    # an old report's timing: work units only, no "work" key -> the work is derived from the signal names
    timing = {"seconds_per_question": {"greedy": 0.5, "sampling": 0.1, "embedding": 0.2, "judge": 9.0}}
    d = write_measure(tmp_path / "m", timing=timing)
    res = run_cascade(d, None, None, tmp_path / "a", seed=0, cv_folds=3)
    # measured seconds reorder the cascade: embedding clusters (0.1 + 0.2 s) before the greedy pass (0.5 s)
    assert res.signals == ["n_clusters@embedding", "response_length", "greedy_entropy_mean"]
    assert res.cost_source.startswith("measured seconds")
    acc = res.cost_accounting
    assert acc["added_in_order"] == pytest.approx({"n_clusters@embedding": 0.3, "response_length": 0.5,
                                                   "greedy_entropy_mean": 0.0})   # the greedy pass is paid once
    assert acc["every_signal"] == pytest.approx(0.8) and "judge" not in acc["unit_cost"]
    assert res.costs == pytest.approx({"n_clusters@embedding": 0.3, "response_length": 0.5, "greedy_entropy_mean": 0.5})
    md = (tmp_path / "a" / "cascade.md").read_text()
    assert "| 3 | greedy_entropy_mean | greedy | 0.500 | 0.000 |" in md and "every signal, each unit once: 0.800" in md
    assert res.split["mode"] == "3-fold cross-validation" and len(res.split["folds"]) == 3
    ids = [i for f in res.split["folds"] for i in f["evaluation_ids"]]
    assert len(ids) == len(set(ids)) == res.n_used                                   # each evaluated once
    assert len(res.cascade.at_coverage["0.5"].thresholds) == 3                  # one fit per fold
    res = run_cascade(d, ["greedy_entropy_mean", "response_length"], [3.0, 4.0], tmp_path / "b", seed=0)
    assert res.signals == ["greedy_entropy_mean", "response_length"] and res.cost_source.startswith("given")
    with pytest.raises(UsageError, match="costs: give 2"):
        run_cascade(d, ["greedy_entropy_mean", "response_length"], [1.0], tmp_path / "c", seed=0)
    with pytest.raises(UsageError, match="valid choices: .*greedy_entropy_mean"):
        run_cascade(d, ["semantic_entropy@nli"], None, tmp_path / "c", seed=0)
    scored = write_measure(tmp_path / "s", timing={"seconds_per_question": {**timing["seconds_per_question"], "greedy": 0.0},
                                                   "measured_generation": False})
    res = run_cascade(scored, None, None, None, seed=0)
    assert res.cost_source == "unit costs" and any("no measured generation" in n for n in res.notes)
    partial = write_measure(tmp_path / "p", timing={"seconds_per_question": {"greedy": 0.5}})
    res = run_cascade(partial, None, None, None, seed=0)
    assert res.cost_source == "unit costs"
    assert any("no timing for response_length" not in n and "no timing for n_clusters@embedding" in n for n in res.notes)


def test_timing_block_declares_each_signals_work():
    from measure.pipeline import timing_block
    keys = ["response_length", "lexical_dissimilarity", "n_clusters@jaccard", "greedy_nll"]
    t = timing_block(10, GenerationTiming(greedy_s=5.0, sampling_s=3.0, measured=True), {"jaccard": 1.0}, 2.0, keys)
    assert t["work"] == {"response_length": ["greedy"], "lexical_dissimilarity": ["sampling"],   # the samples,
                         "n_clusters@jaccard": ["sampling", "jaccard"], "greedy_nll": ["greedy"]}  # not the greedy pass
    sp = t["seconds_per_question"]
    assert (sp["greedy"], sp["sampling"], sp["jaccard"], sp["judge"]) == pytest.approx((0.5, 0.3, 0.1, 0.2))
    assert sp["lexical_dissimilarity"] == pytest.approx(0.3) and sp["n_clusters@jaccard"] == pytest.approx(0.4)
    # every signal together: 0.5 + 0.3 + 0.1, not the sum of the standalone costs (0.5 + 0.3 + 0.4 + 0.5)
    from measure.analysis.cascade_costs import resolve_costs
    model, source, _ = resolve_costs(keys, None, t)
    assert model.total() == pytest.approx(0.9) and source.startswith("measured")
    scored = timing_block(10, GenerationTiming(), {"jaccard": 1.0}, 0.0, keys)   # a scored samples file: no generation time
    assert "response_length" not in scored["seconds_per_question"] and scored["measured_generation"] is False
