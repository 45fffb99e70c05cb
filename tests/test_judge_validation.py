"""harness/judge_validation.py: leave-one-out items, the margin table, the short-answer probes, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness import judge_validation as jv
from measure.scoring import correctness
from measure.common.errors import UsageError
from measure.records.records import Question


def test_leave_one_out_never_judges_a_reference_against_itself():
    q = Question("q", "?", ("c1", "c2", "c3"), ("i1", "i2"))
    lone = Question("r", "?", ("only",), ("j1",))             # one reference per side: nothing to leave out
    items = jv.leave_one_out([q, lone])
    assert [(a, e) for _, a, e in items] == [("c1", "correct"), ("c2", "correct"), ("c3", "correct"),
                                             ("i1", "incorrect"), ("i2", "incorrect")]
    for judged, answer, _ in items:
        assert answer not in judged.answers and answer not in judged.incorrect_answers
    assert items[0][0].answers == ("c2", "c3") and items[0][0].incorrect_answers == ("i1", "i2")
    assert items[3][0].answers == ("c1", "c2", "c3") and items[3][0].incorrect_answers == ("i2",)


def test_margin_rows_by_hand():
    scores = [(0.9, 0.5), (0.6, 0.57), (0.4, 0.8), (0.7, 0.6)]    # gaps s_c - s_i: 0.4, 0.03, -0.4, 0.1
    expected = ["correct", "correct", "incorrect", "incorrect"]
    zero, five = jv.margin_rows(scores, expected, [0.0, 0.05])
    assert zero["ambiguous"] == 0 and zero["accuracy_all"] == 0.75 and zero["accuracy_decided"] == 0.75
    assert (zero["correct_refs_right"], zero["incorrect_refs_right"]) == (1.0, 0.5)
    assert five["ambiguous"] == 0.25 and five["accuracy_decided"] == pytest.approx(2 / 3) and five["accuracy_all"] == 0.5
    assert zero["band_accuracy"] is None and five["band_accuracy"] == 1.0   # no exact tie; the 0.03 gap was right


def test_truthfulqa_validation_with_a_fake_embedder(monkeypatch, tmp_path):
    class Fake:   # correct references point one way, incorrect ones the other
        def encode(self, texts, **kw):
            return np.array([[1.0, 0.0] if t.startswith("yes") else [0.0, 1.0] for t in texts])
    monkeypatch.setattr(correctness, "load_embedder", lambda model=None, device=None: Fake())
    csv = tmp_path / "TruthfulQA.csv"
    csv.write_text("Type,Category,Question,Best Answer,Best Incorrect Answer,Correct Answers,Incorrect Answers,Source\n"
                   "A,B,Q1?,yes a,no a,yes b; yes c,no b,s\nA,B,Q2?,yes d,no c,yes e,no d; no e,s\n")
    result = jv.validate_truthfulqa(csv, [0.0, 0.5], None, 0)
    assert result["n_questions"] == 2 and result["n_judged"] == 3 + 2 + 2 + 3
    assert [m["accuracy_all"] for m in result["margins"]] == [1.0, 1.0]        # gaps are +-1: never ambiguous


def test_short_qa_probes_and_judge():
    qs = [Question("a", "?", ("Barack Obama", "Obama")), Question("b", "?", ("Paris",)),
          Question("c", "?", ("paris",)), Question("d", "?", ("1945",))]
    probes, left_out = jv.short_qa_probes(qs, seed=0)
    assert [a for _, a, _ in probes["alias"]] == ["Barack Obama", "Obama"]
    assert probes["sentence"][1][1] == "The answer is Paris." and probes["variant"][1][1] == '"PARIS"!'
    assert all(q.answers[0] != other for q, other, _ in probes["other"])
    assert left_out + len(probes["other"]) == len(qs)
    assert "alias" not in jv.short_qa_probes(qs, seed=0, aliases=False)[0]
    judge = correctness.ShortQAJudge()
    got = judge.judge_many([q for q, _, _ in probes["alias"]], [a for _, a, _ in probes["alias"]])
    assert got == ["correct", "incorrect"]   # "Barack Obama" contains "obama"; "Obama" lacks "barack"


def test_options_are_checked():
    with pytest.raises(UsageError, match="margins"):
        jv.parse_options(["margins=[-1]"])
    with pytest.raises(UsageError, match="unknown key 'margin'"):
        jv.parse_options(["margin=0.1"])
    with pytest.raises(UsageError, match="limit"):
        jv.parse_options(["limit=0"])


def test_overlap_judge_gives_back_the_papers_labels(shared_data):
    """Our truthfulqa_overlap judge on the paper's released Qwen3-14B answers (ucbd/v1a_fluency.jsonl)
    gives every label the paper's code gave (its no_match = our None). The scores it stores (4 decimals)
    come out the same except on question 290, whose "Best Incorrect Answer" ("Mexico and Italy consume
    more tea ...") is missing from its "Incorrect Answers" cell ("... consumes ..."): the seed read the
    cell only, measure.data.benchmarks adds the best answers; the label there is ambiguous either way."""
    result = jv.validate_overlap(shared_data)
    assert result["n"] == 790 and result["answers_at_800_chars"] == 0
    assert result["file_labels"] == {"correct": 205, "incorrect": 196, "ambiguous": 288, "no_match": 101}
    assert result["labels_agree"] == 790 and result["label_agreement"] == 1.0 and result["disagreements"] == []
    assert result["scores_agree"] == 789 and result["other_scores"] == [290]
    assert "labels agree on 790/790" in jv.render({"truthfulqa": {}, "short_qa": {}, "overlap": result})


def test_overlap_validation_on_a_handmade_pair_of_files(tmp_path):
    (tmp_path / "truthfulqa").mkdir()
    (tmp_path / "truthfulqa" / "TruthfulQA.csv").write_text(
        "Type,Category,Question,Best Answer,Best Incorrect Answer,Correct Answers,Incorrect Answers,Source\n"
        "A,B,Where is Paris?,In France,In Spain,In France; France,In Spain; Spain,s\n")
    (tmp_path / "ucbd").mkdir()
    row = {"question_idx": 0, "question": "Where is Paris?", "full_text": "Paris is in France.", "label": "correct",
           "correct_score": 0.5, "incorrect_score": 0.0}   # {paris, france} vs {france}: 1/2; vs {spain}: 0
    lines = [row, {**row, "full_text": "Nowhere.", "label": "no_match", "correct_score": 0.0},
             {**row, "full_text": "Spain.", "label": "correct", "correct_score": 0.0}]   # a wrong label in the file
    (tmp_path / jv.PAPER_ANSWERS).write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = jv.validate_overlap(tmp_path)
    assert (result["labels_agree"], result["scores_agree"], result["other_scores"]) == (2, 2, [0])
    assert result["disagreements"] == [{"question_idx": 0, "file": "correct", "ours": "incorrect"}]
    (tmp_path / jv.PAPER_ANSWERS).write_text(json.dumps({**row, "question": "Where is Rome?"}) + "\n")
    with pytest.raises(UsageError, match=r"v1a_fluency.jsonl: question_idx 0 is 'Where is Rome\?'"):
        jv.validate_overlap(tmp_path)
