"""Benchmark 3: peak memory of DPO with LoRA vs SFT with LoRA on the same model.

Each trainer runs a few steps in a FRESH subprocess (`python -m benchmarks.memory ...`, below), so
neither inherits the other's allocator high-water mark. In the child, everything is imported and the
model, tokenizer and data are loaded first; then the baseline is the resident set size (RSS) at that
point, and the cost of the trainer is

    peak RSS of the child during trainer construction + training - baseline RSS

The peak is the kernel's high-water mark of the child's resident set, read as VmHWM from
/proc/self/status after resetting it to the current RSS at the baseline (write 5 to
/proc/self/clear_refs), so it covers exactly the trainer's construction and training. Plain
getrusage ru_maxrss would be wrong here: on Linux it inherits the launching parent's high-water mark
through fork/vfork + exec (observed: 690 MiB in a child whose own peak was 530 MiB); the child still
reports it as ru_maxrss_mib. tracemalloc would not see torch's allocations; RSS does. On CUDA the child also reports
torch.cuda.max_memory_allocated() - memory_allocated() after moving the model to the GPU.

What is matched: the same model, the same LoRA settings (train.stages.lora_config), the same
preference pairs and max_length. DPO forwards chosen AND rejected for each pair, so SFT trains on
both completions of every pair as separate (prompt, completion) rows with twice the batch size:
both trainers see the same sequences per step, and the DPO/SFT ratio isolates what the reference
model and the preference loss add. With a PEFT model and no ref_model, TRL's DPOTrainer uses the
model with the adapter disabled as the reference (trainer.ref_model is None: no second copy); the
child reports that attribute.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure.errors import UsageError, exit_on_usage_error
from measure.io import write_json
from measure.overrides import parse_overrides, pop_known

from benchmarks.subject import REPO, current_rss_bytes, peak_rss_bytes, reset_peak_rss, ru_maxrss_bytes

MiB = 1024 * 1024


def sft_rows_from_pairs(rows: list[dict]) -> list[dict]:
    """Each preference pair -> two SFT rows (prompt + chosen, prompt + rejected): the sequences DPO forwards."""
    return [{"prompt": r["prompt"], "completion": r[key]} for r in rows for key in ("chosen", "rejected")]


def child(trainer: str, model_dir: str, pairs: str, prompt_format: str, *, steps: int, pair_batch: int,
          max_length: int, lora: dict, threads: int) -> dict:
    """Train `steps` steps of `trainer` (sft|dpo) with LoRA and report memory; runs in its own process."""
    import datasets
    import torch
    from train import checkpoint as ckpt
    from train.data import load_training_data
    from train.stages import TRAINER_SPECS, lora_config, train_with_trl
    if threads > 0:
        torch.set_num_threads(threads)
    TRAINER_SPECS[trainer].trainer_class()   # import TRL's trainer module now, not inside the measured window
    model = ckpt.load_model(model_dir)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    tokenizer = ckpt.load_tokenizer(model_dir)
    pair_ds, _ = load_training_data(pairs, trainer="dpo", prompt_format=prompt_format, base_dir=REPO, where="pairs")
    if trainer == "sft":
        dataset, batch = datasets.Dataset.from_list(sft_rows_from_pairs(list(pair_ds))), 2 * pair_batch
    else:
        dataset, batch = pair_ds, pair_batch
    cuda = torch.cuda.is_available()
    if cuda:
        model.to("cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    gc.collect()
    peak_reset = reset_peak_rss()
    baseline, peak_before = current_rss_bytes(), peak_rss_bytes()
    cuda_base = torch.cuda.memory_allocated() if cuda else None
    args = {"max_steps": steps, "per_device_train_batch_size": batch, "max_length": max_length,
            "learning_rate": 1e-4, "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer_obj, metrics = train_with_trl(trainer, model=model, tokenizer=tokenizer, dataset=dataset, args=args,
                                              out=Path(tmp), seed=0, peft_config=lora_config(lora))
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    out = {
        "trainer": trainer, "steps": trainer_obj.state.global_step, "sequences_per_step": batch * (1 if trainer == "sft" else 2),
        "batch_size": batch, "rows": len(dataset), "seconds": seconds,
        "baseline_rss_mib": baseline / MiB, "peak_rss_mib": peak / MiB, "peak_rss_before_training_mib": peak_before / MiB,
        "delta_rss_mib": (peak - baseline) / MiB, "training_raised_peak": peak > peak_before,
        "peak_reset_at_baseline": peak_reset, "ru_maxrss_mib": ru_maxrss_bytes() / MiB,
        "parameters": metrics["parameters"], "weights_mib": weights / MiB, "peft": hasattr(trainer_obj.model, "disable_adapter"),
        "ref_model_is_none": getattr(trainer_obj, "ref_model", None) is None if trainer != "sft" else None,
        "cuda_delta_mib": (torch.cuda.max_memory_allocated() - cuda_base) / MiB if cuda else None,
    }
    return out


def run_child(trainer: str, model_dir: Path, pairs: Path, prompt_format: str, *, steps: int, pair_batch: int,
              max_length: int, lora: dict, threads: int, timeout: float = 600) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        cmd = [sys.executable, "-m", "benchmarks.memory", f"trainer={trainer}", f"model={model_dir}", f"pairs={pairs}",
               f"prompt_format={prompt_format}", f"steps={steps}", f"pair_batch={pair_batch}",
               f"max_length={max_length}", f"lora={json.dumps(lora)}", f"threads={threads}", f"out={out}"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"memory benchmark child ({trainer}) failed with exit {proc.returncode}:\n"
                               + proc.stderr[-3000:])
        return json.loads(out.read_text())


def benchmark_memory(model_dir: Path, pairs: Path, prompt_format: str, *, lora: dict, steps: int = 4,
                     pair_batch: int = 4, max_length: int = 64, threads: int = 1) -> dict:
    runs = {t: run_child(t, model_dir, pairs, prompt_format, steps=steps, pair_batch=pair_batch,
                         max_length=max_length, lora=lora, threads=threads) for t in ("sft", "dpo")}
    sft, dpo = runs["sft"], runs["dpo"]
    ratio = dpo["delta_rss_mib"] / sft["delta_rss_mib"] if sft["delta_rss_mib"] > 0 else None
    cuda_ratio = (dpo["cuda_delta_mib"] / sft["cuda_delta_mib"]
                  if sft["cuda_delta_mib"] and dpo["cuda_delta_mib"] is not None else None)
    headline = cuda_ratio if cuda_ratio is not None else ratio   # on a GPU the allocator's count is the sharper one
    return {
        "model": str(model_dir), "pairs": str(pairs), "lora": lora, "steps": steps, "pair_batch": pair_batch,
        "max_length": max_length, "sft": sft, "dpo": dpo,
        "dpo_over_sft_rss": ratio, "dpo_over_sft_cuda": cuda_ratio,
        "dpo_holds_separate_ref_model": not dpo["ref_model_is_none"],
        # what a frozen second copy of the model would add to DPO's delta (the thing the target guards against)
        "second_copy_would_add_mib": dpo["weights_mib"],
        "matched": "same model, LoRA, pairs and max_length; SFT trains on chosen and rejected as separate rows "
                   f"with batch {2 * pair_batch} vs DPO batch {pair_batch} pairs: {2 * pair_batch} sequences per step each",
        "targets": {"dpo_over_sft": {"value": headline, "target": "<= 1.2", "met": headline is not None and headline <= 1.2},
                    "no_separate_ref_model": {"value": "ref_model is None" if dpo["ref_model_is_none"] else "separate ref model",
                                              "target": "ref_model is None", "met": bool(dpo["ref_model_is_none"])}},
    }


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    opts = parse_overrides(sys.argv[1:] if argv is None else argv)
    known = pop_known(opts, {"trainer": None, "model": None, "pairs": None, "prompt_format": "qa", "steps": 4,
                             "pair_batch": 4, "max_length": 64, "lora": None, "threads": 1, "out": None})
    if opts:
        raise UsageError(f"unknown keys {', '.join(opts)}")
    if known["trainer"] not in ("sft", "dpo") or not known["model"] or not known["pairs"] or not known["out"]:
        raise UsageError("usage: python -m benchmarks.memory trainer=sft|dpo model=<dir> pairs=<jsonl> out=<json> "
                         "[prompt_format=qa] [steps=4] [pair_batch=4] [max_length=64] [lora={...}] [threads=1]")
    from train.recipe import LORA_DEFAULTS
    lora = {**LORA_DEFAULTS, **(known["lora"] if isinstance(known["lora"], dict) else json.loads(known["lora"] or "{}"))}
    result = child(known["trainer"], str(known["model"]), str(known["pairs"]), known["prompt_format"],
                   steps=int(known["steps"]), pair_batch=int(known["pair_batch"]), max_length=int(known["max_length"]),
                   lora=lora, threads=int(known["threads"]))
    write_json(known["out"], result)


if __name__ == "__main__":
    main()
