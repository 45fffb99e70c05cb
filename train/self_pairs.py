"""Self-generated preference pairs: a stage's training data sampled from an earlier stage of the same chain.

    stages:
      modal:
        trainer: dpo
        from: base
        dataset: {self_pairs: {from: base, rule: modal, questions: {name: webquestions, path: ..., limit: 256},
                               n: 8, clusterer: exact, pairs: 200}}

`prepare` builds them when the stage runs (train/stages.py, before training; keys: recipe_spec.SelfPairsSpec):
 1. prompts: the benchmark's questions in file order (questions.offset, then .limit), checked disjoint from every
    evaluation question of the recipe's `measure` section (`check_disjoint`: the same benchmark and id, or the
    same normalized text, is a UsageError naming both; the chain checks it before anything runs);
 2. answers: N per prompt from the source stage with measure's sampler (`sample_questions`, the recipe's measure
    settings with n, temperature and max_new_tokens replaced, in the SOURCE stage's prompt format), through
    measure's resume cache <source>/self_samples/<key>.jsonl: sibling stages that sample the same stage with
    the same settings (the modal, divpo and random branches of a control) sample it once, and an interrupted
    sampling resumes;
 3. the named clusterer groups each prompt's answers; divpo's quality is the judge's verdict per answer where
    the question has gold answers (short-answer or TruthfulQA judge), else its mean token log-probability
    (`quality: logprob` forces the latter); one pair per prompt by the rule (train/pair_rules.py, which states
    and cites the rules), the first `pairs` of them kept;
 4. files in <stage>/self_pairs/: pairs.jsonl (TRL rows in the stage's prompt format -- the prompt as it was
    sampled, few-shot shots included in `qa` -- with the chosen and rejected answers), samples.jsonl (every
    prompt's answers with cluster, quality, and its pair or why it has none) and self_pairs.json (the
    settings, counts, the source stage.json hash and the key; written last).
The key hashes all the pairs depend on (the spec, the source's stage.json hash, the sampling settings and
seed, both prompt formats): a rerun or a resumed stage with the same key reuses the files; another key makes
new ones (and drops Trainer checkpoints that trained on the old ones). stage.json's dataset fingerprint
records `source_hash`, so train/reuse.py refuses a finished stage whose source stage was retrained since.
"""
from __future__ import annotations

import dataclasses
import gc
import random
import shutil
from collections import Counter
from pathlib import Path

from measure import (BenchmarkSpec, HFBackend, Question, ShortQAJudge, TruthfulQAJudge, format_prompt, load_benchmark,
                     make_clusterer, normalize_answer, sample_questions)
from measure.common.errors import UsageError
from measure.common.io import read_json, sha256_file, sha256_json, write_json, write_jsonl
from train import checkpoint as ckpt
from train.measure_stage import resolve_benchmark_path
from train.pair_rules import pick_pair
from train.paths import resolve_path
from train.recipe import Recipe
from train.recipe_spec import SelfPairsSpec

PAIRS_DIR = "self_pairs"       # <stage>/self_pairs/: pairs.jsonl, samples.jsonl, self_pairs.json
SAMPLES_DIR = "self_samples"   # <source stage>/self_samples/<key>.jsonl: the shared sampling cache
SHORT_ANSWER = ("nq_open", "webquestions", "jsonl")   # benchmarks the short-answer judge scores (measure's)
FIELDS = ("dataset", "heldout")   # a stage's training pairs, and a dpo stage's held-out pairs (train/dpo_effect.py)
CITATION = "Lanchantin et al. 2025, Diverse Preference Optimization, arXiv 2501.18101"


def pairs_spec(mapping: dict) -> SelfPairsSpec:
    return SelfPairsSpec(source=mapping["from"], **{k: v for k, v in mapping.items() if k != "from"})


def entries(dataset) -> list[tuple[int, SelfPairsSpec, dict, str]]:
    """(index, typed spec, spec as written, where-suffix) of every self_pairs entry of a stage's dataset."""
    specs = dataset if isinstance(dataset, list) else [dataset]
    return [(i, pairs_spec(one["self_pairs"]), one["self_pairs"], f"[{i}]" if isinstance(dataset, list) else "")
            for i, one in enumerate(specs) if isinstance(one, dict) and "self_pairs" in one]


