"""measure.scoring.report: every output file, the report.json contract, valid PNGs, and no partial report."""
from __future__ import annotations

import json

import pytest
from matplotlib.image import imread

import measure.scoring.report as report_mod
from measure.common.errors import UsageError
from measure.records.records import QuestionRecord, read_question_records
from measure.scoring.report import write_report
from measure.records.results import read_report, report_to_json

F, T = False, True
LABELS = ["jaccard", "exact"]
SETTINGS = {"n_samples": 4, "temperature": 1.0, "max_new_tokens": 40, "ambiguous": "exclude",
            "clusterers": {"jaccard": {"name": "jaccard", "threshold": 0.4}, "exact": {"name": "exact"}},
            "model": "tiny-local"}
PROVENANCE = {"seed": 0, "git_commit": "abc123"}
SKIPPED = {"greedy_nll": "no token_logprobs in the samples file"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rec(i, a, b, label, judgement, signals):
    return QuestionRecord(id=f"q{i}", n_clusters={"jaccard": a, "exact": b},
                          clusters={"jaccard": list(range(a)) + [0] * (4 - a), "exact": list(range(b)) + [0] * (4 - b)},
                          signals=signals, label=label, judgement=judgement)


def records() -> list[QuestionRecord]:
    return [
        rec(1, 1, 1, T, "correct", {"se": 0.0, "ent": 0.2, "greedy_nll": None}),
        rec(2, 1, 2, F, "incorrect", {"se": 0.0, "ent": 0.9, "greedy_nll": None}),
        rec(3, 2, 1, T, "correct", {"se": 0.5, "ent": 0.1, "greedy_nll": None}),
        rec(4, 3, 3, F, "incorrect", {"se": 1.0, "ent": float("inf"), "greedy_nll": None}),
        rec(5, 1, 2, None, "ambiguous", {"se": 0.0, "ent": 0.5, "greedy_nll": None}),
    ]


def write(out, recs=None, settings=SETTINGS, **kw):
    return write_report(out, recs or records(), settings, PROVENANCE, LABELS, SKIPPED, n_boot=100, seed=0, **kw)


def test_write_report_files_and_contract(tmp_path):
    returned = write(tmp_path)
    for name in ("questions.jsonl", "report.json", "report.md", "cluster_hist.png", "roc.png", "risk_coverage.png"):
        assert (tmp_path / name).is_file(), name
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep == report_to_json(returned) and read_report(tmp_path) == returned
    for key in ("n_questions", "n_samples", "settings", "scr", "scr_ci", "mean_clusters", "accuracy",
                "n_labelled", "n_ambiguous", "auroc", "auroc_single_cluster", "cohens_d", "prr", "aurc",
                "accuracy_at_coverage", "alignment_tax_index", "skipped_signals", "provenance"):
        assert key in rep, key
    assert (rep["n_questions"], rep["n_samples"]) == (5, 20)
    assert rep["scr"]["jaccard"] == 0.6 and rep["n_ambiguous"] == 1 and rep["n_labelled"] == 4
    assert rep["settings"] == SETTINGS and rep["provenance"] == PROVENANCE and rep["skipped_signals"] == SKIPPED
    assert rep["auroc_n"]["ent"] == 3                                 # the infinite value counts as missing
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no staging/temp leftovers


def test_questions_jsonl_rows(tmp_path):
    write(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2", "q3", "q4", "q5"]
    assert set(rows[0]) == {"id", "n_clusters", "clusters", "signals", "label", "judgement", "homogeneity"}
    assert rows[3]["signals"]["ent"] is None and rows[3]["n_clusters"] == {"jaccard": 3, "exact": 3}
    assert rows[4]["label"] is None and rows[4]["judgement"] == "ambiguous"
    assert read_question_records(tmp_path / "questions.jsonl")[1].clusters["exact"] == [0, 1, 0, 0]


def test_pngs_are_valid(tmp_path):
    write(tmp_path)
    for name in report_mod.PLOTS:
        path = tmp_path / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_report_md_tables(tmp_path):
    write(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "N=4, T=1.0, max_new_tokens=40" in md
    assert "jaccard (threshold=0.4)" in md
    assert "| jaccard (threshold=0.4) | 0.600 [" in md
    assert "| clusterer | SCR [95% CI, Clopper-Pearson exact] |" in md                  # every interval names its method
    assert "AUROC [95% CI, percentile bootstrap (100 resamples of the questions, seed 0)]" in md
    assert "(95% CI, Clopper-Pearson exact) over" in md                                  # accuracy
    assert "ambiguous judgements: 1 (policy: exclude)" in md
    assert "greedy_nll: no token_logprobs in the samples file" in md
    assert "| se | 4 | 0.625 [" in md                                  # signal table row
    assert "0.500 (constant)" in md                                   # se on jaccard's single-cluster subset
    assert "![roc.png](roc.png)" in md


def test_no_labels_skips_roc_with_a_note_and_removes_stale_plot(tmp_path):
    write(tmp_path)
    unlabelled = [QuestionRecord(r.id, r.n_clusters, r.clusters, r.signals, None, None) for r in records()]
    rep = write(tmp_path, unlabelled)
    assert rep.plots["roc.png"] and rep.plots["risk_coverage.png"]
    assert not (tmp_path / "roc.png").exists() and not (tmp_path / "risk_coverage.png").exists()
    assert "roc.png not drawn" in (tmp_path / "report.md").read_text()
    assert rep.accuracy is None and rep.n_unlabelled == 5


def test_failure_while_writing_report_json_leaves_none(tmp_path):
    with pytest.raises(TypeError):     # an unserializable setting fails inside json.dumps of report.json
        write(tmp_path, settings={**SETTINGS, "bad": object()})
    assert not (tmp_path / "report.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failure_mid_write_keeps_previous_outputs(tmp_path, monkeypatch):
    write(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("plotting failed")
    monkeypatch.setattr(report_mod, "_plot_risk_coverage", boom)
    with pytest.raises(RuntimeError):
        write(tmp_path, records()[:4])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_read_report_missing_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match="report.json"):
        read_report(tmp_path)


def test_extra_keys_are_recorded_but_cannot_replace_computed_ones(tmp_path):
    timing = {"seconds_per_question": {"greedy": 0.5, "jaccard": 0.01}}
    assert write(tmp_path, extra={"timing": timing}).timing == timing
    assert read_report(tmp_path).timing == timing
    with pytest.raises(ValueError, match="scr"):
        write(tmp_path / "other", extra={"scr": {}})
