"""Typed records passed between measurement steps, and the samples.jsonl reader/writer.

samples.jsonl (one object per question; the contract `measure score` accepts):
    id, question, answers? [str], incorrect_answers? [str], label? bool,
    greedy? {text, token_entropies?, token_logprobs?, token_ids?},
    samples: [str | {text, token_logprobs?, token_entropies?, token_ids?}]      (non-empty)
Extra keys are kept in Question.meta and written back. token_ids is optional (files written before it
existed, or by other tools, still load); where present it is a list of non-negative integers.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from measure.common.errors import UsageError
from measure.common.io import read_jsonl, write_jsonl

JUDGEMENTS = ("correct", "incorrect", "ambiguous")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    answers: tuple[str, ...] = ()            # gold answers (any one is correct)
    incorrect_answers: tuple[str, ...] = ()  # known wrong answers (TruthfulQA)
    label: bool | None = None                # external correctness of the greedy answer; overrides the judge
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Generation:
    text: str
    token_logprobs: tuple[float, ...] | None = None   # log p(chosen token) per generated step
    token_entropies: tuple[float, ...] | None = None  # full-vocabulary entropy (nats) per generated step
    # Every token the decoder generated for this answer, in order, so that any prefix of k tokens is the
    # answer a max_new_tokens=k run would have drawn (measure.analysis.length_sensitivity). It ends with
    # the EOS token when the answer ended with one (nothing after it: padding is not generated); when a
    # stop string ended the answer it runs through the step that completed the stop string, so it is
    # longer than the statistics, which stop before the stop string as the text does. The text is
    # measure.sampling.answers.answer_text of these ids. None: not recorded (older or foreign files).
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class QuestionSamples:
    question: Question
    greedy: Generation | None
    samples: tuple[Generation, ...]


@dataclass(frozen=True)
class GenerationTiming:
    """Wall seconds a run spent generating, summed over its batches (and, sharded, over its processes):
    the greedy pass and the N samples. `measured`: some batch was generated here (False when every row
    came from a cache or a samples file). Built once, by measure.sampling.sample.GenerationClock.timing();
    measure.pipeline.timing_block turns it into report.json's "timing" (greedy, sampling per question)."""
    greedy_s: float = 0.0
    sampling_s: float = 0.0
    measured: bool = False

    def __add__(self, other: "GenerationTiming") -> "GenerationTiming":
        return GenerationTiming(self.greedy_s + other.greedy_s, self.sampling_s + other.sampling_s,
                                self.measured or other.measured)


@dataclass(frozen=True)
class QuestionRecord:
    id: str
    n_clusters: dict[str, int]            # clusterer -> number of clusters among the N samples
    clusters: dict[str, list[int]]        # clusterer -> cluster id per sample
    signals: dict[str, float | None]      # signal -> value (higher = more uncertain); None = skipped
    label: bool | None                    # True = greedy answer correct
    judgement: str | None                 # correct / incorrect / ambiguous / None (no gold)
    # continuous homogeneity measures (measure.scoring.homogeneity; higher = more homogeneous): key -> value,
    # None = not computable for this question; {} in a questions.jsonl written before they existed
    homogeneity: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RunIdentity:
    """What a caller says a measured run is; the library interprets neither field.

    model_key: when set, what a resume cache must match to be resumed (instead of the model files' names,
        sizes and times): e.g. a hash of the manifest the caller trained the model under.
    labels: recorded verbatim in the report's settings, after the library's own keys, so the caller can
        read them back (Report.settings.get) to decide whether a finished report is still its run.
    """
    model_key: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- samples.jsonl edges

