"""Text normalization and number reading: the one copy every clusterer, judge and gold parser uses.

    normalize_answer   SQuAD v1.1 normalization (exact clusterer, short-answer judge)
    numbers            every number in a text, in order
    answer_number      the number an answer commits to (numeric clusterer, GSM8K judge, GSM8K gold)
    parse_number       a gold answer string that holds one number (GSM8K judge)

A number is read as people write it, one rule everywhere:
- optional "-" (only when not glued to a preceding letter or digit: "16-3" is 16 and 3, "x-3" is 3),
  optional "$";
- digits with thousands commas only in groups of exactly three ("1,000" = 1000), or plain digits; a comma
  followed by anything else is punctuation, so "1,2345" is the two numbers 1 and 2345 and "1,2,3" is three;
- an optional decimal part ".5"; a leading-dot decimal ".5" = 0.5; a sentence-final "." is not a decimal
  point ("42." = 42), because a decimal point needs a digit after it;
- an optional exponent glued to the digits: "1e3" = 1000, "2.5E-2" = 0.025 (scientific notation);
- a number glued to a preceding letter, digit or dot is not read ("v2", "Q3"): it is part of a word;
- non-finite values ("1e999") are not numbers;
- a fraction of two plain integers is one number: "3/4" = 0.75, "-1/2" = -0.5 (a GSM8K gold "#### 3/4" is 0.75,
  and so is an answer "3/4"); not inside a longer slash chain ("1/2/2024" is a date: three numbers) and not with
  a zero denominator ("3/0": the numbers 3 and 0).

The answer's number: after GSM8K's answer marker "####" if the text has one, the first number after the
FIRST marker ("#### 5 ... 6" -> 5: what follows the marked number is continuation, e.g. a next problem);
otherwise the LAST number in the text ("from 3 to 7 apples" -> 7: answers end with their result). Every
GSM8K reference solution has exactly one marker (all 1319 test rows), so the gold is the number after it.
"""
from __future__ import annotations

import math
import re
import string

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")

_NUMBER = re.compile(
    r"(?<![\w./])(-?)(\d+)/(\d+)(?![\w/]|[.,]\d)"               # 3/4 (not 1/2/2024, not 3/4.5)
    r"|(?<![\w.])(-?)\$?"                                    # sign only at a word boundary; optional $
    r"((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"     # 1,000 | 1000 | 1000.5 | .5
    r"([eE][+-]?\d+)?")                                       # 1e3
_MARKER = "####"


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalization: lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def numbers(text: str) -> list[float]:
    """Every number in `text`, in order, read by the rule in the module docstring."""
    out = []
    for f_sign, numerator, denominator, sign, digits, exponent in _NUMBER.findall(text):
        if numerator:   # a fraction; "3/0" has no value and stays the two numbers 3 and 0
            values = [float(f_sign + numerator) / float(denominator)] if int(denominator) else [float(f_sign + numerator), 0.0]
        else:
            values = [float(sign + digits.replace(",", "") + exponent)]
        out += [v for v in values if math.isfinite(v)]
    return out


def answer_number(text: str) -> float | None:
    """The first number after the first '####' when there is one, else the last number; None without one."""
    head, marker, tail = text.partition(_MARKER)
    if marker:
        found = numbers(tail)
        return found[0] if found else None
    found = numbers(head)
    return found[-1] if found else None


def parse_number(text: str) -> float | None:
    """A gold answer string holding exactly one number ('18', '1,000', '$18.00', '-3', '.5') -> its value."""
    found = numbers(text)
    rest = _NUMBER.sub("", text).strip().rstrip(".").strip()
    return found[0] if len(found) == 1 and not rest else None


def canonical_number(value: float) -> str:
    """1000.0 -> '1000', 0.5 -> '0.5': the string form gold answers are stored in."""
    return str(int(value)) if value.is_integer() else repr(value)
