"""Benchmarks: questions with gold (and known-wrong) answers, from a local file or the Hugging Face hub.

Registry `BENCHMARKS` (name -> Benchmark). Each benchmark names the judge kind that scores it
(measure.scoring.correctness.JUDGES) and parses one raw row, whichever source it came from:

  truthfulqa    upstream CSV (790-question Jan 2025 revision or the classic 817; "; "-separated
                cells), or hub `truthful_qa`/generation rows (question, best_answer, correct_answers,
                incorrect_answers). answers = Best Answer + Correct Answers (deduplicated, in order);
                incorrect_answers = Best Incorrect Answer (790 version only) + Incorrect Answers.
                Nothing is added (the original TruthfulQA metric also appends "I have no comment.";
                86 of the 790 rows already list it).  judge: truthfulqa
  gsm8k         jsonl {question, answer}; gold = the number after the "####" marker, read by
                measure.data.text.answer_number and stored canonically ("1,000" -> "1000"); the worked
                solution is kept in meta["solution"].  judge: gsm8k
  webquestions  brmson JSON array {qId, qText, answers}, the original JSON array {url, targetValue,
                utterance} with targetValue "(list (description X) (description \"Y Z\"))", or hub rows
                {question, answers}.  judge: short_qa
  nq_open       jsonl {question, answer: [...]} ("answers" also accepted).  judge: short_qa
  hh_rlhf       Anthropic HH-RLHF jsonl {chosen, rejected} (full "\n\nHuman: ...\n\nAssistant: ..." dialogues):
                the question is the dialogue's opening human request (measure/data/hh.py); no gold answers,
                so every question is unlabelled (homogeneity only; no AUROC). Repeated openings stay
                separate questions (row ids). Hub: Anthropic/hh-rlhf [test], its four preference subsets
                (harmless-base, helpful-base, helpful-online, helpful-rejection-sampled).  judge: none
  jsonl         generic, local only: question, optional id, answers, incorrect_answers, label (bool);
                other keys go to Question.meta.  judge: short_qa, which returns None (unlabelled) for a
                question without answers, so a file with only questions (or only external labels) works.

File format is detected from the content: a .csv file is CSV (utf-8-sig, so a BOM is fine), a file
starting with "[" a JSON array, otherwise JSONL (.gz allowed). A directory means the benchmark's
standard file inside it (e.g. TruthfulQA.csv). Question ids come from the file (qId, id) or are
f"{name}-{row index}" (0-based over data rows), so they are stable across runs and unique (checked).
`limit` keeps a seeded random subset in the original order; subsets are nested (same seed: the first
50 kept are among the first 100 kept), so a bigger limit only adds questions.
"""
from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from measure.common.errors import UsageError, choose
from measure.common.io import iter_rows
from measure.records.records import SAMPLE_KEYS, Question
from measure.data.hh import first_request
from measure.data.text import answer_number, canonical_number


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str                      # a key of measure.data.benchmarks.BENCHMARKS
    path: str | None = None        # local file; None -> the benchmark's hub id
    limit: int | None = None       # a seeded random subset of this many questions
    split: str | None = None       # hub split override
    judge: str | None = None       # a key of measure.scoring.correctness.JUDGES; None -> the benchmark's own


RowParser = Callable[[str, int, dict, str], Question]   # (benchmark name, row index, raw row, where) -> Question


@dataclass(frozen=True)
class Benchmark:
    name: str
    judge: str                     # a key of measure.scoring.correctness.JUDGES
    hub_id: str | None             # None: local files only
    hub_config: str | None
    hub_split: str | None
    loader: Callable[[Path], list[Question]]                    # local file -> questions
    hub_loader: Callable[[Iterable[dict], str], list[Question]] | None  # (hub rows, source name) -> questions
    filenames: tuple[str, ...] = ()   # standard file names looked for when path is a directory


# ---------------------------------------------------------------- field helpers

