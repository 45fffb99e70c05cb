"""Correctness judges: is an answer right, given the Question's gold (and known-wrong) answers?

Registry `JUDGES` (kind -> Judge class); `make_judge(kind, ...)` builds one. Every judge maps
(questions, answers) -> one of JUDGEMENTS ("correct", "incorrect", "ambiguous") or None when it cannot
judge (no gold answers, no answer text). Judgements are kept as they are in the records, so ambiguous
answers are always counted and reported; `resolve_labels` turns them into the boolean labels the
metrics use (external Question.label first, then the ambiguous policy).

  gsm8k       the answer's number (measure.data.text.answer_number: the first number after the first "####",
              else the last number in the text; the same rule as the numeric clusterer and the gold
              parser) equal to a gold number as floats ("$18.00" == "18", "1,000" == "1000"). No number in
              the answer -> incorrect.
  short_qa    SQuAD normalization (measure.data.text.normalize_answer: lower case, punctuation and the articles
              a/an/the removed, whitespace collapsed); correct when the normalized answer equals a normalized gold answer or contains
              one as whole words ("the Eiffel Tower, Paris" contains "paris"; "parisian" does not).
              Containment is lenient on purpose (free-form answers are longer than the gold span), so an
              answer listing many candidates counts as correct.
  truthfulqa  reference judge: cosine similarity (sentence embeddings) of the answer to every correct and
              every incorrect reference; s_c / s_i = the best match on each side. s_c - s_i > margin ->
              correct, s_i - s_c > margin -> incorrect, otherwise ambiguous.
  truthfulqa_overlap
              the Alignment Tax paper's word-overlap judge, exactly (measure/scoring/overlap.py, transcribed
              from its run_v1a_fluency.py): max Jaccard of content-word sets (stopwords removed) against
              the correct (c) and the incorrect (i) references; c > i + 0.05 -> correct, i > c + 0.05 ->
              incorrect, c > 0.1 and i > 0.1 -> ambiguous, else the paper's "no_match" -> None
              (unlabelled). no_match means the answer shares too few content words with EITHER side to
              say anything (the paper, too, leaves it out of its AUROC and counts it apart from
              ambiguous), while ambiguous means it matches both: so ambiguous policies never fold
              no_match into a side, and the report's "unlabelled" count is the paper's no_match count
              (plus answers that are missing). Its margin is the paper's fixed 0.05; judge_margin does
              not apply. Reproduces the paper's 790 released labels (docs/judges.md).
  none        always None (no gold; use external labels).

On the truthfulqa margin: the default 0.02 (DEFAULT_JUDGE_MARGIN, MeasureSettings.judge_margin's default) comes from validating the
judge on TruthfulQA's own references (python -m harness.judge_validation; README "Validating the
judges"): judged leave-one-out, each reference against the others, the judge is right on 66.8% (790
questions) / 66.9% (817) at margin 0, but on the references whose gap |s_c - s_i| is <= 0.01 (8% of them)
it is right 51.5% of the time and in (0.01, 0.02] (another 7%) 55%: coin flips. Margin 0.02 marks exactly
those ambiguous (decided accuracy 69.3%); the next bands are right clearly more often (59% in (0.02, 0.03],
65% in (0.03, 0.05]), so a wider margin throws away informative labels for a few points of accuracy.
Earlier, on the paper's released Qwen3-14B greedy answers (shared/data/ucbd), the judge agreed with the
paper's word-overlap labels on 89.5% of 401 questions at margin 0 and 91.3% at 0.02. Even at 0.02 about
3 in 10 decided labels are wrong on the references themselves: TruthfulQA AUROCs carry that label noise.
Ambiguous answers are excluded from AUROC under the default policy and always reported (n_ambiguous).
`TruthfulQAJudge.scores` exposes the gaps.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from measure.scoring.cluster import load_embedder
from measure.common.errors import UsageError, choose
from measure.records.records import JUDGEMENTS, Question
from measure.data.text import answer_number, normalize_answer, parse_number
from measure.scoring import overlap

DEFAULT_JUDGE_MARGIN = 0.02   # the truthfulqa judge's ambiguity band (see above); MeasureSettings.judge_margin's default

# ---------------------------------------------------------------- short answers

def short_answer_match(answer: str, gold: Sequence[str]) -> bool | None:
    """Exact match or whole-word containment of any normalized gold answer; None if no usable gold."""
    golds = [g for g in (normalize_answer(x) for x in gold) if g]
    if not golds:
        return None
    padded = f" {normalize_answer(answer)} "
    return any(f" {g} " in padded for g in golds)   # padding makes containment whole-word; covers ==


# ---------------------------------------------------------------- judges

class Judge:
    name = "base"

    def settings(self) -> dict:
        return {"name": self.name}

    def judge_many(self, questions: list[Question], answers: list[str | None]) -> list[str | None]:
        _check_lengths(questions, answers, "answers")
        return [None if a is None else self.judge_one(q, a) for q, a in zip(questions, answers)]

    def judge_one(self, question: Question, answer: str) -> str | None:
        raise NotImplementedError


def _check_lengths(questions: Sequence, other: Sequence, what: str) -> None:
    if len(questions) != len(other):
        raise ValueError(f"{len(questions)} questions but {len(other)} {what}")


class NoneJudge(Judge):
    name = "none"

    def judge_one(self, question: Question, answer: str) -> str | None:
        return None


class Gsm8kJudge(Judge):
    name = "gsm8k"

    def judge_one(self, question: Question, answer: str) -> str | None:
        golds = [g for g in (parse_number(x) for x in question.answers) if g is not None]
        if not golds:
            return None
        predicted = answer_number(answer)
        if predicted is None:
            return "incorrect"
        hit = any(math.isclose(predicted, g, rel_tol=1e-9, abs_tol=1e-9) for g in golds)
        return "correct" if hit else "incorrect"


class ShortQAJudge(Judge):
    name = "short_qa"

    def judge_one(self, question: Question, answer: str) -> str | None:
        match = short_answer_match(answer, question.answers)
        return None if match is None else ("correct" if match else "incorrect")


def reference_judgement(s_correct: float, s_incorrect: float, margin: float) -> str:
    if s_correct - s_incorrect > margin:
        return "correct"
    if s_incorrect - s_correct > margin:
        return "incorrect"
    return "ambiguous"


class TruthfulQAJudge(Judge):
    name = "truthfulqa"

    def __init__(self, embedding_model: str | None = None, margin: float = DEFAULT_JUDGE_MARGIN, batch_size: int = 64):
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 2:
            raise UsageError(f"judge margin must be a number in [0, 2) (a cosine-similarity gap), got {margin!r}")
        self.embedding_model, self.margin, self.batch_size = embedding_model, float(margin), batch_size

    def settings(self) -> dict:
        return {"name": self.name, "embedding_model": self.embedding_model or "all-MiniLM-L6-v2 (bundled)",
                "margin": self.margin}

    def scores(self, questions: list[Question], answers: list[str | None]) -> list[tuple[float, float] | None]:
        """(s_c, s_i) per question, None without an answer or without references on both sides.
        Every distinct text of every question is encoded in one batched call."""
        _check_lengths(questions, answers, "answers")
        usable = [a is not None and bool(q.answers) and bool(q.incorrect_answers) for q, a in zip(questions, answers)]
        texts = list(dict.fromkeys(t for q, a, ok in zip(questions, answers, usable) if ok
                                   for t in (a, *q.answers, *q.incorrect_answers)))
        if not texts:
            return [None] * len(questions)
        vectors = load_embedder(self.embedding_model, device="cpu").encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        row = {t: i for i, t in enumerate(texts)}
        out: list[tuple[float, float] | None] = []
        for q, a, ok in zip(questions, answers, usable):
            if not ok:
                out.append(None)
                continue
            sims = vectors[[row[t] for t in (*q.answers, *q.incorrect_answers)]] @ vectors[row[a]]
            out.append((float(sims[:len(q.answers)].max()), float(sims[len(q.answers):].max())))
        return out

    def judge_many(self, questions: list[Question], answers: list[str | None]) -> list[str | None]:
        return [None if s is None else reference_judgement(*s, self.margin) for s in self.scores(questions, answers)]


class TruthfulQAOverlapJudge(Judge):
    """The paper's word-overlap judge (module docstring; measure/scoring/overlap.py); no_match -> None."""
    name = "truthfulqa_overlap"

    def settings(self) -> dict:
        return {"name": self.name, "margin": overlap.MARGIN, "floor": overlap.FLOOR,
                "no_match": "unlabelled (None)", "source": overlap.SOURCE}

    def judge_one(self, question: Question, answer: str) -> str | None:
        label, _, _ = overlap.overlap_judgement(answer, question.answers, question.incorrect_answers)
        return None if label == "no_match" else label


