"""Measurement pipeline: model -> samples.jsonl -> questions.jsonl + report.

    measure_model(...)   sample a checkpoint on a benchmark, then score   (python -m measure run)
    score(...)           everything after sampling, on any samples file   (python -m measure score)
    measured_with(...)   what a report depends on besides the model (for reuse decisions by callers)
A recipe's stages are measured by train/measure_stage.py, which calls measure_model: this library knows
models, benchmarks and directories, never recipes.

Layout of one measurement dir: samples.jsonl (written once sampling is complete; while sampling,
samples.partial.jsonl is the resume cache -- samples.partial.rank<r>-of-<w>.jsonl per rank when
sharded), questions.jsonl, report.json, report.md, *.png.

Sharded measurement (same report as one process; timing and provenance aside):
    accelerate launch --num_processes 8 -m measure run model=<dir | hub id> benchmark=gsm8k out=<dir>
    accelerate launch --multi_gpu --num_processes 2 -m measure run ...   (CPU-only machine: 2 gloo ranks)
    torchrun --nproc_per_node 2 -m measure run ...                       (the same without accelerate's launcher)
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from measure.scoring.cluster import load_embedder, make_clusterer
from measure.scoring.homogeneity import MEASURES, needs_embeddings, question_homogeneity
from measure.scoring.config import BenchmarkSpec, MeasureSettings
from measure.scoring.correctness import make_judge, resolve_labels, summarize_judgements
from measure.common.errors import UsageError
from measure.common.io import provenance as make_provenance
from measure.common.machine import machine_info
from measure.common.io import sha256_file, to_jsonable
from measure.common.outputs import OutputPlan, check_outputs, claim_outputs, existing_inputs
from measure.sampling.model_source import resolve_model
from measure.sampling.ranks import CACHE, Ranks, ranks
from measure.records.records import (GenerationTiming, QuestionRecord, QuestionSamples, RunIdentity, read_samples,
                                     write_samples)
from measure.scoring.report import PLOTS, write_report
from measure.records.results import Report, ReportSettings, read_report, settings_from_json
from measure.sampling.sample_cache import cache_files, claim_cache, model_identity
from measure.scoring.signals import PAIRS_RULE, compute_signals, signal_work

def auto_judge(rows: list[QuestionSamples]) -> str:
    """Judge for a samples file of unknown origin: reference judge when wrong answers are listed,
    short-answer match when gold answers exist, else none (external `label`s still apply)."""
    if any(r.question.incorrect_answers for r in rows):
        return "truthfulqa"
    return "short_qa" if any(r.question.answers for r in rows) else "none"


def recorded_settings(samples_path: Path) -> ReportSettings:
    """The settings of the `measure run` that made these samples (its report.json beside samples.jsonl;
    an empty block when there is none)."""
    here = samples_path.parent
    return read_report(here).settings if (here / "report.json").exists() else settings_from_json({}, [])


@dataclass(frozen=True)
class ScoredRows:
    """What score_rows computed from a samples file."""
    records: list[QuestionRecord]
    skipped: dict[str, str]                 # signal key -> why no question has it
    homogeneity_skipped: dict[str, str]     # homogeneity measure key -> why (a question lacks it)
    clusterers: dict[str, dict]             # clusterer label -> Clusterer.settings(), in settings order
    clusterer_seconds: dict[str, float]     # clusterer label -> seconds clustering every question
    judge_seconds: float                    # seconds judging every greedy answer
    judge: dict                             # the judge's settings (Judge.settings())


def score_rows(rows: list[QuestionSamples], settings: MeasureSettings, judge: str) -> ScoredRows:
    """Cluster every question's samples with every clusterer, compute signals, judge the greedy answer."""
    clusterers = [make_clusterer(spec, embedding_model=settings.embedding_model, nli_model=settings.nli_model,
                                 nli_batch_size=settings.nli_batch_size) for spec in settings.clusterers]
    labels = [c.label for c in clusterers]
    if len(set(labels)) != len(labels):
        raise UsageError(f"clusterers: two entries have the same label ({', '.join(labels)}); give distinct settings")
    items = [(r.question.text, [s.text for s in r.samples]) for r in rows]
    assignments: dict[str, list[list[int]]] = {}
    seconds: dict[str, float] = {}
    for clusterer in clusterers:
        started = time.perf_counter()
        assignments[clusterer.label] = clusterer.cluster_many(items)
        seconds[clusterer.label] = time.perf_counter() - started
    skipped: dict[str, str] = {}
    values_per_question = []
    for i, row in enumerate(rows):
        values, reasons = compute_signals(row, {label: assignments[label][i] for label in labels}, settings.signals)
        values_per_question.append(values)
        for key, why in reasons.items():
            skipped.setdefault(key, why)
    homogeneity, h_why = _homogeneity(rows, assignments, settings)
    started = time.perf_counter()
    judge_obj = make_judge(judge, embedding_model=settings.embedding_model, margin=settings.judge_margin)
    answers = [r.greedy.text if r.greedy else None for r in rows]
    judgements = judge_obj.judge_many([r.question for r in rows], answers)
    judge_s = time.perf_counter() - started
    labels_bool = resolve_labels([r.question for r in rows], judgements, settings.ambiguous)
    records = [QuestionRecord(id=r.question.id, n_clusters={lb: len(set(assignments[lb][i])) for lb in labels},
                              clusters={lb: assignments[lb][i] for lb in labels}, signals=values_per_question[i],
                              label=labels_bool[i], judgement=judgements[i], homogeneity=homogeneity[i])
               for i, r in enumerate(rows)]
    # a key is "skipped" only if no question has it
    skipped = {k: why for k, why in skipped.items() if all(v.get(k) is None for v in values_per_question)}
    return ScoredRows(records, skipped, h_why, {c.label: c.settings() for c in clusterers}, seconds, judge_s,
                      judge_obj.settings())