def _text(row: dict, key: str, where: str, expected: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else f"got {value!r}"
        raise UsageError(f"{where}: expected a non-empty string field {key!r} ({expected}); {got}")
    return value.strip()


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key!r} must be a string or a list of strings, got {value!r}")
    return tuple(v.strip() for v in value if v.strip())


def _split_cell(cell: Any) -> tuple[str, ...]:
    """A TruthfulQA CSV cell 'a; b; c' -> ('a', 'b', 'c'). Split on ';' and strip, as upstream does:
    26 cells of the 790 version have a trailing ';' or a double space that a split on '; ' would keep."""
    return tuple(part.strip() for part in (cell or "").split(";") if part.strip())


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def _row_id(row: dict, key: str, name: str, index: int) -> str:
    value = row.get(key)
    return f"{name}-{index}" if value is None or value == "" else str(value)


def _require_dict(row: Any, where: str) -> dict:
    if not isinstance(row, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


# ---------------------------------------------------------------- one parser per benchmark

def parse_truthfulqa(name: str, index: int, row: dict, where: str) -> Question:
    if "Question" in row:   # upstream CSV columns
        text = _text(row, "Question", where, "the TruthfulQA CSV column 'Question'")
        answers = _dedupe([(row.get("Best Answer") or "").strip(), *_split_cell(row.get("Correct Answers"))])
        incorrect = _dedupe([(row.get("Best Incorrect Answer") or "").strip(), *_split_cell(row.get("Incorrect Answers"))])
        meta = {"type": row.get("Type"), "category": row.get("Category")}
    else:                   # hub `truthful_qa` generation rows (or a JSONL export of them)
        text = _text(row, "question", where, "TruthfulQA CSV column 'Question' or hub field 'question'")
        best = _strings(row.get("best_answer"), where, "best_answer")
        answers = _dedupe([*best, *_strings(row.get("correct_answers"), where, "correct_answers")])
        incorrect = _dedupe(_strings(row.get("incorrect_answers"), where, "incorrect_answers"))
        meta = {"type": row.get("type"), "category": row.get("category")}
    if not answers or not incorrect:
        raise UsageError(f"{where}: a TruthfulQA question needs correct and incorrect answers "
                         f"('Correct Answers'/'Incorrect Answers' or correct_answers/incorrect_answers)")
    return Question(_row_id(row, "id", name, index), text, answers, incorrect,
                    meta={k: v for k, v in meta.items() if v is not None})


def gsm8k_gold(solution: str) -> str | None:
    """'... #### 1,000' -> '1000': measure.data.text.answer_number of the solution (the number after its
    '####' marker, the rule the GSM8K judge and numeric clusterer read answers by), in canonical form;
    None without a marker or without a number after it."""
    value = answer_number(solution) if "####" in solution else None
    return None if value is None else canonical_number(value)


def parse_gsm8k(name: str, index: int, row: dict, where: str) -> Question:
    text = _text(row, "question", where, "the GSM8K problem")
    solution = _text(row, "answer", where, "the worked solution ending in '#### <number>'")
    gold = gsm8k_gold(solution)
    if gold is None:
        raise UsageError(f"{where}: 'answer' must end with '#### <number>', got ...{solution[-40:]!r}")
    return Question(_row_id(row, "id", name, index), text, (gold,), meta={"solution": solution})


_DESCRIPTION_SEP = re.compile(r"\)\s*\(description\s+")


def parse_target_value(value: str) -> tuple[str, ...] | None:
    """'(list (description X) (description "Y Z"))' -> ('X', 'Y Z'); None if not of that shape.

    Split on ') (description ' rather than tokenizing quotes: 5 test rows hold unescaped quotes inside
    a quoted description (e.g. "Temperance "Tempie" Fitzgerald"), which a Lisp tokenizer would cut."""
    value = value.strip()
    prefix, suffix = "(list (description ", "))"
    if not (value.startswith(prefix) and value.endswith(suffix)):
        return () if re.fullmatch(r"\(list\s*\)", value) else None
    out = []
    for part in _DESCRIPTION_SEP.split(value[len(prefix):-len(suffix)]):
        part = part.strip()
        if len(part) >= 2 and part[0] == part[-1] == '"':
            part = part[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out.append(part)
    return tuple(p for p in out if p)


def parse_webquestions(name: str, index: int, row: dict, where: str) -> Question:
    if "qText" in row:         # brmson re-packaging
        text = _text(row, "qText", where, "the brmson question text")
        answers, qid, meta = _strings(row.get("answers"), where, "answers"), _row_id(row, "qId", name, index), {}
    elif "utterance" in row:   # original SEMPRE release
        text = _text(row, "utterance", where, "the WebQuestions question")
        target = row.get("targetValue")
        answers = parse_target_value(target) if isinstance(target, str) else None
        if answers is None:
            raise UsageError(f"{where}: 'targetValue' must look like '(list (description X) ...)', got {target!r}")
        qid, meta = _row_id(row, "id", name, index), ({"url": row["url"]} if row.get("url") else {})
    else:                      # hub stanfordnlp/web_questions
        text = _text(row, "question", where, "'qText' (brmson), 'utterance' (original) or 'question' (hub)")
        answers, qid, meta = _strings(row.get("answers"), where, "answers"), _row_id(row, "id", name, index), {}
    if not answers:
        raise UsageError(f"{where}: a WebQuestions question needs at least one answer")
    return Question(qid, text, _dedupe(answers), meta=meta)


def parse_nq_open(name: str, index: int, row: dict, where: str) -> Question:
    text = _text(row, "question", where, "the NQ-open question")
    answers = _strings(row.get("answer", row.get("answers")), where, "answer")
    if not answers:
        raise UsageError(f"{where}: expected a non-empty list 'answer' of gold answers")
    return Question(_row_id(row, "id", name, index), text, _dedupe(answers))


def parse_hh_rlhf(name: str, index: int, row: dict, where: str) -> Question:
    return Question(_row_id(row, "id", name, index), first_request(row.get("chosen"), f"{where}: 'chosen'"))


def parse_jsonl(name: str, index: int, row: dict, where: str) -> Question:
    text = _text(row, "question", where, "the question text")
    label = row.get("label")
    if label is not None and not isinstance(label, bool):
        raise UsageError(f"{where}: 'label' must be true, false or null, got {label!r}")
    return Question(_row_id(row, "id", name, index), text,
                    _dedupe(_strings(row.get("answers"), where, "answers")),
                    _dedupe(_strings(row.get("incorrect_answers"), where, "incorrect_answers")),
                    label=label, meta={k: v for k, v in row.items() if k not in SAMPLE_KEYS})


# ---------------------------------------------------------------- registry and loading

def parse_rows(name: str, parse: RowParser, rows: Iterable[tuple[str, Any]]) -> list[Question]:
    out: list[Question] = []
    seen: dict[str, str] = {}
    for index, (where, row) in enumerate(rows):
        question = parse(name, index, _require_dict(row, where), where)
        if question.id in seen:
            raise UsageError(f"{where}: duplicate question id {question.id!r} (first at {seen[question.id]})")
        seen[question.id] = where
        out.append(question)
    return out


def _local(name: str, parse: RowParser, path: Path) -> list[Question]:
    return parse_rows(name, parse, iter_rows(path))


def _hub(name: str, parse: RowParser, rows: Iterable[dict], source: str) -> list[Question]:
    return parse_rows(name, parse, ((f"{source} row {i}", row) for i, row in enumerate(rows)))


def _benchmark(name: str, judge: str, parse: RowParser, hub: tuple[str, str | None, str] | None,
               filenames: tuple[str, ...] = ()) -> Benchmark:
    hub_id, hub_config, hub_split = hub or (None, None, None)
    return Benchmark(name, judge, hub_id, hub_config, hub_split, functools.partial(_local, name, parse),
                     functools.partial(_hub, name, parse) if hub else None, filenames)


BENCHMARKS: dict[str, Benchmark] = {
    "truthfulqa": _benchmark("truthfulqa", "truthfulqa", parse_truthfulqa,
                             ("truthful_qa", "generation", "validation"), ("TruthfulQA.csv",)),
    "gsm8k": _benchmark("gsm8k", "gsm8k", parse_gsm8k, ("openai/gsm8k", "main", "test"), ("test.jsonl",)),
    "webquestions": _benchmark("webquestions", "short_qa", parse_webquestions, ("stanfordnlp/web_questions", None, "test"),
                               ("webquestions.examples.test.json", "brmson_main_test.json")),
    "nq_open": _benchmark("nq_open", "short_qa", parse_nq_open, ("google-research-datasets/nq_open", "nq_open", "validation"),
                          ("NQ-open.dev.jsonl",)),
    "hh_rlhf": _benchmark("hh_rlhf", "none", parse_hh_rlhf, ("Anthropic/hh-rlhf", None, "test"),
                          ("harmless-base_test.jsonl.gz",)),
    "jsonl": _benchmark("jsonl", "short_qa", parse_jsonl, None),
}


def resolve_path(benchmark: Benchmark, path: str | Path) -> Path:
    """A file as given, or the benchmark's standard file inside a directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in benchmark.filenames:
            if (path / name).is_file():
                return path / name
        looked = f"looked for {', '.join(benchmark.filenames)}" if benchmark.filenames else "it has no standard file name"
        raise UsageError(f"{path}: a directory without a {benchmark.name} file ({looked}); give the file itself")
    if not path.is_file():
        raise UsageError(f"{path}: file not found (benchmark {benchmark.name})")
    return path


def load_hub(benchmark: Benchmark, split: str | None = None) -> list[Question]:
    if benchmark.hub_id is None or benchmark.hub_loader is None:
        raise UsageError(f"benchmark {benchmark.name!r} has no hub dataset: give a local file with path=... "
                         f"(one JSON object per line with 'question' and optional 'id', 'answers', "
                         f"'incorrect_answers', 'label')")
    import datasets
    split = split or benchmark.hub_split
    where = f"{benchmark.hub_id}" + (f"/{benchmark.hub_config}" if benchmark.hub_config else "") + f" [{split}]"
    try:
        rows = datasets.load_dataset(benchmark.hub_id, benchmark.hub_config, split=split)
    except Exception as e:  # offline, unknown split, no access: all fixable by the user, so exit 2 with the cause
        raise UsageError(f"could not load {benchmark.name} from the hub ({where}): {type(e).__name__}: {e}; "
                         f"give path=<local file> to load it offline") from e
    return benchmark.hub_loader(rows, where)


def seeded_subset(questions: list[Question], limit: int | None, seed: int) -> list[Question]:
    """`limit` questions chosen by a seeded shuffle, kept in their original order (nested in `limit`)."""
    if limit is None or limit >= len(questions):
        return list(questions)
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    return [questions[i] for i in sorted(order[:limit])]


def load_benchmark(spec: BenchmarkSpec, seed: int = 0) -> list[Question]:
    """Questions of `spec.name` from `spec.path` (file or directory) or, with no path, from the hub."""
    benchmark = choose("benchmark", spec.name, BENCHMARKS)
    if spec.limit is not None and (isinstance(spec.limit, bool) or not isinstance(spec.limit, int) or spec.limit < 1):
        raise UsageError(f"benchmark {spec.name}: limit must be a positive integer, got {spec.limit!r}")
    if spec.path is not None:
        if spec.split is not None:
            raise UsageError(f"benchmark {spec.name}: split={spec.split!r} selects a hub split and cannot be "
                             f"combined with path={spec.path!r}; drop one of them")
        source = resolve_path(benchmark, spec.path)
        questions = benchmark.loader(source)
    else:
        source = benchmark.hub_id
        questions = load_hub(benchmark, spec.split)
    if not questions:
        raise UsageError(f"{source}: no questions in the {spec.name} benchmark")
    return seeded_subset(questions, spec.limit, seed)
