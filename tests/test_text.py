"""measure/data/text.py: the one number rule and SQuAD normalization, on hand cases, on every consumer (numeric
clusterer, GSM8K judge, gold parser) and on 200 real GSM8K reference solutions."""
from __future__ import annotations

import json
import re

import pytest

from measure.data.benchmarks import gsm8k_gold
from measure.scoring.cluster import make_clusterer
from measure.scoring.correctness import make_judge
from measure.records.records import Question
from measure.data.text import answer_number, canonical_number, normalize_answer, numbers, parse_number


def test_normalize_answer_squad_style():
    assert normalize_answer("  The  Paris!! ") == "paris"
    assert normalize_answer("An apple, a day.") == "apple day"
    assert normalize_answer("Theory") == "theory"                          # articles only as whole words
    assert normalize_answer("  The Eiffel-Tower, in PARIS!  ") == "eiffeltower in paris"


@pytest.mark.parametrize("text, expected", [
    (".5", [0.5]), ("x = .5 or 0.5", [0.5, 0.5]),
    ("1e3", [1000.0]), ("2.5E-2 m", [0.025]), ("1e999", []),              # scientific; non-finite dropped
    ("1,2345", [1.0, 2345.0]), ("1,234", [1234.0]), ("1,2,3", [1.0, 2.0, 3.0]), ("1,000,000", [1e6]),
    ("16-3-4=9", [16.0, 3.0, 4.0, 9.0]), ("It was -5 degrees", [-5.0]), ("$1,000.50", [1000.5]),
    ("42.", [42.0]), ("v2 and Q3", []), ("no digits", []),
])
def test_numbers(text, expected):
    assert numbers(text) == expected


@pytest.mark.parametrize("text, number", [
    ("#### 5 ... 6", 5.0),                                    # the first number after the marker
    ("#### 5\nQ: next question, answer 7", 5.0),
    ("a #### 1\n#### 2", 1.0),                                # the first marker
    ("She makes 9 * 2 = $18 every day.\n#### 18", 18.0),
    ("The answer is 1,234.", 1234.0), ("from 3 to 7 apples", 7.0), ("pages 3-4", 4.0), ("1,2,3", 3.0),
    ("1,2345", 2345.0), (".5", 0.5), ("1e3", 1000.0), ("The answer is $18.00.", 18.0),
    ("#### five", None), ("no number here", None), ("", None),
])
def test_answer_number(text, number):
    assert answer_number(text) == number


def test_parse_number_and_canonical_form():
    assert parse_number("1,000") == 1000.0 and parse_number("$18.00") == 18.0 and parse_number("-3") == -3.0
    assert parse_number(".5") == 0.5 and parse_number("1e3") == 1000.0 and parse_number("18.") == 18.0
    assert parse_number("five") is None and parse_number("nan") is None and parse_number("1,2345") is None
    assert parse_number("5 apples") is None                             # a gold string holds one number only
    assert canonical_number(1000.0) == "1000" and canonical_number(0.5) == "0.5" and canonical_number(-3.0) == "-3"


@pytest.mark.parametrize("text", ["#### 5 ... 6", ".5", "1e3", "1,2345", "1,000 then #### -2 and 7"])
def test_every_consumer_reads_a_number_the_same_way(text):
    """Numeric clusterer, GSM8K judge and gold parser agree on the issue's disputed cases."""
    value = answer_number(text)
    other = "#### 123456"
    assert make_clusterer("numeric").cluster([text, f"{value:g}", other]) == [0, 0, 1]
    judge = make_judge("gsm8k")
    assert judge.judge_many([Question("q", "?", (canonical_number(value),))], [text]) == ["correct"]
    assert judge.judge_many([Question("q", "?", (canonical_number(value + 1),))], [text]) == ["incorrect"]
    if "####" in text:
        assert gsm8k_gold(text) == canonical_number(value)


def test_gold_of_200_real_gsm8k_solutions(shared_data):
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:200]]
    assert len(rows) == 200
    for row in rows:
        tail = row["answer"].split("####")[1].strip()
        assert re.fullmatch(r"-?[\d,]+(\.\d+)?", tail), tail          # independent reading of the marker
        assert row["answer"].count("####") == 1
        assert gsm8k_gold(row["answer"]) == tail.replace(",", "")
        assert answer_number(row["answer"]) == float(tail.replace(",", ""))
        # the gold solution itself is judged correct against its own gold
        q = Question("q", row["question"], (gsm8k_gold(row["answer"]),))
        assert make_judge("gsm8k").judge_many([q], [row["answer"]]) == ["correct"]
