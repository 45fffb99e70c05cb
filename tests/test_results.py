"""measure.records.results: the typed records' readers and writers at the file edges.

tests/data/results/ holds the toy demo's DPO report.json + report.md, its compare.json and its cascade.json,
written by the code before the typed records existed: reading and writing them back must give the same bytes.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from measure.scoring.report import render_markdown
from measure.records.results import read_report, report_from_json, report_to_json, settings_from_json
from measure.records.comparison import (ScrAtK, ScrAtThreshold, SensitivityByN, Transition, Verdict, VerdictRow,
                                        comparison_from_json, comparison_to_json)
from measure.records.cascade_result import CascadeCurve, CoveragePoint, cascade_from_json, cascade_to_json
from measure.common.jsonrecords import record_to_json

DATA = Path(__file__).parent / "data" / "results"


def dumped(obj) -> str:
    """What measure.common.io.write_json writes."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------- report.json

def test_baseline_report_round_trips_byte_identically():
    text = (DATA / "report.json").read_text()
    report = read_report(DATA)
    assert dumped(report_to_json(report)) == text
    assert render_markdown(report, report.clusterer_labels) == (DATA / "report.md").read_text()
    assert report.settings.n_samples == 10 and report.settings.temperature == 1.0
    assert report.settings.max_new_tokens == 24 and report.settings.judge_name == "short_qa"
    assert report.clusterer_labels == ["exact", "jaccard", "embedding"] == list(report.settings.clusterers)
    assert report.timing["seconds_per_question"]["greedy"] > 0 and report.extra == {}


def typed(settings) -> dict:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "recorded"}


def test_legacy_spellings_read_into_the_same_record():
    obj = json.loads((DATA / "report.json").read_text())
    st = obj["settings"]
    only_short = {**obj, "settings": {k: v for k, v in st.items() if k not in ("n_samples", "temperature")}}
    only_long = {**obj, "settings": {k: v for k, v in st.items() if k not in ("N", "T")}}
    a, b, full = (report_from_json(o) for o in (only_short, only_long, obj))
    assert typed(a.settings) == typed(b.settings) == typed(full.settings)
    assert dataclasses.replace(a, settings=full.settings) == dataclasses.replace(b, settings=full.settings) == full
    assert dumped(report_to_json(a)) == dumped(only_short)      # what a file holds is what is written back


def test_clusterer_list_reads_as_a_mapping_in_label_order():
    s = settings_from_json({"N": 4, "clusterers": [{"name": "exact"}, {"name": "jaccard", "threshold": 0.3}]},
                           ["exact", "jaccard@0.3"])
    assert s.clusterers == {"exact": {"name": "exact"}, "jaccard@0.3": {"name": "jaccard", "threshold": 0.3}}
    assert s.n_samples == 4 and s.temperature is None and s.get("N") == 4
    assert settings_from_json({"clusterers": [{"name": "exact"}]}, []).clusterers == {}


def test_report_missing_optional_blocks_are_not_invented():
    obj = json.loads((DATA / "report.json").read_text())
    bare = {k: v for k, v in obj.items() if k not in ("timing", "judgements")}
    report = report_from_json(bare)
    assert report.timing is None and report.judgements is None
    assert dumped(report_to_json(report)) == dumped(bare)
    more = {**{k: v for k, v in obj.items() if k != "provenance"}, "future_key": [1], "provenance": obj["provenance"]}
    assert report_from_json(more).extra == {"future_key": [1]} and report_to_json(report_from_json(more)) == more


# ---------------------------------------------------------------- compare.json and cascade.json

def test_baseline_comparison_round_trips_byte_identically():
    text = (DATA / "compare.json").read_text()
    result = comparison_from_json(json.loads(text))
    assert dumped(comparison_to_json(result)) == text
    first = result.per_stage[result.stages[0]]
    assert result.stages == ["base", "sft", "dpo"] and first.clusterers["exact"].scr_ci_method
    assert first.n_questions == result.n_questions and result.out_dir is None


def test_baseline_cascade_round_trips_byte_identically():
    text = (DATA / "cascade.json").read_text()
    result = cascade_from_json(json.loads(text), "somewhere")
    assert dumped(cascade_to_json(result)) == text and result.out_dir == "somewhere"
    assert set(result.baselines) == set(result.signals) and "0.5" in result.cascade.at_coverage


# ---------------------------------------------------------------- the inner records

def test_comparison_inner_records_are_typed_and_round_trip():
    obj = json.loads((DATA / "compare.json").read_text())
    result = comparison_from_json(obj)
    first = result.transitions[0]
    assert isinstance(first, Transition) and first.key == ("base", "sft", "exact") and first.mcnemar_p_holm < 0.05
    assert record_to_json(first) == obj["transitions"][0] and list(record_to_json(first))[:2] == ["from", "to"]
    assert isinstance(result.verdict, Verdict) and result.verdict.transition == "base -> sft"
    assert all(isinstance(r, VerdictRow) for r in result.verdict.per_transition)
    assert record_to_json(result.verdict) == obj["verdict"]
    by_n = result.sensitivity.n_samples["exact"]
    assert isinstance(by_n, SensitivityByN) and isinstance(by_n.stages["base"][0], ScrAtK) and by_n.stages["base"][0].k == 2
    assert isinstance(result.sensitivity.threshold["jaccard"].stages["sft"][0], ScrAtThreshold)
    assert record_to_json(result.sensitivity) == obj["sensitivity"]


