"""Comparisons of pairs of runs (measure.analysis.compare with `pairs`, runs.json `vs`): a chain whose stages
branch from one parent is tested stage against parent, one Holm family over every pair, a verdict per pair;
a chain without branches keeps its sequence of consecutive stages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from measure.analysis.compare import compare_listed, compare_runs
from measure.analysis.paired_stats import PAIRS_VERDICT_RULE, paired_tests
from measure.common.errors import UsageError
from test_compare import write_stage
from train.layout import compare_chain, parent_runs, write_run_list

# (stage, parent, questions whose samples all agree): sft changes nothing, modal homogenizes 16 of 20,
# divpo 4 of 20 (McNemar p = 2 * 0.5**4 = 0.125 before Holm: not significant), random none
BRANCHES = (("base", None, 0), ("sft", "base", 0), ("modal", "sft", 16), ("divpo", "sft", 4), ("random", "sft", 0))


def _chain(root: Path, spec=BRANCHES) -> Path:
    chain = root / "checkpoints" / "control"
    for index, (name, parent, n_single) in enumerate(spec):
        (chain / name).mkdir(parents=True)
        (chain / name / "stage.json").write_text(json.dumps({"stage": name, "chain_index": index, "parent": parent}))
        write_stage(chain / name / "measure" / "toy", n_single)
    return chain


def test_branches_are_compared_each_against_its_parent(tmp_path):
    chain = _chain(tmp_path)
    res = compare_chain(chain, None, None, overwrite=False, sensitivity_clusterers=[])
    listed = json.loads((chain / "runs.json").read_text())["runs"]["toy"]
    assert [r.get("vs") for r in listed] == [None, "base", "sft", "sft", "sft"]
    pairs = [("base", "sft"), ("sft", "modal"), ("sft", "divpo"), ("sft", "random")]
    assert list(dict.fromkeys((t.from_, t.to) for t in res.transitions)) == pairs   # no modal -> divpo
    assert res.settings["design"] == "pairs" and res.settings["pairs"] == [list(p) for p in pairs]
    assert res.holm.family_size == 4 * 2 * 2                          # 4 pairs x 2 clusterers x 2 tests
    modal = next(t for t in res.transitions if t.to == "modal" and t.clusterer == "exact")
    # the same numbers as a test of those two runs alone (an independent computation), Holm over all 16
    alone = paired_tests([4] * 20, [1] * 16 + [4] * 4)
    assert modal.mcnemar_p == pytest.approx(alone["mcnemar_p"]) == pytest.approx(2 * 0.5 ** 16)
    assert (modal.b_single_to_multi, modal.c_multi_to_single) == (0, 16)
    assert modal.mcnemar_p_holm == pytest.approx(16 * modal.mcnemar_p)   # the smallest p of the family
    divpo = next(t for t in res.transitions if t.to == "divpo" and t.clusterer == "exact")
    assert divpo.mcnemar_p == pytest.approx(0.125) and divpo.mcnemar_p_holm >= 0.125
    text = res.verdict.text
    assert "sft -> modal: homogenization, SCR rises significantly under 2 of 2 clusterers (exact, jaccard)" in text
    assert "sft -> random: no significant homogenization" in text and "sft -> divpo: no significant" in text
    assert "base -> sft: no significant homogenization" in text
    assert res.verdict.rule == PAIRS_VERDICT_RULE and res.verdict.transition == "sft -> modal"
    assert [p.majority for p in res.verdict.per_transition] == [False, True, False, False]
    md = (chain / "compare" / "compare.md").read_text()
    assert "compared in pairs: base -> sft, sft -> modal, sft -> divpo, sft -> random" in md
    assert "Paired tests within each listed pair of runs" in md and PAIRS_VERDICT_RULE in md
    saved = json.loads((chain / "compare" / "compare.json").read_text())
    assert saved["verdict"]["rule"] == PAIRS_VERDICT_RULE and saved["settings"]["design"] == "pairs"


def test_a_chain_without_branches_stays_a_sequence(tmp_path):
    chain = _chain(tmp_path, (("base", None, 0), ("sft", "base", 12), ("dpo", "sft", 16)))
    res = compare_chain(chain, None, None, overwrite=False, sensitivity_clusterers=[])
    assert all("vs" not in r for r in json.loads((chain / "runs.json").read_text())["runs"]["toy"])
    assert "design" not in res.settings and res.verdict.text.startswith("Homogenization first appears at base -> sft")


def test_an_unmeasured_parent_is_skipped_to_the_nearest_measured_ancestor():
    order = ["base", "sft", "a", "b"]
    parents = {"base": None, "sft": "base", "a": "sft", "b": "sft"}
    assert parent_runs(order, parents, ["base", "a", "b"]) == {"a": "base", "b": "base"}
    assert parent_runs(order, {**parents, "b": "a"}, order) is None      # every stage from the one before


def test_bad_pairs_are_named(tmp_path):
    chain = _chain(tmp_path)
    path = write_run_list(chain)
    listed = json.loads(path.read_text())
    listed["runs"]["toy"][2]["vs"] = "sfft"
    path.write_text(json.dumps(listed))
    with pytest.raises(UsageError, match=r"run 'modal' of 'toy' is compared with vs='sfft'.*valid choices: base, sft"):
        compare_listed(chain, None, tmp_path / "o", overwrite=False)
    runs = [chain / s / "measure" / "toy" for s in ("base", "sft")]
    with pytest.raises(UsageError, match=r"pairs: \['base', 'base'\] is not two different runs"):
        compare_runs(runs, ["base", "sft"], tmp_path / "o", pairs=[("base", "base")])
    with pytest.raises(UsageError, match="listed twice"):
        compare_runs(runs, ["base", "sft"], tmp_path / "o", pairs=[("base", "sft"), ("base", "sft")])
    assert not (tmp_path / "o").exists()