def _homogeneity(rows: list[QuestionSamples], assignments: dict[str, list[list[int]]],
                 settings: MeasureSettings) -> tuple[list[dict], dict[str, str]]:
    """Every question's continuous homogeneity measures (measure.scoring.homogeneity), and per key the first
    reason a question lacks it. Embeddings come from the run's embedding model (settings.embedding_model),
    each distinct text encoded once for the whole run."""
    names = list(MEASURES) if settings.homogeneity is None else list(settings.homogeneity)
    vectors = {}
    if needs_embeddings(names):
        texts = list(dict.fromkeys(s.text for r in rows if len(r.samples) > 1 for s in r.samples))
        if texts:
            emb = load_embedder(settings.embedding_model).encode(texts, convert_to_numpy=True)
            vectors = dict(zip(texts, emb))
    out, why = [], {}
    for i, r in enumerate(rows):
        texts = [s.text for s in r.samples]
        emb = [vectors[t] for t in texts] if vectors and len(texts) > 1 else None
        values, reasons = question_homogeneity(texts, {lb: a[i] for lb, a in assignments.items()}, emb, names)
        out.append(values)
        for key, reason in reasons.items():
            why.setdefault(key, reason)
    return out, why


def settings_block(settings: MeasureSettings, clusterers: dict, judge: dict, extra: dict | None = None) -> dict:
    block = {k: v for k, v in dataclasses.asdict(settings).items() if k not in ("benchmarks", "clusterers")}
    block.update({"N": settings.n_samples, "T": settings.temperature, "clusterers": clusterers, "judge": judge,
                  **(extra or {})})
    if settings.signals is None or "lexical_dissimilarity" in settings.signals:   # its bounded pair rule, stated
        block["signal_rules"] = {"lexical_dissimilarity": PAIRS_RULE}
    return block


def timing_block(n_questions: int, gen: GenerationTiming, clusterer_seconds: dict[str, float], judge_seconds: float,
                 signal_keys: list[str]) -> dict:
    """Seconds per question of each piece of work (greedy pass, sampling, each clusterer, the judge), the
    work each signal needs (measure.scoring.signals.signal_work: greedy signals the greedy pass, lexical
    dissimilarity the samples, a clusterer's signals sampling + that clusterer) and each signal's
    standalone cost, the sum of its work. Signals computed together share work: their cost is the sum
    over the UNION of their work, each piece paid once (measure.analysis.cascade); the judge is never a signal's cost."""
    per_q = lambda s: s / max(n_questions, 1)  # noqa: E731
    parts = {"greedy": per_q(gen.greedy_s), "sampling": per_q(gen.sampling_s),
             **{lb: per_q(s) for lb, s in clusterer_seconds.items()}, "judge": per_q(judge_seconds)}
    work = {key: list(w) for key in signal_keys if (w := signal_work(key)) is not None}
    # 0 s means "not measured" (a scored samples file has no generation time): no standalone cost then
    standalone = {key: sum(parts[u] for u in w) for key, w in work.items() if all(parts.get(u, 0) > 0 for u in w)}
    return {"seconds_per_question": {**parts, **standalone}, "work": work, "measured_generation": gen.measured}


