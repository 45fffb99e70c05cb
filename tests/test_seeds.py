"""`python -m train.seeds`: one recipe's chain under several seeds, and the summary of what every seed shows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.seeds import main

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
FAST = ["measure.n_samples=3", "measure.bootstrap=20", "measure.max_new_tokens=6"]


def test_two_seeds_run_and_the_summary_is_recomputable(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "tiny"
    main(["recipe=recipes/tiny.yaml", "seeds=[3,4]", f"output_dir={out}", *FAST])
    root = Path(f"{out}-seeds")
    summary = json.loads((root / "seeds.json").read_text())
    assert summary["seeds"] == [3, 4]
    compares = {s: json.loads((root / f"seed{s}" / "compare" / "compare.json").read_text()) for s in (3, 4)}
    stages = {s: json.loads((root / f"seed{s}" / "base" / "stage.json").read_text()) for s in (3, 4)}
    assert [stages[s]["recipe"]["seed"] for s in (3, 4)] == [3, 4]   # each chain really ran under its seed
    reports = {s: json.loads((root / f"seed{s}" / "base" / "measure" / "jsonl" / "report.json").read_text()) for s in (3, 4)}
    assert [reports[s]["settings"]["seed"] for s in (3, 4)] == [3, 4]  # and sampled with it
    bench = summary["benchmarks"]["jsonl"]
    for stage in ("base", "sft", "dpo"):
        for c in ("exact", "numeric", "jaccard"):
            values = [compares[s]["per_stage"][stage]["clusterers"][c]["scr"] for s in (3, 4)]
            assert bench["stages"][stage]["scr"][c] == {"min": min(values), "max": max(values), "values": values}
        acc = [compares[s]["per_stage"][stage]["accuracy"] for s in (3, 4)]
        assert bench["stages"][stage]["accuracy"]["values"] == acc
    for t in bench["transitions"]:
        rows = [next(r for r in compares[s]["transitions"] if (r["from"], r["to"], r["clusterer"])
                     == (t["from"], t["to"], t["clusterer"])) for s in (3, 4)]
        assert t["rise_significant"] == sum(r["mcnemar_p_holm"] < 0.05 and r["scr_diff"] > 0 for r in rows)
    assert sum(bench["verdicts"].values()) == 2
    md = (root / "seeds.md").read_text()
    assert md.startswith("# 2 seeds: 3, 4") and "| base |" in md and "Verdict" in md
    assert "seeds.md" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["seeds=[1]"], "at least two distinct seeds"),
    (["seeds=[1,1]"], "at least two distinct seeds"),
    (["seeds=[0,-1]"], "seeds.1"),
    (["seeds=[0,1]", "seed=5"], "seed=: set by train.seeds"),
])
def test_bad_seeds_exit_2_before_anything_runs(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as e:
        main(["recipe=recipes/tiny.yaml", f"output_dir={tmp_path / 'x'}", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_world_buckets_hand_counts(tmp_path):
    """Per-bucket SCR and accuracy of a toy-world chain: most-seen facts first, reasoning last."""
    from measure.common.io import write_jsonl
    from train.seeds import world_buckets
    write_jsonl(tmp_path / "world" / "eval.jsonl", [
        {"id": "a", "kind": "recall", "bucket": "once", "corpus_count": 1},
        {"id": "b", "kind": "recall", "bucket": "many", "corpus_count": 8},
        {"id": "c", "kind": "recall", "bucket": "many", "corpus_count": 8},
        {"id": "d", "kind": "reasoning"}])
    write_jsonl(tmp_path / "sft" / "measure" / "jsonl" / "questions.jsonl", [
        {"id": "a", "n_clusters": {"exact": 1}, "judgement": "correct"},
        {"id": "b", "n_clusters": {"exact": 1}, "judgement": "incorrect"},
        {"id": "c", "n_clusters": {"exact": 3}, "judgement": "correct"},
        {"id": "d", "n_clusters": {"exact": 2}, "judgement": "ambiguous"}])
    table = world_buckets(tmp_path, ["sft"], "jsonl", "exact")["sft"]
    assert list(table) == ["many", "once", "reasoning"]
    assert table["many"] == {"n": 2, "scr": 0.5, "accuracy": 0.5}
    assert table["once"] == {"n": 1, "scr": 1.0, "accuracy": 1.0}
    assert table["reasoning"] == {"n": 1, "scr": 0.0, "accuracy": 0.0}   # ambiguous is not correct
    assert world_buckets(tmp_path / "none", ["sft"], "jsonl", "exact") is None