def _floats(value: Any, where: str, key: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise UsageError(f"{where}: {key!r} must be a list of numbers")
    out = tuple(float(v) for v in value)
    # JSON readers accept NaN / Infinity; a non-finite statistic would silently drop the question from
    # that signal's AUROC, so the file is refused instead
    bad = next((i for i, v in enumerate(out) if not math.isfinite(v)), None)
    if bad is not None:
        raise UsageError(f"{where}: {key}[{bad}] is {json.dumps(value[bad])}; token statistics must be finite numbers")
    return out


def _token_ids(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise UsageError(f"{where}: 'token_ids' must be a list of non-negative integers (token ids)")
    return tuple(value)


def _generation(obj: Any, where: str) -> Generation:
    if isinstance(obj, str):
        return Generation(obj)
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise UsageError(f"{where}: a generation must be a string or an object with a string 'text'")
    return Generation(obj["text"], _floats(obj.get("token_logprobs"), where, "token_logprobs"),
                      _floats(obj.get("token_entropies"), where, "token_entropies"),
                      _token_ids(obj.get("token_ids"), where))


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


SAMPLE_KEYS = {"id", "question", "answers", "incorrect_answers", "label", "greedy", "samples"}


def parse_samples_row(obj: dict, where: str) -> QuestionSamples:
    for key in ("id", "question", "samples"):
        if key not in obj:
            raise UsageError(f"{where}: missing required key {key!r} (required: id, question, samples)")
    if not isinstance(obj["question"], str):
        raise UsageError(f"{where}: 'question' must be a string")
    if not isinstance(obj["samples"], list) or not obj["samples"]:
        raise UsageError(f"{where}: 'samples' must be a non-empty list")
    label = obj.get("label")
    if label is not None and not isinstance(label, bool):
        raise UsageError(f"{where}: 'label' must be true, false or null")
    question = Question(
        id=str(obj["id"]), text=obj["question"],
        answers=_strings(obj.get("answers"), where, "answers"),
        incorrect_answers=_strings(obj.get("incorrect_answers"), where, "incorrect_answers"),
        label=label, meta={k: v for k, v in obj.items() if k not in SAMPLE_KEYS})
    greedy = _generation(obj["greedy"], f"{where} (greedy)") if obj.get("greedy") is not None else None
    samples = tuple(_generation(s, f"{where} (samples[{i}])") for i, s in enumerate(obj["samples"]))
    return QuestionSamples(question, greedy, samples)


MIN_SAMPLES = 2   # one sample is always one cluster: SCR 1.000 and every cluster measure fixed by construction


def read_samples(path: str | os.PathLike, max_samples: int | None = None) -> list[QuestionSamples]:
    """The rows of a samples file. max_samples given (measure score): every question must hold
    MIN_SAMPLES .. max_samples samples, else a UsageError naming file:line (the upper bound while
    streaming, so a huge question stops at its line)."""
    rows, seen, few = [], set(), None
    for lineno, obj in read_jsonl(path):
        row = parse_samples_row(obj, f"{path}:{lineno}")
        if row.question.id in seen:
            raise UsageError(f"{path}:{lineno}: duplicate question id {row.question.id!r}")
        n = len(row.samples)
        if max_samples is not None and n > max_samples:
            raise UsageError(f"{path}:{lineno}: question {row.question.id!r} has {n} samples, over max_samples="
                             f"{max_samples} (the bound on samples per question); if that is meant, pass "
                             f"max_samples={n}")
        if few is None and n < MIN_SAMPLES:
            few = (lineno, row.question.id, n)
        seen.add(row.question.id)
        rows.append(row)
    if not rows:
        raise UsageError(f"{path}: no questions in the samples file")
    if max_samples is not None and few is not None:
        raise UsageError(f"{path}:{few[0]}: question {few[1]!r} has {few[2]} sample; SCR and every cluster measure "
                         f"need at least {MIN_SAMPLES} samples per question (one sample is always one cluster, so SCR "
                         "would read 1.000 by construction); sample more, or drop the question")
    return rows


def generation_to_json(g: Generation) -> dict:
    return {"text": g.text, "token_logprobs": g.token_logprobs, "token_entropies": g.token_entropies,
            "token_ids": g.token_ids}


def samples_row_to_json(qs: QuestionSamples) -> dict:
    q = qs.question
    row = {"id": q.id, "question": q.text, "answers": list(q.answers),
           "incorrect_answers": list(q.incorrect_answers), "label": q.label, **q.meta,
           "greedy": generation_to_json(qs.greedy) if qs.greedy else None,
           "samples": [generation_to_json(s) for s in qs.samples]}
    return row


def write_samples(path: str | os.PathLike, rows: Iterable[QuestionSamples]) -> None:
    write_jsonl(path, (samples_row_to_json(r) for r in rows))


def read_question_records(path: str | os.PathLike) -> list[QuestionRecord]:
    out = []
    for lineno, obj in read_jsonl(path):
        try:
            out.append(QuestionRecord(id=str(obj["id"]), n_clusters=obj["n_clusters"], clusters=obj["clusters"],
                                      signals=obj["signals"], label=obj.get("label"), judgement=obj.get("judgement"),
                                      homogeneity=dict(obj.get("homogeneity") or {})))
        except KeyError as e:
            raise UsageError(f"{path}:{lineno}: missing key {e.args[0]!r} in a questions.jsonl record") from None
    return out