def score(rows: list[QuestionSamples], settings: MeasureSettings, out_dir: Path, *, judge: str,
          provenance: dict, extra_settings: dict | None = None, generation_timing: GenerationTiming | None = None) -> Report:
    scored = score_rows(rows, settings, judge)
    signal_keys = sorted({k for r in scored.records for k in r.signals})
    extra = {"timing": timing_block(len(rows), generation_timing or GenerationTiming(), scored.clusterer_seconds,
                                    scored.judge_seconds, signal_keys),
             "judgements": summarize_judgements([r.judgement for r in scored.records])}
    return write_report(out_dir, scored.records, settings_block(settings, scored.clusterers, scored.judge, extra_settings),
                        provenance, list(scored.clusterers), scored.skipped, homogeneity_skipped=scored.homogeneity_skipped,
                        n_boot=settings.bootstrap,
                        seed=settings.seed, extra=extra)


def measurement_plan(out_dir: Path, inputs, *, command: str, sampled: bool, world: int = 1) -> OutputPlan:
    """What a measurement writes into out_dir (measure.common.outputs): the samples and every rank's resume
    cache when it samples, then questions.jsonl, the report and its plots; report.json marks it finished."""
    caches = [Ranks(r, world).cache_name() for r in range(world)]
    sampling = ("samples.jsonl", *(p.name for c in caches for p in cache_files(Path(c)))) if sampled else ()
    return OutputPlan(command, "measurement", Path(out_dir), files=(*sampling, "questions.jsonl", "report.json",
                                                                    "report.md", *PLOTS),
                      inputs=existing_inputs(inputs), marker="report.json", legacy=("report.json", CACHE),
                      what="a finished measurement", again="measure again")


def model_inputs(model_source: str) -> list[Path]:
    """The local files a model reference loads (none for a hub id or package)."""
    path = Path(model_source).expanduser()
    if not path.exists() or model_source.startswith("pkg:"):
        return []
    return [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]


def benchmark_inputs(spec: BenchmarkSpec) -> list[Path]:
    from measure.data.benchmarks import BENCHMARKS
    if spec.path is None:
        return []
    path = Path(spec.path).expanduser()
    names = BENCHMARKS[spec.name].filenames if spec.name in BENCHMARKS else ()
    return [path / n for n in names] if path.is_dir() else [path]


