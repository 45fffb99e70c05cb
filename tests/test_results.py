"""measure.records.results: the typed records' readers and writers at the file edges.

tests/data/results/ holds the toy demo's DPO report.json + report.md, its compare.json and its cascade.json,
written by the code before the typed records existed: reading and writing them back must give the same bytes.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from measure.scoring.report import render_markdown
from measure.records.results import (cascade_from_json, cascade_to_json, comparison_from_json, comparison_to_json,
                             read_report, report_from_json, report_to_json, settings_from_json)

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
    assert set(result.baselines) == set(result.signals) and "0.5" in result.cascade["at_coverage"]