def prompt_questions(recipe: Recipe, spec: SelfPairsSpec, where: str) -> list[Question]:
    q = spec.questions
    path = str(resolve_path(q["path"], recipe.base_dir)) if q.get("path") else None
    questions = load_benchmark(BenchmarkSpec(name=q["name"], path=path, split=q.get("split")))
    offset = q.get("offset", 0)
    if offset >= len(questions):
        raise UsageError(f"{where}.questions.offset: {offset} skips every question; {q['name']} has {len(questions)}")
    return questions[offset: offset + q["limit"] if q.get("limit") else None]


def evaluation_questions(recipe: Recipe) -> list[tuple[str, str, Question]]:
    """(where, benchmark, question) of every question the recipe measures, as measure loads them."""
    return [(f"measure.benchmarks[{i}] ({spec.name})", spec.name, q) for i, spec in enumerate(recipe.measure.benchmarks)
            for q in load_benchmark(resolve_benchmark_path(spec, recipe), seed=recipe.measure.seed)]


def check_disjoint(prompts: list[Question], benchmark: str, evals: list[tuple[str, str, Question]], where: str) -> None:
    """No prompt may be an evaluation question: the same benchmark and id, or the same normalized text."""
    by_id = {(name, q.id): (label, q) for label, name, q in evals}
    by_text = {normalize_answer(q.text): (label, q) for label, _, q in evals}
    hits = [(p, by_id.get((benchmark, p.id)) or by_text.get(normalize_answer(p.text))) for p in prompts]
    hits = [(p, hit) for p, hit in hits if hit]
    if hits:
        p, (label, q) = hits[0]
        raise UsageError(f"{where}.questions: {len(hits)} prompt(s) are evaluation questions, e.g. prompt {p.id!r} "
                         f"({p.text!r}) is question {q.id!r} ({q.text!r}) of {label}; pairs must be made on other "
                         "questions than the ones measured: choose other rows (questions.offset / limit) or another "
                         "benchmark")


def check_recipe(recipe: Recipe) -> None:
    """Every self_pairs dataset of the recipe: its prompts load and are disjoint from the evaluation questions,
    and a stage's held-out pairs' prompts from its training pairs' prompts."""
    evals = None
    for stage, spec in recipe.stages.items():
        trained = []
        for field in FIELDS:
            for _, pairs, _, suffix in entries(getattr(spec, field)):
                evals = evaluation_questions(recipe) if evals is None else evals
                where = f"stages.{stage}.{field}{suffix}.self_pairs"
                prompts = prompt_questions(recipe, pairs, where)
                check_disjoint(prompts, pairs.questions["name"], evals + trained, where)
                trained += [(f"the training pairs of stage {stage!r}", pairs.questions["name"], q) for q in prompts]


def sampling_settings(recipe: Recipe, spec: SelfPairsSpec):
    return dataclasses.replace(recipe.measure, benchmarks=(), n_samples=spec.n, temperature=float(spec.temperature),
                               max_new_tokens=spec.max_new_tokens, clusterers=(spec.clusterer,))


def _mean_logprob(sample) -> float | None:
    lp = sample.token_logprobs
    return sum(lp) / len(lp) if lp else None


def answer_quality(benchmark: str, rows, spec: SelfPairsSpec, settings) -> list[tuple[str, list]]:
    """Per prompt: ("judge", 1.0 correct / 0.0 incorrect / None) where the judge labels some answer, else
    ("logprob", the answers' mean token log-probabilities)."""
    judge = None
    if spec.quality == "auto" and benchmark == "truthfulqa":
        judge = TruthfulQAJudge(embedding_model=settings.embedding_model, margin=settings.judge_margin)
    elif spec.quality == "auto" and benchmark in SHORT_ANSWER:
        judge = ShortQAJudge()
    verdicts = judge.judge_many([r.question for r in rows for _ in r.samples], [s.text for r in rows for s in r.samples]) \
        if judge else []
    out, at = [], 0
    for r in rows:
        mine, at = verdicts[at:at + len(r.samples)], at + len(r.samples)
        if any(v in ("correct", "incorrect") for v in mine):
            out.append(("judge", [{"correct": 1.0, "incorrect": 0.0}.get(v) for v in mine]))
        else:
            out.append(("logprob", [_mean_logprob(s) for s in r.samples]))
    return out