def test_older_comparison_without_the_method_keys_reads_and_writes_back_the_same_bytes():
    # compare.json before scr_diff_ci_method / wilcoxon_method / wilcoxon_n_nonzero existed (commit 23d8ccf)
    obj = json.loads((DATA / "compare.json").read_text())
    gone = ("scr_diff_ci_method", "wilcoxon_method", "wilcoxon_n_nonzero")
    old = {**obj, "transitions": [{k: v for k, v in t.items() if k not in gone} for t in obj["transitions"]]}
    result = comparison_from_json(old)
    # (the fixture also predates min_detectable_rise: absent too, and not written back)
    assert result.transitions[0].wilcoxon_method is None
    assert result.transitions[0].absent == {*gone, "min_detectable_rise"}
    assert dumped(comparison_to_json(result)) == dumped(old)
    assert result.verdict == comparison_from_json(obj).verdict


def test_cascade_curves_are_typed_and_round_trip():
    obj = json.loads((DATA / "cascade.json").read_text())
    result = cascade_from_json(obj)
    assert isinstance(result.cascade, CascadeCurve) and isinstance(result.cascade.at_coverage["0.5"], CoveragePoint)
    assert result.cascade.at_coverage["0.5"] == next(p for p in result.cascade.curve if p.target == 0.5)
    assert result.cascade.aurc is None and result.cascade.absent == {"aurc", "prr", "auroc"}   # the baselines' only
    base = result.baselines["greedy_entropy_mean"]
    assert base.prr is not None and not base.absent
    assert record_to_json(result.cascade) == obj["cascade"] and "aurc" not in record_to_json(result.cascade)
    assert record_to_json(base) == obj["baselines"]["greedy_entropy_mean"]
    assert list(record_to_json(base)) == ["at_coverage", "curve", "aurc_grid", "aurc", "prr", "auroc"]


# ---------------------------------------------------------------- dpo_effect.json (train/dpo_effect.py)

EFFECT = {"name": "tiny", "stages": {
    "dpo": {"stage": "dpo", "parent": "sft",
            "margins": {"n_logged": 3, "first": {"step": 1, "rewards/margins": 0.0, "rewards/accuracies": 0.0,
                                                 "rewards/chosen": 0.0, "rewards/rejected": 0.0, "loss": 0.6931},
                        "last": {"step": 3, "rewards/margins": 0.0123, "rewards/accuracies": 1.0, "rewards/chosen": 0.01,
                                 "rewards/rejected": -0.0023, "loss": 0.687},
                        "quarter": 1, "early_mean_margin": 0.0, "late_mean_margin": 0.0123, "early_mean_accuracy": 0.0,
                        "late_mean_accuracy": 1.0, "moved": True},
            "weights": {"tensors": 10, "tensors_changed": 4, "max_abs": 0.001, "mean_abs": 1e-05,
                        "relative_frobenius": 0.0002, "relative_frobenius_changed": 0.0009,
                        "most_changed": [{"tensor": "layers.0.q_proj.weight", "relative_frobenius": 0.001}], "only_in_one": 0},
            "heldout": {"pairs": 7, "skipped": 1, "beta": 0.1, "max_length": 64,
                        "dataset": [{"path": "tests/data/dpo.jsonl", "sha256": "ab"}], "mean_abs_delta_logp": 0.5,
                        "mean_abs_delta_logp_per_token": 0.05, "mean_delta_logp_chosen": 0.2,
                        "mean_delta_logp_rejected": -0.1, "mean_margin": 0.03, "margin_accuracy": 0.71},
            "acted": True},
    "dpo2": {"stage": "dpo2", "parent": "dpo", "margins": {"n_logged": 0, "note": "no rewards/margins"},
             "weights": {"note": "no safetensors weights to compare in x"}, "acted": False},
    "dpo3": {"stage": "dpo3", "parent": "dpo", "margins": {"n_logged": 0, "note": "none"},
             "weights": {"note": "none"}, "heldout": {"pairs": 0, "skipped": 8, "note": "cut away"}, "acted": False}}}


def test_dpo_effect_records_round_trip_byte_identically(tmp_path):
    from train.dpo_effect import summary
    from train.effect_records import (DPOEffect, HeldoutEffect, MarginTrajectory, WeightDifference, effect_to_json,
                                      read_effect)
    (tmp_path / "dpo_effect.json").write_text(dumped(EFFECT))
    effect = read_effect(tmp_path)
    assert isinstance(effect, DPOEffect) and dumped(effect_to_json(effect)) == dumped(EFFECT)
    dpo, bare, cut = effect.stages["dpo"], effect.stages["dpo2"], effect.stages["dpo3"]
    assert isinstance(dpo.margins, MarginTrajectory) and dpo.margins.moved and dpo.margins.first["step"] == 1
    assert isinstance(dpo.weights, WeightDifference) and dpo.weights.most_changed[0].tensor.endswith("q_proj.weight")
    assert isinstance(dpo.heldout, HeldoutEffect) and dpo.heldout.pairs == 7 and dpo.acted
    assert bare.heldout is None and bare.weights.tensors is None and bare.margins.note == "no rewards/margins"
    assert cut.heldout.pairs == 0 and cut.heldout.beta is None
    lines = summary(effect).splitlines()
    assert "ACTED" in lines[0] and "held-out (7 pairs)" in lines[0] and "4/10 tensors changed" in lines[0]
    assert lines[1] == "[dpo effect] dpo2: did NOT act"
