"""How often the judges are right, measured on the benchmarks' own reference answers.

    python -m harness.judge_validation [data=../shared/data] [margins=[0,0.01,0.02,0.03,0.05,0.1,0.15]]
                                          [limit=null] [seed=0] [out=harness/results/judge_validation]

TruthfulQA reference judge (measure.scoring.correctness.TruthfulQAJudge), leave-one-out on TruthfulQA's references:
every correct reference of a question with at least two is judged against the remaining correct
references and all incorrect ones (it should come out correct); every incorrect reference of a question
with at least two, against all correct and the remaining incorrect ones (it should come out incorrect).
The judged text is never among its own references. Per margin: the share judged ambiguous, the accuracy
among the decided ones, and the accuracy over all (ambiguous counted as not right), for the 790-question
revision and the classic 817 (truthfulqa/TruthfulQA.csv, truthfulqa/v1/TruthfulQA.csv).

Short-answer judge (measure.scoring.correctness.ShortQAJudge) on NQ-open and WebQuestions gold answers, with
answers a reader would accept or reject and whose truth is known without a model:
  alias      NQ-open only: each gold answer of a question with several, judged against the other gold answers
             only (should be correct: NQ-open's golds are alternative spans of ONE answer, e.g. "1945" and
             "September 2, 1945"; it fails when they differ in more than the judge's containment allows).
             WebQuestions' golds are different answers (all the languages of a country), not aliases, so
             leaving one out does not make a paraphrase there and the probe is not run.
  sentence   "The answer is <gold>." (should be correct)
  variant    the gold upper-cased, in quotes, with a trailing "!" (should be correct)
  other      the first gold of another question, a seeded derangement (should be incorrect); pairs where
             that answer is also a gold of this question (normalized) are left out and counted.

The paper's word-overlap judge (measure.scoring.correctness.TruthfulQAOverlapJudge, judge=truthfulqa_overlap)
on the paper's own released answers (ucbd/v1a_fluency.jsonl: Qwen3-14B greedy answers to the 790 TruthfulQA
questions with the labels its code gave them): how many of our labels equal the file's (its no_match = our
None), and how many of its two scores (rounded to 4 decimals, as the file stores them) come out the same.
The answer judged is `full_text` (the seed judged the whole answer; `generated_answer` is that answer cut
at 500 characters; full_text is cut at 800, which the check counts). Not subsetted by limit.

limit=k keeps a seeded subset of k questions per file (measure.data.benchmarks.seeded_subset, seed=).
Writes <out>.json and <out>.md (harness/results/ is git-ignored) and prints the markdown.
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from measure import (BenchmarkSpec, MeasureSettings, Question, ShortQAJudge, TruthfulQAJudge, TruthfulQAOverlapJudge,
                     load_benchmark, normalize_answer, overlap_judgement, reference_judgement)
from measure.common.errors import UsageError, exit_on_usage_error
from measure.common.io import provenance, write_json, write_text
from measure.common.cli_args import parse_cli

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Options:
    data: str = field(default=str(REPO.parent / "shared" / "data"), metadata={"help": "the shared benchmark data dir"})
    margins: list = field(default_factory=lambda: [0.0, 0.01, MeasureSettings.judge_margin, 0.03, 0.05, 0.1, 0.15],
                          metadata={"help": "truthfulqa judge margins to report, each in [0, 2)"})
    limit: int | None = field(default=None, metadata={"help": "a seeded subset of this many questions per file"})
    seed: int = field(default=0, metadata={"help": "subset and derangement seed"})
    out: str = field(default=str(REPO / "harness" / "results" / "judge_validation"),
                     metadata={"help": "writes <out>.json and <out>.md"})

TRUTHFULQA_FILES = {"TruthfulQA (790)": "truthfulqa/TruthfulQA.csv", "TruthfulQA v1 (817)": "truthfulqa/v1/TruthfulQA.csv"}
PAPER_ANSWERS = "ucbd/v1a_fluency.jsonl"   # the paper's released answers and word-overlap labels
SHORT_QA_FILES = {"NQ-open dev": ("nq_open", "nq_open/NQ-open.dev.jsonl", True),        # (benchmark, file, aliases)
                  "WebQuestions test": ("webquestions", "webquestions/brmson_main_test.json", False)}


# ---------------------------------------------------------------- TruthfulQA: leave one reference out

def leave_one_out(questions: Sequence[Question]) -> list[tuple[Question, str, str]]:
    """(question with the judged reference removed, the reference, the expected judgement) for every
    reference whose side keeps at least one other reference."""
    items = []
    for q in questions:
        if len(q.answers) >= 2:
            items += [(Question(q.id, q.text, tuple(a for a in q.answers if a != c), q.incorrect_answers), c, "correct")
                      for c in q.answers]
        if len(q.incorrect_answers) >= 2:
            items += [(Question(q.id, q.text, q.answers, tuple(a for a in q.incorrect_answers if a != i)), i, "incorrect")
                      for i in q.incorrect_answers]
    return items


def margin_rows(scores: Sequence[tuple[float, float]], expected: Sequence[str], margins: Sequence[float]) -> list[dict]:
    """Per margin: share ambiguous, accuracy among decided, accuracy over all, per expected class, and the
    accuracy at margin 0 of the items in the band (previous margin, margin] of |s_c - s_i|: what marking
    that band ambiguous removes (near 0.5 = coin flips)."""
    rows, previous = [], None
    gaps = np.abs([sc - si for sc, si in scores])
    at_zero = [reference_judgement(sc, si, 0.0) == e for (sc, si), e in zip(scores, expected)]
    for margin in margins:
        got = [reference_judgement(sc, si, margin) for sc, si in scores]
        right = [g == e for g, e in zip(got, expected)]
        decided = [g != "ambiguous" for g in got]
        n_dec = sum(decided)
        per = {e: float(np.mean([r for r, x in zip(right, expected) if x == e])) for e in ("correct", "incorrect")}
        rows.append({"margin": margin, "n": len(got), "ambiguous": 1 - n_dec / len(got),
                     "accuracy_decided": sum(r for r, d in zip(right, decided) if d) / n_dec if n_dec else None,
                     "accuracy_all": float(np.mean(right)), "correct_refs_right": per["correct"],
                     "incorrect_refs_right": per["incorrect"],
                     "band_accuracy": _band(at_zero, gaps, previous, margin)})
        previous = margin
    return rows


def _band(right: Sequence[bool], gaps: np.ndarray, lo: float | None, hi: float) -> float | None:
    inside = (gaps <= hi) & (gaps > lo) if lo is not None else gaps <= hi
    return float(np.mean(np.asarray(right)[inside])) if inside.any() else None


def validate_truthfulqa(path: Path, margins: Sequence[float], limit: int | None, seed: int,
                        judge: TruthfulQAJudge | None = None) -> dict:
    questions = load_benchmark(BenchmarkSpec("truthfulqa", str(path), limit=limit), seed=seed)
    items = leave_one_out(questions)
    started = time.perf_counter()
    scores = (judge or TruthfulQAJudge()).scores([q for q, _, _ in items], [a for _, a, _ in items])
    return {"file": str(path), "n_questions": len(questions), "n_judged": len(items),
            "n_expected_correct": sum(e == "correct" for *_, e in items), "seconds": time.perf_counter() - started,
            "margins": margin_rows(scores, [e for *_, e in items], margins)}


# ---------------------------------------------------------------- the paper's word-overlap judge, on its labels

def validate_overlap(data: Path) -> dict:
    """Our truthfulqa_overlap judge against the labels and scores in the paper's v1a_fluency.jsonl."""
    path = data / PAPER_ANSWERS
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = load_benchmark(BenchmarkSpec("truthfulqa", str(data / TRUTHFULQA_FILES["TruthfulQA (790)"])))
    qs = [questions[r["question_idx"]] for r in rows]
    for r, q in zip(rows, qs):   # question_idx is the CSV row: the same question, or the files do not belong together
        if q.text != r["question"].strip():
            raise UsageError(f"{path}: question_idx {r['question_idx']} is {r['question']!r}, the CSV row is {q.text!r}")
    answers = [r["full_text"] for r in rows]
    got = TruthfulQAOverlapJudge().judge_many(qs, answers)
    expected = [None if r["label"] == "no_match" else r["label"] for r in rows]
    scores = [overlap_judgement(a, q.answers, q.incorrect_answers)[1:] for a, q in zip(answers, qs)]
    other_scores = [r["question_idx"] for r, (c, i) in zip(rows, scores)
                    if (round(c, 4), round(i, 4)) != (r["correct_score"], r["incorrect_score"])]
    return {"file": str(path), "n": len(rows), "labels_agree": sum(g == e for g, e in zip(got, expected)),
            "label_agreement": float(np.mean([g == e for g, e in zip(got, expected)])),
            "file_labels": dict(Counter(r["label"] for r in rows)),
            "disagreements": [{"question_idx": r["question_idx"], "file": r["label"], "ours": g}
                              for r, g, e in zip(rows, got, expected) if g != e],
            "scores_agree": len(rows) - len(other_scores), "other_scores": other_scores,
            "answers_at_800_chars": sum(len(r["full_text"]) >= 800 for r in rows)}


