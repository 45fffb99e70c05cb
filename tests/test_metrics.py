"""Hand-computed cases for measure.scoring.metrics (higher score = more uncertain; positive = incorrect)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from measure.common.errors import UsageError
from measure.scoring.metrics import (accuracy_at_coverage, aurc, auroc, bootstrap_ci, cohens_d, prr, risk_coverage,
                             scr, summarize)
from measure.records.records import QuestionRecord
from measure.scoring.intervals import NO_INTERVAL, ci_label

F, T = False, True


def test_scr_hand_value():
    assert scr([1, 1, 2, 3]) == 0.5
    assert scr([2, 3]) == 0.0
    assert scr([1]) == 1.0
    with pytest.raises(ValueError):
        scr([])


def test_auroc_with_ties_counts_half():
    # incorrect scores {0.4, 0.8} vs correct {0.1, 0.4}: pairs 1 + 0.5 (tie) + 1 + 1 = 3.5 of 4
    assert auroc([0.1, 0.4, 0.4, 0.8], [F, T, F, T]) == pytest.approx(0.875)
    assert auroc([0.1, 0.2, 0.8, 0.9], [F, F, T, T]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [F, F, T, T]) == 0.0


def test_auroc_constant_signal_is_exactly_half_and_one_class_is_none():
    assert auroc([0.3, 0.3, 0.3, 0.3], [F, T, T, F]) == 0.5
    assert auroc([0.1, 0.2], [T, T]) is None
    assert auroc([0.1, 0.2], [F, F]) is None
    assert auroc([], []) is None
    with pytest.raises(ValueError):
        auroc([0.1, float("nan")], [T, F])


def test_cohens_d_hand_value():
    # incorrect [4,6,8]: mean 6, var 4; correct [0,2,4,6]: mean 3, var 20/3
    # pooled var = (2*4 + 3*20/3) / 5 = 5.6 -> d = 3 / sqrt(5.6)
    d = cohens_d([0, 2, 4, 6, 4, 6, 8], [F, F, F, F, T, T, T])
    assert d == pytest.approx(3 / math.sqrt(5.6))
    assert cohens_d([1, 2, 3], [T, F, F]) is None            # one incorrect question only
    assert cohens_d([1, 1, 1, 1], [T, T, F, F]) == 0.0       # no spread, equal means
    assert cohens_d([2, 2, 1, 1], [T, T, F, F]) is None      # no spread, different means: no finite d


def test_risk_coverage_and_aurc_hand_example():
    cov, risk = risk_coverage([0.1, 0.2, 0.3, 0.4], [F, T, F, T])
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 1 / 2, 1 / 3, 1 / 2])
    assert aurc([0.1, 0.2, 0.3, 0.4], [F, T, F, T]) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert aurc([], []) is None


def test_risk_coverage_ties_are_averaged_and_order_free():
    # sorted: 0.1(F), tie {0.4 T, 0.4 F}, 0.8(T): expected errors 0, 0.5, 1, 2
    _, risk = risk_coverage([0.1, 0.4, 0.4, 0.8], [F, T, F, T])
    np.testing.assert_allclose(risk, [0, 0.25, 1 / 3, 0.5])
    _, swapped = risk_coverage([0.4, 0.1, 0.8, 0.4], [F, F, T, T])
    np.testing.assert_allclose(swapped, risk)
    assert aurc([0.1, 0.4, 0.4, 0.8], [F, T, F, T]) == pytest.approx(13 / 48)
    _, const = risk_coverage([5.0] * 5, [T, F, F, T, F])     # a constant signal: the error rate everywhere
    np.testing.assert_allclose(const, [0.4] * 5)


def test_accuracy_at_coverage():
    scores = np.arange(1, 11) / 10
    wrong = [F, F, T, F, T, T, F, T, T, T]
    assert accuracy_at_coverage(scores, wrong, 0.3) == pytest.approx(2 / 3)   # 3 questions, not 4 (0.3*10 float)
    assert accuracy_at_coverage(scores, wrong, 0.5) == pytest.approx(0.6)
    assert accuracy_at_coverage(scores, wrong, 0.8) == pytest.approx(0.5)
    assert accuracy_at_coverage(scores, wrong, 1.0) == pytest.approx(0.4)
    assert accuracy_at_coverage(scores, wrong, 0.25) == pytest.approx(2 / 3)  # ceil(2.5) = 3
    assert accuracy_at_coverage(scores, wrong, 0.01) == 1.0                  # at least one question
    assert accuracy_at_coverage([], [], 0.5) is None
    with pytest.raises(ValueError):
        accuracy_at_coverage(scores, wrong, 0.0)


def test_prr_oracle_random_reverse_and_hand_value():
    wrong = [F, F, T, T]
    assert prr([0.1, 0.2, 0.9, 0.8], wrong) == pytest.approx(1.0)
    assert prr([0.7] * 4, wrong) == pytest.approx(0.0)
    assert prr([0.1, 0.2], [T, F]) == pytest.approx(-1.0)      # reverse oracle, n = 2
    # reverse oracle n=4, one error: AURC 25/48, random 12/48, oracle 3/48 -> (12-25)/(12-3)
    assert prr([0.1, 0.2, 0.3, 0.4], [T, F, F, F]) == pytest.approx(-13 / 9)
    # AURC 1/3, random 1/2, oracle (0+0+1/3+1/2)/4 = 5/24 -> (1/6)/(7/24) = 4/7
    assert prr([0.1, 0.2, 0.3, 0.4], [F, T, F, T]) == pytest.approx(4 / 7)
    assert prr([0.1, 0.2], [T, T]) is None


def test_bootstrap_ci_reproducible_and_contains_estimate():
    values = np.random.default_rng(1).normal(size=50)
    a = bootstrap_ci(values, np.mean, n_boot=300, seed=7)
    assert a == bootstrap_ci(values, np.mean, n_boot=300, seed=7)
    assert a != bootstrap_ci(values, np.mean, n_boot=300, seed=8)
    assert a[0] < float(np.mean(values)) < a[1]
    assert bootstrap_ci([2.0] * 10, np.mean, n_boot=50) == (2.0, 2.0)
    lo, hi = bootstrap_ci([1.0, 2.0], lambda v: None, n_boot=20)
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        bootstrap_ci([], np.mean)


def records() -> list[QuestionRecord]:
    """Six questions, N = 4 samples, clusterers 'jaccard' and 'exact'."""
    def rec(i, a, b, label, judgement, signals):
        return QuestionRecord(id=f"q{i}", n_clusters={"jaccard": a, "exact": b},
                              clusters={"jaccard": [0] * 4, "exact": [0] * 4}, signals=signals,
                              label=label, judgement=judgement)
    return [
        rec(1, 1, 1, T, "correct", {"se": 0.0, "ent": 0.2, "len": 3.0}),
        rec(2, 1, 2, F, "incorrect", {"se": 0.0, "ent": 0.9, "len": None}),
        rec(3, 2, 1, T, "correct", {"se": 0.5, "ent": 0.1, "len": 5.0}),
        rec(4, 3, 3, F, "incorrect", {"se": 1.0, "ent": 0.8, "len": 7.0}),
        rec(5, 1, 2, None, "ambiguous", {"se": 0.0, "ent": 0.5, "len": 1.0}),
        rec(6, 4, 4, None, None, {"se": 0.0, "ent": None, "len": 2.0}),
    ]


def test_summarize_hand_values():
    out = summarize(records(), ["jaccard", "exact"], n_boot=200, seed=0)
    assert out["scr"] == {"jaccard": 0.5, "exact": pytest.approx(1 / 3)}
    assert out["n_single_cluster"] == {"jaccard": 3, "exact": 2}
    assert out["mean_clusters"]["jaccard"] == 2.0
    assert out["alignment_tax_index"]["jaccard"] == pytest.approx(0.5)          # mean(1 - d/4)
    assert out["alignment_tax_index"]["exact"] == pytest.approx(2.75 / 6)
    # Clopper-Pearson of 3/6 and 2/4 (statsmodels' beta method, checked against scipy's beta quantiles)
    from scipy.stats import beta
    assert out["scr_ci"]["jaccard"] == pytest.approx([beta.ppf(0.025, 3, 4), beta.ppf(0.975, 4, 3)])
    assert out["accuracy_ci"] == pytest.approx([beta.ppf(0.025, 2, 3), beta.ppf(0.975, 3, 2)])
    assert out["scr_ci_method"] == out["accuracy_ci_method"] == "Clopper-Pearson exact"
    assert out["auroc_ci_method"] == "percentile bootstrap (200 resamples of the questions, seed 0)"
    assert (out["accuracy"], out["n_labelled"], out["n_ambiguous"], out["n_unlabelled"]) == (0.5, 4, 1, 2)
    assert (out["n_correct"], out["n_incorrect"]) == (2, 2)
    # se over labelled: incorrect {0, 1} vs correct {0, 0.5} -> (0.5 + 0 + 1 + 1) / 4
    assert out["auroc"]["se"] == pytest.approx(0.625)
    assert out["auroc"]["ent"] == 1.0 and out["auroc_n"]["ent"] == 4
    assert out["auroc"]["len"] == 1.0 and out["auroc_n"]["len"] == 3          # q2 has no length
    assert out["accuracy_at_coverage"]["ent"] == {"0.3": 1.0, "0.5": 1.0, "0.8": 0.5}  # k = 2, 2, ceil(3.2)
    assert out["prr"]["ent"] == pytest.approx(1.0)
    assert out["auroc_ci"]["se"] is not None


def test_summarize_single_cluster_auroc():
    out = summarize(records(), ["jaccard", "exact"], n_boot=0, seed=0)
    # jaccard single-cluster labelled: q1 (correct) and q2 (incorrect); se is 0.0 on both
    assert out["auroc_single_cluster_n"]["jaccard"] == {"n": 2, "n_incorrect": 1}
    assert out["auroc_single_cluster"]["jaccard"]["se"] == 0.5
    assert out["single_cluster_constant"]["jaccard"] == ["se"]
    assert out["auroc_single_cluster"]["jaccard"]["ent"] == 1.0
    assert out["auroc_single_cluster"]["jaccard"]["len"] is None               # only q1 has a length
    # exact single-cluster labelled: q1, q3, both correct -> no incorrect class
    assert out["auroc_single_cluster_n"]["exact"] == {"n": 2, "n_incorrect": 0}
    assert set(out["auroc_single_cluster"]["exact"].values()) == {None}
    assert out["auroc_ci"]["se"] is None and out["auroc_ci_method"] == NO_INTERVAL   # n_boot = 0: no bootstrap
    assert ci_label([out["auroc_ci_method"]]) == "no interval: bootstrap=0"      # and no table claims a CI
    assert out["scr_ci"]["jaccard"] is not None                                  # the exact interval needs none


def test_summarize_bad_input():
    with pytest.raises(UsageError, match="nli"):
        summarize(records(), ["nli"], n_boot=0, seed=0)
    with pytest.raises(UsageError):
        summarize([], ["jaccard"], n_boot=0, seed=0)
    unlabelled = [QuestionRecord("q", {"exact": 1}, {"exact": [0, 0]}, {"se": 0.0}, None, None)]
    out = summarize(unlabelled, ["exact"], n_boot=10, seed=0)
    assert out["accuracy"] is None and out["auroc"]["se"] is None and out["auroc_n"]["se"] == 0