JUDGES: dict[str, type[Judge]] = {
    "gsm8k": Gsm8kJudge,
    "short_qa": ShortQAJudge,
    "truthfulqa": TruthfulQAJudge,
    "truthfulqa_overlap": TruthfulQAOverlapJudge,
    "none": NoneJudge,
}


def make_judge(kind: str, *, embedding_model: str | None = None, margin: float = DEFAULT_JUDGE_MARGIN) -> Judge:
    cls = choose("judge", kind, JUDGES)
    return cls(embedding_model=embedding_model, margin=margin) if cls is TruthfulQAJudge else cls()


# ---------------------------------------------------------------- labels

_AMBIGUOUS_AS: dict[str, bool | None] = {"exclude": None, "incorrect": False, "correct": True}
AMBIGUOUS_POLICIES = tuple(_AMBIGUOUS_AS)   # MeasureSettings.ambiguous's choices; the first is its default


def resolve_labels(questions: Sequence[Question], judgements: Sequence[str | None],
                   policy: str = AMBIGUOUS_POLICIES[0]) -> list[bool | None]:
    """label = True when the answer is correct. An external Question.label wins over the judgement;
    ambiguous maps by `policy` (exclude -> None, incorrect -> False, correct -> True); no judgement -> None."""
    ambiguous_as = choose("ambiguous policy", policy, _AMBIGUOUS_AS)
    _check_lengths(questions, judgements, "judgements")
    out: list[bool | None] = []
    for q, j in zip(questions, judgements):
        if j is not None and j not in JUDGEMENTS:
            raise ValueError(f"unknown judgement {j!r} for question {q.id!r}; expected one of {JUDGEMENTS} or None")
        if q.label is not None:
            out.append(q.label)
        elif j == "ambiguous":
            out.append(ambiguous_as)
        else:
            out.append(None if j is None else j == "correct")
    return out


def summarize_judgements(judgements: Sequence[str | None]) -> dict[str, int]:
    """Counts of correct / incorrect / ambiguous / unlabelled (None) judgements."""
    counts = Counter("unlabelled" if j is None else j for j in judgements)
    unknown = set(counts) - {*JUDGEMENTS, "unlabelled"}
    if unknown:
        raise ValueError(f"unknown judgements {sorted(unknown)}; expected one of {JUDGEMENTS} or None")
    return {key: counts.get(key, 0) for key in (*JUDGEMENTS, "unlabelled")}