# ---------------------------------------------------------------- short answers: honest paraphrases

def short_qa_probes(questions: Sequence[Question], seed: int,
                    aliases: bool = True) -> tuple[dict[str, list[tuple[Question, str, bool]]], int]:
    """{probe: [(question, answer, should be correct)]} (module docstring) and the left-out 'other' pairs."""
    probes: dict[str, list[tuple[Question, str, bool]]] = {"alias": [], "sentence": [], "variant": [], "other": []}
    if not aliases:
        del probes["alias"]
    for q in questions:
        golds = list(dict.fromkeys(a for a in q.answers if normalize_answer(a)))
        if aliases and len({normalize_answer(a) for a in golds}) >= 2:
            probes["alias"] += [(Question(q.id, q.text, tuple(x for x in golds if x != a)), a, True) for a in golds]
        gold = q.answers[0]
        probes["sentence"].append((q, f"The answer is {gold}.", True))
        probes["variant"].append((q, f'"{gold.upper()}"!', True))
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    left_out = 0
    for i, j in zip(order, order[1:] + order[:1]):        # a cycle: no question is paired with itself
        q, other = questions[i], questions[j].answers[0]
        if normalize_answer(other) in {normalize_answer(a) for a in q.answers}:
            left_out += 1
            continue
        probes["other"].append((q, other, False))
    return probes, left_out


