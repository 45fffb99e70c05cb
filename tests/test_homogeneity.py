"""Continuous homogeneity measures (measure/scoring/homogeneity.py) against hand computations, through
`measure score` into questions.jsonl / report.json / report.md, and their paired tests in `measure compare`
(measure/analysis/measure_tests.py) against scipy / statsmodels computed independently here."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from measure.cli import main
from measure.scoring.homogeneity import (ead, mean_pairwise_cosine, pairwise_agreement, question_homogeneity,
                                         summarize_homogeneity, vendi_score)

# float64 sums of a handful of terms: a few ulps of the result at most
TIGHT = 1e-12


# ---------------------------------------------------------------- the estimators, by hand

@pytest.mark.parametrize("ids,expected", [([0, 0, 0, 1, 1], (3 * 2 + 2 * 1) / (5 * 4)), ([4, 4, 4], 1.0),
                                          ([0, 1, 2, 3], 0.0), ([0, 1], 0.0), ([7, 7], 1.0)])
def test_pairwise_agreement_by_hand(ids, expected):
    assert pairwise_agreement(ids) == pytest.approx(expected, abs=TIGHT)


def test_pairwise_agreement_is_the_share_of_agreeing_pairs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=12).tolist()
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12)]
    assert pairwise_agreement(ids) == pytest.approx(sum(ids[i] == ids[j] for i, j in pairs) / len(pairs), abs=TIGHT)


def test_one_sample_is_refused_by_the_estimators_and_reported_as_not_computable():
    with pytest.raises(ValueError):
        pairwise_agreement([0])
    values, why = question_homogeneity(["only"], {"exact": [0]}, None, ["agreement", "ead_repetition"])
    assert values == {"agreement@exact": None, "ead_repetition": None}
    assert why["agreement@exact"] == "needs >= 2 samples, got 1"


def test_cosine_and_vendi_by_hand():
    e1, e2 = [1.0, 0.0], [0.0, 3.0]                   # norms differ: rows are normalized first
    assert mean_pairwise_cosine([e1, e1, e2]) == pytest.approx(1 / 3, abs=TIGHT)
    assert vendi_score([e1, e1, e1]) == pytest.approx(1.0, abs=1e-9)    # one effective sample
    assert vendi_score(np.eye(4)) == pytest.approx(4.0, abs=1e-9)       # four orthogonal samples
    # two unit vectors at cosine c: K/2 has eigenvalues (1 +- c)/2, Vendi = exp(entropy of them)
    c = 0.6
    lam = np.array([(1 + c) / 2, (1 - c) / 2])
    assert vendi_score([[1.0, 0.0], [c, math.sqrt(1 - c * c)]]) == pytest.approx(math.exp(-(lam * np.log(lam)).sum()),
                                                                                abs=1e-9)


def test_ead_by_hand():
    v = 10
    # "a b" twice: 1-grams a b a b (C=4, 2 distinct), 2-grams (a b) twice (C=2, 1 distinct), no 3- or 4-grams
    e1 = 2 / (v * (1 - ((v - 1) / v) ** 4))
    e2 = 1 / (v * (1 - ((v - 1) / v) ** 2))
    assert ead(["a b", "a b"], vocab_size=v) == pytest.approx((e1 + e2 + 0 + 0) / 4, abs=TIGHT)
    # periods and newlines are deleted before splitting (Karouzos et al.'s tokenization); case is kept
    assert ead(["a. b", "a b\n"], vocab_size=v) == ead(["a b", "a b"], vocab_size=v)
    assert ead(["A b", "a b"], vocab_size=v) > ead(["a b", "a b"], vocab_size=v)
    # clipped at 1: all-distinct n-grams in a vocabulary barely larger than them
    assert ead(["a b c d e"], orders=(1,), vocab_size=5) == 1.0


def test_summary_without_bootstrap_claims_no_interval():
    per_q = [{"agreement@exact": 1.0, "inverse_vendi": 0.5}, {"agreement@exact": 0.0, "inverse_vendi": 0.25}]
    s = summarize_homogeneity(per_q, {}, n_boot=0, seed=0)
    assert s["ci_method"] is None and s["measures"]["agreement@exact"]["ci"] is None
    assert s["measures"]["agreement@exact"]["mean"] == 0.5
    assert s["published_scales"]["vendi"] == pytest.approx((2 + 4) / 2)
    s = summarize_homogeneity(per_q, {}, n_boot=50, seed=0)
    assert s["ci_method"].startswith("percentile bootstrap (50")


# ---------------------------------------------------------------- through `measure score` and `measure compare`

def _write_samples(path: Path, per_question: list[list[str]]) -> None:
    rows = [{"id": f"q{i}", "question": f"Question {i}?", "samples": s} for i, s in enumerate(per_question)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _score(tmp_path: Path, name: str, per_question, *extra) -> Path:
    _write_samples(tmp_path / f"{name}.jsonl", per_question)
    out = tmp_path / name
    main(["score", f"samples={tmp_path / f'{name}.jsonl'}", f"out={out}", "clusterers=[exact]", "bootstrap=200",
          *extra])
    return out


DIVERSE = [["paris", "rome", "paris", "madrid"], ["blue sky", "red", "green", "blue sky"],
           ["four", "4", "four legs", "three"], ["x", "y", "z", "x"], ["one", "two", "three", "four"],
           ["cat", "dog", "cat", "bird"], ["a b", "b c", "c d", "a b"], ["yes", "no", "maybe", "yes"]]
COLLAPSED = [[s[0]] * 4 for s in DIVERSE[:6]] + [s for s in DIVERSE[6:]]   # six questions collapse to one answer


def test_score_writes_the_measures_per_question_and_summarized(tmp_path):
    out = _score(tmp_path, "run", DIVERSE, "homogeneity=[agreement,ead_repetition]")
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    for row, texts in zip(rows, DIVERSE):
        assert row["homogeneity"]["agreement@exact"] == pytest.approx(pairwise_agreement(row["clusters"]["exact"]), abs=TIGHT)
        assert row["homogeneity"]["ead_repetition"] == pytest.approx(1 - ead(texts), abs=TIGHT)
        assert set(row["homogeneity"]) == {"agreement@exact", "ead_repetition"}
    report = json.loads((out / "report.json").read_text())
    h = report["homogeneity"]
    assert h["convention"] == "higher = more homogeneous"
    assert h["measures"]["agreement@exact"]["mean"] == pytest.approx(
        np.mean([r["homogeneity"]["agreement@exact"] for r in rows]), abs=TIGHT)
    assert h["measures"]["agreement@exact"]["n"] == len(DIVERSE)
    lo, hi = h["measures"]["agreement@exact"]["ci"]
    assert lo <= h["measures"]["agreement@exact"]["mean"] <= hi
    md = (out / "report.md").read_text()
    assert "## Continuous homogeneity per question (higher = more homogeneous)" in md
    assert "| agreement@exact | 8 |" in md


def test_embedding_measures_equal_an_independent_computation(tmp_path):
    from measure.scoring.cluster import load_embedder
    out = _score(tmp_path, "run", DIVERSE[:3], "homogeneity=[mean_cosine,inverse_vendi]")
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    # The embeddings are the shared input, encoded as the pipeline encodes them (the run's embedder, every
    # distinct text of the run in one call, first-appearance order), so in this process they are the same
    # float32 numbers bit for bit; an encoding in other batches or thread counts would differ by float32
    # round-off through 6 layers, a bound far looser than what is checked here. What is independent is
    # everything after: cosines and the eigen-entropy, recomputed with numpy in float64.
    every = list(dict.fromkeys(t for texts in DIVERSE[:3] for t in texts))
    vectors = dict(zip(every, load_embedder().encode(every, convert_to_numpy=True)))
    for row, texts in zip(rows, DIVERSE[:3]):
        e = np.array([vectors[t] for t in texts], dtype=np.float64)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        k = e @ e.T
        cos = k[np.triu_indices(len(texts), 1)].mean()
        lam = np.linalg.eigvalsh(k / len(texts))
        lam = lam[lam > 0]
        # float64 sums of a few terms: ulps; two LAPACK symmetric eigen-solvers agree to ~1e-15 per eigenvalue,
        # and an eigenvalue near 0 adds at most |l ln l| ~ 1e-13 to the entropy
        assert row["homogeneity"]["mean_cosine"] == pytest.approx(cos, abs=TIGHT)
        assert row["homogeneity"]["inverse_vendi"] == pytest.approx(math.exp((lam * np.log(lam)).sum()), abs=1e-9)


def test_bad_measure_name_is_a_usage_error(tmp_path, capsys):
    _write_samples(tmp_path / "s.jsonl", DIVERSE)
    with pytest.raises(SystemExit) as e:
        main(["score", f"samples={tmp_path / 's.jsonl'}", f"out={tmp_path / 'o'}", "homogeneity=[agrement]"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "homogeneity: unknown measure 'agrement'" in err and "ead_repetition" in err
    assert not (tmp_path / "o").exists()


def test_compare_tests_the_measures_paired_and_holm_adjusts_them_with_the_scr_tests(tmp_path):
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests
    a = _score(tmp_path, "a", DIVERSE, "homogeneity=[agreement,ead_repetition]")
    b = _score(tmp_path, "b", COLLAPSED, "homogeneity=[agreement,ead_repetition]")
    main(["compare", f"runs=[{a},{b}]", "labels=[before,after]", f"out={tmp_path / 'cmp'}"])
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = {r["measure"]: r for r in cmp["measure_transitions"]}
    assert set(rows) == {"agreement@exact", "ead_repetition"}
    qa = [json.loads(x)["homogeneity"] for x in (a / "questions.jsonl").read_text().splitlines()]
    qb = [json.loads(x)["homogeneity"] for x in (b / "questions.jsonl").read_text().splitlines()]
    for key, r in rows.items():
        d = np.array([y[key] - x[key] for x, y in zip(qa, qb)])
        nz = d[d != 0]
        assert r["n"] == len(DIVERSE) and r["wilcoxon_n_nonzero"] == nz.size
        assert r["mean_diff"] == pytest.approx(d.mean(), abs=TIGHT) and r["mean_diff"] > 0
        assert r["wilcoxon_p"] == pytest.approx(wilcoxon(nz, method="exact").pvalue, rel=1e-12)
        lo, hi = r["mean_diff_ci"]
        assert lo <= r["mean_diff"] <= hi and r["mean_diff_ci_method"].startswith("paired percentile bootstrap")
    # one Holm family: McNemar + count Wilcoxon per clusterer, plus one Wilcoxon per measure
    t = cmp["transitions"][0]
    raw = [t["mcnemar_p"], t["wilcoxon_p"], rows["agreement@exact"]["wilcoxon_p"], rows["ead_repetition"]["wilcoxon_p"]]
    adjusted = multipletests(raw, method="holm")[1]
    assert cmp["holm"]["family_size"] == 4
    assert [t["mcnemar_p_holm"], t["wilcoxon_p_holm"], rows["agreement@exact"]["wilcoxon_p_holm"],
            rows["ead_repetition"]["wilcoxon_p_holm"]] == pytest.approx(list(adjusted), rel=1e-12)
    # six of eight questions collapse: exact Wilcoxon on six positive differences gives 2/64 before Holm
    text = cmp["verdict"]["measures_text"]
    assert ("agreement@exact rose" in text) == (rows["agreement@exact"]["wilcoxon_p_holm"] < 0.05)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert cmp["verdict"]["measures_text"] in md and "Continuous-measure rule" in md
    assert "## Continuous homogeneity measures (higher = more homogeneous)" in md


def test_compare_of_runs_without_measures_says_so(tmp_path):
    a = _score(tmp_path, "a", DIVERSE, "homogeneity=[]")
    b = _score(tmp_path, "b", COLLAPSED, "homogeneity=[]")
    main(["compare", f"runs=[{a},{b}]", f"out={tmp_path / 'cmp'}"])
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert cmp["measure_transitions"] == [] and cmp["holm"]["family_size"] == 2
    assert cmp["verdict"]["measures_text"].startswith("Continuous measures: none recorded")
