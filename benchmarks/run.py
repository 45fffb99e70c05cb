"""`make bench`: the toolkit's costs measured side by side in one run; prints tables, writes one JSON.

    python -m benchmarks.run [model=<dir>] [questions=<jsonl>] [out=benchmarks/results/bench.json]
                             [only=[throughput,forward_passes,memory,clustering,demo]]
                             [n_samples=10] [max_new_tokens=24] [limit=40] [repeats=3] [loop_repeats=2]
                             [threads=1] [batch_size=<int>] [prompt_format=chat|qa] [seed=0]
                             [memory_model=<dir>] [memory_steps=4] [memory_pair_batch=4] [demo=checkpoints/toy]

Parts (see each module's docstring for exactly what is matched):
  throughput      toolkit sampling pass vs per-sample reference loop (a) vs raw batched generate (b)
  forward_passes  forward calls per decode step in the toolkit's sampling pass (target: 0 extra)
  memory          peak RSS of DPO+LoRA vs SFT+LoRA in fresh subprocesses (target <= 1.2x, no ref copy)
  clustering      seconds per question per clusterer; NLI pair evaluations per question vs N^2
  demo            `make demo`'s wall time per stage, from <demo>/chain_timings.json (never runs the demo)

threads: torch intra-op threads for every timed method (1 by default: these tiny models gain nothing
from a second thread, and on a 2-core machine a second thread makes timings hostage to any other
load; 0 keeps torch's default).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from measure.errors import UsageError, exit_on_usage_error, suggest
from measure.io import provenance, read_json, write_json
from measure.overrides import parse_overrides

from benchmarks.subject import REPO, TOY_CHAIN, settings_record, table

PARTS = ("throughput", "forward_passes", "memory", "clustering", "demo")
DEFAULT_OUT = REPO / "benchmarks" / "results" / "bench.json"
OPTIONS: dict[str, Any] = {
    "model": None, "questions": None, "out": str(DEFAULT_OUT), "only": list(PARTS), "n_samples": 10,
    "max_new_tokens": 24, "limit": 40, "repeats": 3, "loop_repeats": 2, "threads": 1, "batch_size": None,
    "prompt_format": None, "seed": 0, "memory_model": None, "memory_steps": 4, "memory_pair_batch": 4,
    "demo": str(TOY_CHAIN),
}
POSITIVE = ("n_samples", "max_new_tokens", "limit", "repeats", "loop_repeats", "memory_steps", "memory_pair_batch")


def parse_options(argv: list[str]) -> dict[str, Any]:
    given = parse_overrides(argv)
    for key in given:
        if key not in OPTIONS:
            raise UsageError(f"unknown key {key!r}{suggest(key, OPTIONS)}")
    opts = {**OPTIONS, **given}
    only = opts["only"]
    only = [only] if isinstance(only, str) else only
    if not isinstance(only, list) or not only:
        raise UsageError(f"only: expected a list of parts, e.g. only=[throughput,memory]; valid: {', '.join(PARTS)}")
    for part in only:
        if part not in PARTS:
            raise UsageError(f"only: unknown part {part!r}{suggest(str(part), PARTS)}")
    opts["only"] = [p for p in PARTS if p in only]
    for key in (*POSITIVE, "batch_size"):
        value = opts[key]
        if value is None and key == "batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{key}: expected an integer >= 1, got {value!r}")
    for key in ("threads", "seed"):
        if isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < 0:
            raise UsageError(f"{key}: expected an integer >= 0, got {opts[key]!r}")
    if opts["prompt_format"] not in (None, "chat", "qa"):
        raise UsageError(f"prompt_format: expected chat or qa, got {opts['prompt_format']!r}")
    for key in ("model", "questions", "out", "memory_model", "demo"):
        if opts[key] is not None and not isinstance(opts[key], str):
            opts[key] = str(opts[key])
    return opts


# ---------------------------------------------------------------- printing

def print_throughput(r: dict) -> str:
    rows = [[name, r[key]["seconds"], r[key]["answer_tokens"], r[key]["tokens_per_s"], r[key]["generate_calls"]]
            for name, key in (("toolkit (measure.sample)", "toolkit"), ("(a) per-sample loop + 2nd pass", "loop"),
                              ("(b) raw batched generate", "floor"))]
    out = table(f"1. Throughput: {r['questions']} questions x (greedy + N={r['n_samples']}), "
                f"max_new_tokens={r['max_new_tokens']}, median of {r['repeats']} (loop: {r['loop_repeats']})",
                ["method", "seconds", "answer tokens", "tokens/s", "generate calls"], rows)
    inside = r["toolkit"]["inside_generate_seconds"]
    return out + (f"\n   toolkit time inside model.generate: {inside:.3g}s; outside (prompts, token statistics, "
                  f"cutting): {r['toolkit']['seconds'] - inside:.3g}s\n   (b) matched: {r['floor']['matched']}\n"
                  f"   (a)/toolkit per answer token = {r['loop_over_toolkit']:.3g}x (target >= 10); "
                  f"toolkit/(b) = {r['toolkit_over_floor']:.3g}x (target <= 1.25)")


def print_forward(r: dict) -> str:
    return table("2. Forward passes in the toolkit's sampling pass",
                 ["generate calls", "decode steps", "forward calls", "extra", "calls per answer token", "floor calls"],
                 [[r["generate_calls"], r["decode_steps"], r["forward_calls"], r["extra_forward_calls"],
                   r["forward_calls_per_answer_token"], r["floor_forward_calls"]]])


def print_memory(r: dict) -> str:
    rows = [[t.upper(), r[t]["sequences_per_step"], r[t]["baseline_rss_mib"], r[t]["peak_rss_mib"],
             r[t]["delta_rss_mib"], r[t]["cuda_delta_mib"], r[t]["seconds"]] for t in ("sft", "dpo")]
    out = table(f"3. Peak memory with LoRA ({r['steps']} steps, fresh subprocess each)",
                ["trainer", "seqs/step", "baseline RSS MiB", "peak RSS MiB", "delta MiB", "CUDA delta MiB", "seconds"], rows)
    ratio = r["dpo_over_sft_cuda"] if r["dpo_over_sft_cuda"] is not None else r["dpo_over_sft_rss"]
    return out + (f"\n   DPO/SFT delta = {ratio:.3g}x (target <= 1.2); DPO trainer holds a separate ref model: "
                  f"{'YES' if r['dpo_holds_separate_ref_model'] else 'no (trainer.ref_model is None: adapter disabled)'}"
                  f"\n   model weights {r['dpo']['weights_mib']:.3g} MiB (what a second copy would add); "
                  f"matched: {r['matched']}")


def print_clustering(r: dict) -> str:
    rows = []
    for name, c in r["clusterers"].items():
        rows.append([name, c["seconds_per_question"] * 1000, c["load_seconds"], c["mean_clusters"],
                     c.get("pairs_per_question")])
    out = table(f"4. Clustering cost: {r['questions']} questions x N={r['n_samples']} samples "
                f"({r['mean_distinct_texts']:.3g} distinct texts per question on average)",
                ["clusterer", "ms / question", "load s", "mean clusters", "NLI pairs / question"], rows)
    nli = r["clusterers"].get("nli")
    if nli:
        out += (f"\n   NLI pairs per question: stand-in {nli['pairs_per_question']:.3g}, bounds for any model "
                f"{nli['pairs_per_question_all_equivalent']:.3g} (all equivalent) .. "
                f"{nli['pairs_per_question_none_equivalent']:.3g} (none), vs N^2 = {nli['naive_pairs_per_question']}"
                f" ({nli['pairs_over_n_squared']:.3g} of N^2; worst case {nli['worst_case_over_n_squared']:.3g})"
                f"\n   NLI model: {nli['model']}")
    return out


def demo_timings(demo_dir: Path) -> dict:
    path = demo_dir / "chain_timings.json"
    if not path.exists():
        return {"found": False, "path": str(path),
                "message": f"{path} not found: run `make demo` first (the benchmark never runs the demo itself)"}
    timings = read_json(path)
    if not isinstance(timings, dict) or not all(isinstance(v, (int, float)) for v in timings.values()):
        raise UsageError(f"{path}: expected a JSON object of stage -> seconds")
    total = float(sum(timings.values()))
    return {"found": True, "path": str(path), "stages": timings, "total_seconds": total,
            "note": "as written by the last `python -m train.chain` run; stages it reused count only their reuse",
            "targets": {"demo_total_seconds": {"value": total, "target": "<= 300 (hard ceiling 600)", "met": total <= 300}}}


def print_demo(r: dict) -> str:
    if not r["found"]:
        return "5. Demo wall time\n" + r["message"]
    rows = [[stage, seconds, seconds / r["total_seconds"] if r["total_seconds"] else None]
            for stage, seconds in r["stages"].items()]
    rows.append(["total", r["total_seconds"], 1.0])
    return table(f"5. Demo wall time by stage ({r['path']})", ["stage", "seconds", "share"], rows) + f"\n   {r['note']}"


def target_rows(results: dict) -> list[list[Any]]:
    return [[part, name, t["value"], t["target"], "yes" if t["met"] else "NO"]
            for part, r in results.items() for name, t in (r.get("targets") or {}).items()]


# ---------------------------------------------------------------- main

def run(opts: dict[str, Any]) -> dict:
    import torch
    from benchmarks import subject as S
    only = opts["only"]
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    results: dict[str, Any] = {}
    blocks: list[str] = []
    info: dict[str, Any] = {"only": only, "threads": torch.get_num_threads(),
                            "device": "cuda" if torch.cuda.is_available() else "cpu"}
    needs_model = any(p in only for p in ("throughput", "forward_passes", "memory", "clustering"))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        if needs_model:
            from measure.pipeline import load_for_generation
            subject = S.choose_subject(opts["model"], opts["questions"], workdir)
            print(f"[bench] model: {subject.note}\n[bench] questions: {subject.questions_path}", flush=True)
            model, tokenizer = load_for_generation(str(subject.model_dir))
            settings, prompt_format = S.measure_settings(
                subject, tokenizer, n_samples=opts["n_samples"], max_new_tokens=opts["max_new_tokens"],
                batch_size=opts["batch_size"], prompt_format=opts["prompt_format"])
            questions = S.load_questions(subject, opts["limit"], opts["seed"])
            info.update(model=str(subject.model_dir), model_note=subject.note, questions=str(subject.questions_path),
                        n_questions=len(questions), parameters=sum(p.numel() for p in model.parameters()),
                        settings=settings_record(settings, prompt_format))
            rows = None
            if "throughput" in only:
                from benchmarks.throughput import benchmark_throughput
                print("[bench] 1. throughput (toolkit / per-sample loop / raw generate) ...", flush=True)
                results["throughput"], rows, forward = benchmark_throughput(
                    model, tokenizer, questions, settings, prompt_format, repeats=opts["repeats"],
                    loop_repeats=opts["loop_repeats"])
                blocks.append(print_throughput(results["throughput"]))
            elif "forward_passes" in only or "clustering" in only:
                from benchmarks.throughput import benchmark_forward_passes
                forward, rows = benchmark_forward_passes(model, tokenizer, questions, settings, prompt_format)
            if "forward_passes" in only:
                results["forward_passes"] = forward
                blocks.append(print_forward(forward))
            del model
            if "clustering" in only:
                from benchmarks.clustering import benchmark_clustering
                print("[bench] 4. clustering ...", flush=True)
                results["clustering"] = benchmark_clustering(rows, workdir, repeats=min(opts["repeats"], 3),
                                                             embedding_model=settings.embedding_model)
                blocks.append(print_clustering(results["clustering"]))
            if "memory" in only:
                from benchmarks.memory import benchmark_memory
                from train.recipe import LORA_DEFAULTS
                print("[bench] 3. memory (SFT and DPO with LoRA, one subprocess each) ...", flush=True)
                recipe_lora = (subject.recipe or {}).get("lora")
                lora = {**LORA_DEFAULTS, **(recipe_lora if isinstance(recipe_lora, dict) else {})}
                memory_model = Path(opts["memory_model"]) if opts["memory_model"] else subject.model_dir
                if not (memory_model / "config.json").exists():
                    raise UsageError(f"memory_model={memory_model}: no config.json there")
                results["memory"] = benchmark_memory(memory_model, subject.preference_path, prompt_format, lora=lora,
                                                     steps=opts["memory_steps"], pair_batch=opts["memory_pair_batch"],
                                                     threads=opts["threads"])
                blocks.append(print_memory(results["memory"]))
    if "demo" in only:
        results["demo"] = demo_timings(Path(opts["demo"]))
        blocks.append(print_demo(results["demo"]))
    order = {p: i for i, p in enumerate(PARTS)}
    results = dict(sorted(results.items(), key=lambda kv: order[kv[0]]))
    summary = target_rows(results)
    print("\n\n".join([*sorted(blocks, key=lambda b: b[:2]), table("Targets", ["part", "measure", "value", "target", "met"], summary)]))
    report = {"provenance": provenance(seed=opts["seed"]), "run": info,
              "options": {k: v for k, v in opts.items()}, **results,
              "targets": [dict(zip(("part", "measure", "value", "target", "met"), row)) for row in summary]}
    out = Path(opts["out"])
    write_json(out, report)
    print(f"\n[bench] wrote {out}")
    return report


@exit_on_usage_error
def main(argv: list[str] | None = None) -> dict:
    return run(parse_options(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