def measure_model(model_source: str, spec: BenchmarkSpec, settings: MeasureSettings, out_dir: Path, *,
                  prompt_format: str, provenance: dict, overwrite: bool = False, identity: RunIdentity | None = None,
                  shard: bool = True) -> Report:
    """Sample `model_source` (a merged dir, a PEFT adapter dir, a hub id, a .gguf file or pkg:<package>;
    measure/sampling/model_source.py) on one benchmark and score it.

    Sharded (`accelerate launch -m measure run ...`): each rank loads the model on its device and samples
    its batches into its own resume cache; rank 0 gathers the rows in question order, writes
    samples.jsonl and scores; every rank returns the report. shard=False: a process measuring alone
    while other processes of its launch do something else (the training scripts' main process).
    identity: the caller's name for this run (measure.records.records.RunIdentity): its model_key ties the
    resume cache to the model, its labels are recorded in the report's settings. The backend and its
    settings (settings.backend, settings.vllm_logprobs) are measure settings like the rest.
    Returns the Report (measure.records.results) that report.json holds."""
    from measure.sampling.backends import make_backend
    from measure.data.benchmarks import BENCHMARKS, load_benchmark
    out_dir = Path(out_dir)
    where = ranks(shard)
    engine = make_backend(settings.backend, vllm_logprobs=settings.vllm_logprobs)
    engine.check((where.rank, where.world))
    outputs = measurement_plan(out_dir, [*benchmark_inputs(spec), *model_inputs(model_source)], command="measure run",
                               sampled=True, world=where.world)
    check_outputs(outputs, overwrite)   # every rank, before the benchmark or the model is loaded
    with where.main_first():
        questions = load_benchmark(spec, seed=settings.seed)
    with where.main_first():  # rank 0 converts a GGUF first; the other ranks then reuse its cache
        resolved = resolve_model(model_source)
        model, tokenizer = engine.load(resolved.path, str(where.state.device) if where.world > 1 else None)
    # batches and rows per decode call (None: the backend schedules); refuses a call too big for the device
    plan = engine.plan(model, settings)
    cache = out_dir / where.cache_name()
    if where.main:   # the first write: every check above has passed
        claim_outputs(outputs)
    if overwrite and (out_dir / "report.json").exists():
        for path in ((out_dir / "samples.jsonl") if where.main else None, *cache_files(cache)):
            if path is not None:
                path.unlink(missing_ok=True)
    where.barrier()
    from measure.sampling.sample import GenerationClock   # torch: only where a model samples
    clock = GenerationClock()
    claim_cache(cache, model_identity(resolved.path, identity))  # never resume another model's samples
    rows = engine.sample(model, tokenizer, questions, settings, prompt_format, cache_path=cache, clock=clock,
                         shard=(where.rank, where.world))
    dtype = getattr(model, "dtype", None)   # an HF model's (vLLM's engine has none: its own setting)
    del model
    rows, gen_timing = where.gather(rows, clock.timing(), questions)
    if where.main:
        write_samples(out_dir / "samples.jsonl", rows)
    where.barrier()  # samples.jsonl is safe on disk before any rank drops its cache
    for path in (*cache_files(cache), *(out_dir.glob("samples.partial*") if where.main else ())):  # incl. other world sizes' caches
        path.unlink(missing_ok=True)
    report = None
    if where.main:
        extra = {"benchmark": dataclasses.asdict(spec), "model": model_source, "model_files": resolved.provenance(),
                 "prompt_format": prompt_format, "model_dtype": str(dtype).removeprefix("torch.") if dtype else None,
                 "max_new_tokens": settings.max_new_tokens, **engine.settings(), **(identity.labels if identity else {}),
                 **({"decode_plan": plan} if plan else {})}
        report = score(rows, settings, out_dir, judge=spec.judge or BENCHMARKS[spec.name].judge,
                       # the machine block read again now that torch has done the arithmetic (threads, kernels)
                       provenance={**provenance, "machine": machine_info(), "processes": where.world},
                       extra_settings=extra,
                       generation_timing=gen_timing)
    return where.broadcast(report)


def measured_with(settings: MeasureSettings, spec: BenchmarkSpec, prompt_format: str) -> dict:
    """What a stage's report depends on besides the model: every setting that changes samples or scores
    (batch sizes and rows per call do not), the prompt format, and the benchmark -- its file by content."""
    block = {k: v for k, v in dataclasses.asdict(settings).items()
             if k not in ("benchmarks", "batch_size", "rows_per_call", "nli_batch_size", "max_samples")}
    bench = dataclasses.asdict(spec)
    if spec.judge is None:   # the benchmark's own judge: recorded as before the key existed (reports stay reusable)
        del bench["judge"]
    if spec.path and Path(spec.path).is_file():
        bench["path"] = {"sha256": sha256_file(spec.path)}
    return to_jsonable({**block, "benchmark": bench, "prompt_format": prompt_format})


def score_file(samples_path: Path, out_dir: Path, settings: MeasureSettings, *, judge: str | None,
               overwrite: bool) -> Report:
    """Score a samples file. N is what the file holds; T, top_p and max_new_tokens come from the
    report of the run that sampled it when one sits beside it, else they are recorded as unknown."""
    out_dir, samples_path = Path(out_dir), Path(samples_path)
    plan = measurement_plan(out_dir, [samples_path, samples_path.parent / "report.json"], command="measure score",
                            sampled=False)
    check_outputs(plan, overwrite)   # before the samples are read and scored
    rows = read_samples(samples_path, settings.max_samples)
    recorded = recorded_settings(samples_path)
    judge = judge or recorded.judge_name or auto_judge(rows)
    counts = sorted({len(r.samples) for r in rows})
    n = counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    extra = {"samples": str(samples_path), "N": n, "n_samples": n,
             "T": recorded.temperature, "temperature": recorded.temperature, "top_p": recorded.top_p,
             "max_new_tokens": recorded.max_new_tokens,
             **{k: recorded.get(k) for k in ("model", "benchmark", "prompt_format", "backend")},
             "entropy": recorded.get("entropy", "as recorded in the samples file")}
    claim_outputs(plan)
    return score(rows, settings, out_dir, judge=judge, provenance=make_provenance(seed=settings.seed),
                 extra_settings=extra)
