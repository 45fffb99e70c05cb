"""Our signals and AUROC on the Alignment Tax paper's own released outputs (../shared/data/ucbd): Qwen3-14B
greedy answers to TruthfulQA with per-token entropies and the paper's labels. Recomputing the paper's
entropy-vs-correctness table from the raw per-token entropies must give the numbers of its report."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from measure.scoring.metrics import auroc
from measure.records.records import Generation, Question, QuestionSamples
from measure.scoring.signals import compute_signals


@pytest.fixture(scope="module")
def paper(shared_data):
    rows = [json.loads(line) for line in (shared_data / "ucbd" / "v1a_fluency.jsonl").read_text().splitlines()]
    report = (shared_data / "ucbd" / "v1a_report.md").read_text()
    return rows, report


def reported_auc(report: str, metric: str) -> float:
    line = next(l for l in report.splitlines() if l.startswith(f"| {metric} |"))
    return float(line.split("|")[4])


def test_label_counts_match_the_paper_report(paper):
    rows, report = paper
    counts = {k: sum(r["label"] == k for r in rows) for k in ("correct", "incorrect", "ambiguous", "no_match")}
    assert counts == {"correct": 205, "incorrect": 196, "ambiguous": 288, "no_match": 101}
    assert "Binary subset: 401 (correct=205, incorrect=196)" in report


def test_greedy_entropy_auroc_reproduces_the_paper_table(paper):
    """The paper's AUC for mean entropy is 0.5196 on its 401 binary questions ('high=wrong'); our
    greedy_entropy_mean from the raw per-token entropies, with AUROC's positive class = incorrect, agrees.
    Ambiguous and no-match answers are left out, as the paper does, never folded into 'correct'."""
    rows, report = paper
    binary = [r for r in rows if r["label"] in ("correct", "incorrect")]
    values = []
    for r in binary:
        qs = QuestionSamples(Question(str(r["question_idx"]), r["question"]),
                             Generation(r["generated_answer"], token_entropies=tuple(r["entropies"])),
                             (Generation(r["generated_answer"]),))
        signals, _ = compute_signals(qs, {}, ["greedy_entropy_mean", "greedy_entropy_std"])
        values.append(signals)
    incorrect = [r["label"] == "incorrect" for r in binary]
    mean = [v["greedy_entropy_mean"] for v in values]
    # our mean over the released per-token entropies equals the paper's own summary column
    assert np.allclose(mean, [r["mean_entropy"] for r in binary], atol=1e-3)
    assert auroc(mean, incorrect) == pytest.approx(reported_auc(report, "Mean Entropy"), abs=5e-4)
    # std: the paper rounds its per-token entropies to 4 digits; our population std matches its column
    std = [v["greedy_entropy_std"] for v in values]
    assert np.allclose(std, [r["std_entropy"] for r in binary], atol=2e-3)
    assert auroc(std, incorrect) == pytest.approx(reported_auc(report, "Std Entropy"), abs=2e-3)
    assert re.search(r"\| Mean Entropy \| [\d.]+ \| [\d.]+ \| 0\.5196", report)