def validate_short_qa(name: str, path: Path, limit: int | None, seed: int, aliases: bool = True) -> dict:
    questions = load_benchmark(BenchmarkSpec(name, str(path), limit=limit), seed=seed)
    probes, left_out = short_qa_probes(questions, seed, aliases)
    judge = ShortQAJudge()
    rows = []
    for probe, items in probes.items():
        got = judge.judge_many([q for q, _, _ in items], [a for _, a, _ in items])
        rows.append({"probe": probe, "n": len(items), "expected": "correct" if probe != "other" else "incorrect",
                     "right": float(np.mean([(g == "correct") == ok for g, (_, _, ok) in zip(got, items)]))})
    return {"file": str(path), "n_questions": len(questions), "other_left_out": left_out, "probes": rows}


# ---------------------------------------------------------------- the CLI

def render(result: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["TruthfulQA reference judge, leave-one-out on the references (all-MiniLM-L6-v2, CPU):", "",
             "| file | judged | margin | ambiguous | accuracy (decided) | accuracy (all) | correct refs | incorrect refs "
             "| accuracy at margin 0 of the gaps newly ambiguous |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["truthfulqa"].items():
        lines += [f"| {name} | {r['n_judged']} | {m['margin']:g} | {f(m['ambiguous'])} | {f(m['accuracy_decided'])} | "
                  f"{f(m['accuracy_all'])} | {f(m['correct_refs_right'])} | {f(m['incorrect_refs_right'])} | "
                  f"{f(m['band_accuracy'])} |"
                  for m in r["margins"]]
    lines += ["", "Short-answer judge on gold answers and their paraphrases (share judged as expected):", "",
              "| file | questions | probe | expected | n | judged as expected |", "|---|---|---|---|---|---|"]
    for name, r in result["short_qa"].items():
        lines += [f"| {name} | {r['n_questions']} | {p['probe']} | {p['expected']} | {p['n']} | {f(p['right'])} |"
                  for p in r["probes"]]
        lines.append(f"| {name} | | other: pairs left out (that answer is also a gold here) | | {r['other_left_out']} | |")
    o = result.get("overlap")
    if o is not None:
        lines += ["", f"Paper's word-overlap judge (truthfulqa_overlap) on its released answers ({PAPER_ANSWERS}): labels "
                  f"agree on {o['labels_agree']}/{o['n']} ({o['label_agreement']:.4f}); both scores equal (4 decimals) on "
                  f"{o['scores_agree']}/{o['n']} (others: question_idx {o['other_scores'] or 'none'}); "
                  f"disagreements: {o['disagreements'] or 'none'}; answers cut at 800 characters: {o['answers_at_800_chars']}."]
    return "\n".join(lines) + "\n"


def parse_options(argv: list[str] | None) -> dict[str, Any]:
    opts, _ = parse_cli(argv, __doc__, Options, strict=True, typed=False)   # --help: the docstring and Options
    margins = opts["margins"] if isinstance(opts["margins"], list) else [opts["margins"]]
    if not margins or not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0 <= m < 2 for m in margins):
        raise UsageError(f"margins: expected a list of numbers in [0, 2), e.g. margins=[0,0.05]; got {opts['margins']!r}")
    opts["margins"] = [float(m) for m in margins]
    if opts["limit"] is not None and (isinstance(opts["limit"], bool) or not isinstance(opts["limit"], int) or opts["limit"] < 1):
        raise UsageError(f"limit: expected an integer >= 1 or null, got {opts['limit']!r}")
    if isinstance(opts["seed"], bool) or not isinstance(opts["seed"], int):
        raise UsageError(f"seed: expected an integer, got {opts['seed']!r}")
    if not (Path(str(opts["data"])) / "truthfulqa").is_dir():
        raise UsageError(f"data: {opts['data']} has no truthfulqa/ folder (give the shared benchmark data dir)")
    return opts


def run(opts: dict[str, Any]) -> dict:
    data = Path(str(opts["data"]))
    result = {"options": opts, "provenance": provenance(seed=opts["seed"]),
              "truthfulqa": {name: validate_truthfulqa(data / rel, opts["margins"], opts["limit"], opts["seed"])
                             for name, rel in TRUTHFULQA_FILES.items()},
              "short_qa": {name: validate_short_qa(bench, data / rel, opts["limit"], opts["seed"], aliases)
                           for name, (bench, rel, aliases) in SHORT_QA_FILES.items()},
              "overlap": validate_overlap(data) if (data / PAPER_ANSWERS).is_file() else None}
    text = render(result)
    out = Path(str(opts["out"]))
    write_json(out.with_suffix(".json"), result)
    write_text(out.with_suffix(".md"), text)
    print(text + f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return result


@exit_on_usage_error
def main(argv: list[str] | None = None) -> dict:
    return run(parse_options(argv))


if __name__ == "__main__":
    main()