def render(prompt_format: str, question: str, answer: str, fewshot) -> tuple:
    """(prompt, answer) as TRL takes them, in the stage's format: chat messages, or the `qa` text with the
    measurement's few-shot shots (so the prompt is the one the answers were sampled with)."""
    if prompt_format == "chat":
        return [{"role": "user", "content": question}], [{"role": "assistant", "content": answer}]
    return format_prompt(None, question, "qa", fewshot), " " + answer.strip() + "\n"


def make_pairs(rows, clusters, qualities, spec: SelfPairsSpec, *, seed: int, prompt_format: str, fewshot):
    """(pairs rows, samples rows, why prompts got no pair) by the rule, in question order, up to spec.pairs."""
    pairs, samples, skipped = [], [], Counter()
    for r, ids, (kind, quality) in zip(rows, clusters, qualities):
        sizes = Counter(ids)
        pick = pick_pair(spec.rule, ids, quality, rng=random.Random(f"{seed}:{r.question.id}"), judged=kind == "judge",
                         rho=spec.rho)
        full = spec.pairs is not None and len(pairs) >= spec.pairs
        row = {"id": r.question.id, "question": r.question.text, "greedy": r.greedy.text if r.greedy else None,
               "quality": kind, "samples": [{"text": s.text, "cluster": c, "cluster_size": sizes[c], "quality": q,
                                             "mean_logprob": _mean_logprob(s)} for s, c, q in zip(r.samples, ids, quality)]}
        if isinstance(pick, str) or full:
            skipped[pick if isinstance(pick, str) else "beyond the pairs asked for"] += 1
            samples.append({**row, "skipped": pick if isinstance(pick, str) else "beyond the pairs asked for"})
            continue
        chosen, rejected = pick
        prompt, good = render(prompt_format, r.question.text, r.samples[chosen].text, fewshot)
        _, bad = render(prompt_format, r.question.text, r.samples[rejected].text, fewshot)
        pairs.append({"id": r.question.id, "prompt": prompt, "chosen": good, "rejected": bad,
                      "chosen_text": r.samples[chosen].text, "rejected_text": r.samples[rejected].text,
                      "chosen_cluster_size": sizes[ids[chosen]], "rejected_cluster_size": sizes[ids[rejected]]})
        samples.append({**row, "pair": {"chosen": chosen, "rejected": rejected}})
    return pairs, samples, skipped


def sample_source(recipe: Recipe, spec: SelfPairsSpec, questions: list[Question], settings, cache: Path):
    """measure's sampler on the source stage's model, resuming from / filling the shared cache."""
    model, tokenizer = HFBackend().load(ckpt.model_source(recipe, spec.source))
    try:
        return sample_questions(model, tokenizer, questions, settings, recipe.prompt_format_of(spec.source),
                                cache_path=cache)
    finally:
        del model
        gc.collect()


