"""Benchmark 3: peak memory of DPO with LoRA vs SFT with LoRA on the same model.

Each run trains a few steps in a FRESH subprocess (`python -m harness.memory ...`, below), so none
inherits another's allocations. In the child, everything is imported, the model, tokenizer and data
are loaded and every weight is read once (safetensors weights are memory-mapped and would otherwise
become resident only during training); then the baseline is taken, and the trainer's cost is

    delta = peak RSS during trainer construction + training - RSS at the baseline

The peak is the kernel's high-water mark of the child's resident set (VmHWM in /proc/self/status),
reset to the current RSS at the baseline (write 5 to /proc/self/clear_refs). getrusage's ru_maxrss
would be wrong here: on Linux it inherits the launching parent's high-water mark through
fork/vfork + exec (observed: 683 MiB in a child whose own peak was 528 MiB, launched after the
parent had loaded the clustering models); the child still reports it as ru_maxrss_mib. tracemalloc
would not see torch's allocations; RSS does. On CUDA the child also reports
torch.cuda.max_memory_allocated() - memory_allocated() after moving the model to the GPU.

What is matched: the same model, LoRA settings (train.stages.lora_config), preference pairs and
max_length, through train.stages.train_with_trl. DPO forwards chosen AND rejected for each pair, so
SFT trains on both completions of every pair as separate (prompt, completion) rows with twice the
batch size: both trainers see the same sequences per step, and DPO/SFT isolates what the reference
model and the preference loss add. With a PEFT model and no ref_model, TRL's DPOTrainer uses the
model with its adapter disabled as the reference (trainer.ref_model is None: no second copy).

Control (`dpo_ref_copy`): the same DPO run handed an explicit frozen copy of the model as ref_model
(loaded after the baseline), i.e. what the target guards against. It shows how large a second copy
is under this very measurement -- on a tiny model (a few MiB of weights against tens of MiB of trainer
overhead) RSS cannot tell the two apart, and trainer.ref_model is the evidence that counts.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from measure import load_tokenizer
from measure.common.errors import UsageError, exit_on_usage_error
from measure.common.io import write_json
from measure.common.cli_args import parse_cli

from harness.subject import REPO, current_rss_bytes, peak_rss_bytes, reset_peak_rss, ru_maxrss_bytes

MiB = 1024 * 1024
RUNS = ("sft", "dpo", "dpo_ref_copy")


def sft_rows_from_pairs(rows: list[dict]) -> list[dict]:
    """Each preference pair -> two SFT rows (prompt + chosen, prompt + rejected): the sequences DPO forwards."""
    return [{"prompt": r["prompt"], "completion": r[key]} for r in rows for key in ("chosen", "rejected")]


def _train(run: str, *, model, model_dir: str, tokenizer, dataset, args: dict, lora: dict, out: Path):
    """train.stages.train_with_trl for sft/dpo; the control builds the same DPO trainer with a ref copy."""
    from train import checkpoint as ckpt
    from train.recipe import LoraSpec
    from train.stages import build_config, lora_config, train_with_trl
    from train.trainers import TRAINER_SPECS
    peft_config = lora_config(LoraSpec(**lora))
    if run != "dpo_ref_copy":
        return train_with_trl(run, model=model, tokenizer=tokenizer, dataset=dataset, args=args, out=out, seed=0,
                              peft_config=peft_config)[0]
    ref = ckpt.load_model(model_dir).to(model.device)
    trainer = TRAINER_SPECS["dpo"].trainer_class()(
        model=model, ref_model=ref, args=build_config("dpo", args, out / "trainer", 0), train_dataset=dataset,
        processing_class=tokenizer, peft_config=peft_config)
    trainer.train()
    return trainer


def child(run: str, model_dir: str, pairs: str, prompt_format: str, *, steps: int, pair_batch: int,
          max_length: int, lora: dict, threads: int) -> dict:
    """Train `steps` steps of `run` (one of RUNS) with LoRA and report memory; runs in its own process."""
    import datasets
    import torch
    from train import checkpoint as ckpt
    from train.data import load_training_data
    from train.trainers import TRAINER_SPECS
    if threads > 0:
        torch.set_num_threads(threads)
    trainer_name = "sft" if run == "sft" else "dpo"
    TRAINER_SPECS[trainer_name].trainer_class()   # import TRL's trainer module now, not inside the measured window
    model = ckpt.load_model(model_dir)
    tokenizer = load_tokenizer(model_dir)
    pair_ds, _ = load_training_data(pairs, trainer="dpo", prompt_format=prompt_format, base_dir=REPO, where="pairs")
    if run == "sft":
        dataset, batch = datasets.Dataset.from_list(sft_rows_from_pairs(list(pair_ds))), 2 * pair_batch
    else:
        dataset, batch = pair_ds, pair_batch
    cuda = torch.cuda.is_available()
    if cuda:
        model.to("cuda")
    with torch.no_grad():
        for p in model.parameters():
            p.detach().sum()   # reading every weight makes memory-mapped safetensors pages resident now
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    if cuda:
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
        trainer = _train(run, model=model, model_dir=model_dir, tokenizer=tokenizer, dataset=dataset, args=args,
                         lora=lora, out=Path(tmp))
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    return {
        "run": run, "trainer": trainer_name, "steps": trainer.state.global_step,
        "sequences_per_step": batch * (1 if run == "sft" else 2), "batch_size": batch, "rows": len(dataset),
        "seconds": seconds, "baseline_rss_mib": baseline / MiB, "peak_rss_mib": peak / MiB,
        "delta_rss_mib": (peak - baseline) / MiB, "peak_reset_at_baseline": peak_reset,
        "training_raised_peak": peak > peak_before, "ru_maxrss_mib": ru_maxrss_bytes() / MiB,
        "weights_mib": weights / MiB,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "peft": hasattr(trainer.model, "disable_adapter"),
        "ref_model_is_none": getattr(trainer, "ref_model", None) is None if run != "sft" else None,
        "cuda_delta_mib": (torch.cuda.max_memory_allocated() - cuda_base) / MiB if cuda else None,
    }


def run_child(run: str, model_dir: Path, pairs: Path, prompt_format: str, *, steps: int, pair_batch: int,
              max_length: int, lora: dict, threads: int, timeout: float = 600) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        cmd = [sys.executable, "-m", "harness.memory", f"run={run}", f"model={model_dir}", f"pairs={pairs}",
               f"prompt_format={prompt_format}", f"steps={steps}", f"pair_batch={pair_batch}",
               f"max_length={max_length}", f"lora={json.dumps(lora)}", f"threads={threads}", f"out={out}"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"memory benchmark child ({run}) failed with exit {proc.returncode}:\n" + proc.stderr[-3000:])
        return json.loads(out.read_text())


def benchmark_memory(model_dir: Path, pairs: Path, prompt_format: str, *, lora: dict, steps: int = 4,
                     pair_batch: int = 4, max_length: int = 64, threads: int = 1, control: bool = True) -> dict:
    runs = {r: run_child(r, model_dir, pairs, prompt_format, steps=steps, pair_batch=pair_batch, max_length=max_length,
                         lora=lora, threads=threads) for r in RUNS if control or r != "dpo_ref_copy"}
    sft, dpo = runs["sft"], runs["dpo"]
    on_cuda = sft["cuda_delta_mib"] is not None
    key = "cuda_delta_mib" if on_cuda else "delta_rss_mib"   # on a GPU the allocator's count is the sharper one

    def over_sft(run: dict) -> float | None:
        return run[key] / sft[key] if sft[key] and sft[key] > 0 else None

    ratio = over_sft(dpo)
    result = {
        "model": str(model_dir), "pairs": str(pairs), "lora": lora, "steps": steps, "pair_batch": pair_batch,
        "max_length": max_length, "measure": "CUDA max_memory_allocated" if on_cuda else "RSS high-water mark (VmHWM)",
        **runs, "dpo_over_sft": ratio,
        "dpo_over_sft_rss": dpo["delta_rss_mib"] / sft["delta_rss_mib"] if sft["delta_rss_mib"] > 0 else None,
        "dpo_ref_copy_over_sft": over_sft(runs["dpo_ref_copy"]) if "dpo_ref_copy" in runs else None,
        "dpo_holds_separate_ref_model": not dpo["ref_model_is_none"],
        "matched": "same model, LoRA, pairs and max_length; SFT trains on chosen and rejected as separate rows "
                   f"with batch {2 * pair_batch} vs DPO batch {pair_batch} pairs: {2 * pair_batch} sequences per step each",
        "targets": {"dpo_over_sft": {"value": ratio, "target": "<= 1.2", "met": ratio is not None and ratio <= 1.2},
                    "no_separate_ref_model": {"value": "ref_model is None" if dpo["ref_model_is_none"] else "separate ref model",
                                              "target": "ref_model is None", "met": bool(dpo["ref_model_is_none"])}},
    }
    return result


@exit_on_usage_error
@dataclass(frozen=True)
class Options:
    """The child's options (harness.run's memory part launches it)."""
    run: str | None = field(default=None, metadata={"help": "which run", "choices": tuple(RUNS)})
    model: str | None = field(default=None, metadata={"help": "model dir"})
    pairs: str | None = field(default=None, metadata={"help": "preference pairs JSONL"})
    prompt_format: str = field(default="qa", metadata={"help": "chat, hh or qa"})
    steps: int = field(default=4, metadata={"help": "training steps"})
    pair_batch: int = field(default=4, metadata={"help": "preference pairs per step"})
    max_length: int = field(default=64, metadata={"help": "tokens per sequence at most"})
    lora: dict | str | None = field(default=None, metadata={"help": "LoraSpec keys (a mapping or JSON)"})
    threads: int = field(default=1, metadata={"help": "torch threads"})
    out: str | None = field(default=None, metadata={"help": "the JSON written"})


def main(argv: list[str] | None = None) -> None:
    from train.recipe import LoraSpec
    known, opts = parse_cli(argv, __doc__, Options)
    if opts:
        raise UsageError(f"unknown keys {', '.join(opts)}")
    if known["run"] not in RUNS or not known["model"] or not known["pairs"] or not known["out"]:
        raise UsageError(f"usage: python -m harness.memory run={'|'.join(RUNS)} model=<dir> pairs=<jsonl> out=<json> "
                         "[prompt_format=qa] [steps=4] [pair_batch=4] [max_length=64] [lora={...}] [threads=1]")
    lora = LoraSpec(**(known["lora"] if isinstance(known["lora"], dict) else json.loads(known["lora"] or "{}"))).settings()
    result = child(known["run"], str(known["model"]), str(known["pairs"]), known["prompt_format"],
                   steps=int(known["steps"]), pair_batch=int(known["pair_batch"]), max_length=int(known["max_length"]),
                   lora=lora, threads=int(known["threads"]))
    write_json(known["out"], result)


if __name__ == "__main__":
    main()