def build(recipe: Recipe, stage: str, spec: SelfPairsSpec, written: dict, where: str, directory: Path,
          key: dict) -> tuple[Path, dict]:
    """Sample, cluster, pair and write one self_pairs dataset (module docstring); returns (pairs.jsonl, fingerprint)."""
    settings = sampling_settings(recipe, spec)
    questions = prompt_questions(recipe, spec, where)
    sampling = {k: key[k] for k in ("source_hash", "questions", "source_prompt_format", "sampling")}
    cache = ckpt.stage_dir(recipe, spec.source) / SAMPLES_DIR / f"{sha256_json(sampling)[:16]}.jsonl"
    print(f"[self_pairs] {stage}: sampling {spec.n} answers to {len(questions)} prompts from {spec.source!r} "
          f"(cache {cache})")
    rows = sample_source(recipe, spec, questions, settings, cache)
    clusterer = make_clusterer(spec.clusterer, embedding_model=settings.embedding_model, nli_model=settings.nli_model,
                               nli_batch_size=settings.nli_batch_size)
    clusters = clusterer.cluster_many([(r.question.text, [s.text for s in r.samples]) for r in rows])
    qualities = answer_quality(spec.questions["name"], rows, spec, settings) if spec.rule == "divpo" else \
        [("none", [None] * len(r.samples)) for r in rows]   # modal and random read no quality
    pairs, samples, skipped = make_pairs(rows, clusters, qualities, spec, seed=recipe.seed,
                                         prompt_format=recipe.stages[stage].prompt_format, fewshot=settings.fewshot)
    if spec.pairs is not None and len(pairs) < spec.pairs:
        raise UsageError(f"{where}.pairs: {spec.pairs} pairs asked for, but rule {spec.rule!r} made {len(pairs)} from "
                         f"{len(rows)} prompts (no pair: {dict(skipped)}); raise questions.limit or lower pairs "
                         f"(the answers are cached in {cache.parent})")
    if not pairs:
        raise UsageError(f"{where}: rule {spec.rule!r} made no pair from {len(rows)} prompts ({dict(skipped)})")
    directory.mkdir(parents=True, exist_ok=True)
    write_jsonl(directory / "samples.jsonl", samples)
    write_jsonl(directory / "pairs.jsonl", pairs)
    fingerprint = {"self_pairs": written, "source_stage": spec.source, "source_hash": key["source_hash"],
                   "file": str(directory / "pairs.jsonl"), "sha256": sha256_file(directory / "pairs.jsonl"),
                   "key": sha256_json(key), "prompts": len(rows), "pairs": len(pairs), "no_pair": dict(skipped)}
    write_json(directory / "self_pairs.json", {
        "fingerprint": fingerprint, "key": key, "clusterer": clusterer.settings(), "samples_cache": str(cache),
        "rule": spec.rule, "rules": "train/pair_rules.py" + (f" (divpo: {CITATION})" if spec.rule == "divpo" else ""),
        "quality": dict(Counter(kind for kind, _ in qualities)) if spec.rule == "divpo" else None})
    return directory / "pairs.jsonl", fingerprint


def prepare(recipe: Recipe, stage: str, field: str = "dataset") -> dict[int, tuple[Path, dict]]:
    """Entry index -> (pairs.jsonl, fingerprint) for every self_pairs entry of the stage's `dataset` (or of a
    dpo stage's `heldout`: <stage>/self_pairs-heldout/), built or reused."""
    items = entries(getattr(recipe.stages[stage], field))
    if not items:
        return {}
    check_recipe(recipe)
    out = {}
    for i, spec, written, suffix in items:
        where = f"stages.{stage}.{field}{suffix}.self_pairs"
        directory = ckpt.stage_dir(recipe, stage) / (PAIRS_DIR + ("-heldout" if field == "heldout" else "")
                                                      + suffix.strip("[]"))
        settings = sampling_settings(recipe, spec)
        key = {"spec": written, "seed": recipe.seed, "source_hash": ckpt.manifest_hash(ckpt.stage_dir(recipe, spec.source)),
               "questions": spec.questions, "source_prompt_format": recipe.prompt_format_of(spec.source),
               "prompt_format": recipe.stages[stage].prompt_format,
               "sampling": {k: getattr(settings, k) for k in ("n_samples", "temperature", "top_p", "max_new_tokens", "stop",
                                                              "fewshot", "seed", "decoder", "embedding_model")}}
        recorded = read_json(directory / "self_pairs.json")["fingerprint"] if (directory / "self_pairs.json").exists() else {}
        if recorded.get("key") == sha256_json(key) and (directory / "pairs.jsonl").exists() \
                and sha256_file(directory / "pairs.jsonl") == recorded.get("sha256"):
            print(f"[self_pairs] {stage}: reusing {directory / 'pairs.jsonl'} (same source, rule and settings)")
            out[i] = (directory / "pairs.jsonl", recorded)
            continue
        trainer_dir = ckpt.stage_dir(recipe, stage) / "trainer"
        if field == "dataset" and trainer_dir.exists():   # Trainer checkpoints of an interrupted run on other pairs: not resumable
            print(f"[self_pairs] {stage}: the pairs changed; dropping the Trainer checkpoints in {trainer_dir}")
            shutil.rmtree(trainer_dir)
        out[i] = build(recipe, stage, spec, written, where, directory, key)
    return out
