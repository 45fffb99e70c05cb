"""Benchmark 7: what measuring homogenization during training costs (measure.live's HomogenizationCallback).

Two readings, both as shares of training wall time (target: the callback's share <= 15%):
  live    the subject model trained `steps` DPO steps with LoRA twice in this process, through the chain's
          own train.stages.train_with_trl, without and with the callback (probe: `limit` questions every
          `every` steps, and before the first step): the wall seconds of each training, the callback's own
          seconds (its records' `seconds`), its share of the training with it, the with/without ratio, and
          whether the two runs' weights are bitwise equal (they must be: measure/sampling/preserve.py).
  chains  chains already run with `measure.during_training` (default: the toy demo's checkpoints/toy; the
          Gemma recipe's when given): per stage, the seconds its dynamics.jsonl records took over the
          stage's train_runtime (stage.json). Read, never run here.
Both give seconds per measurement E and per optimizer step T, hence the interval that keeps the share at
15%: share = E / (E + every * T) <= 0.15 needs every >= E * 0.85 / (0.15 * T) (`every_for_15_percent`).
One run's timings on a shared machine are noisy; the ratio is what the lead reports.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from measure import DYNAMICS_FILE, HomogenizationCallback, load_tokenizer, read_probe_records
from measure.common.io import read_json

from harness.subject import REPO, table

TARGET = 0.15


def every_for(seconds_per_measurement: float, seconds_per_step: float, share: float = TARGET) -> int | None:
    """The smallest interval (optimizer steps) at which measuring costs at most `share` of training."""
    if seconds_per_step <= 0:
        return None
    return max(1, math.ceil(seconds_per_measurement * (1 - share) / (share * seconds_per_step)))


def _train(model_dir: Path, tokenizer, dataset, *, steps: int, lora: dict, callback=None):
    from train import checkpoint as ckpt
    from train.recipe import LoraSpec
    from train.stages import lora_config, train_with_trl
    args = {"max_steps": steps, "per_device_train_batch_size": 4, "max_length": 64, "learning_rate": 1e-4,
            "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        trainer, _ = train_with_trl("dpo", model=ckpt.load_model(str(model_dir)), tokenizer=tokenizer, dataset=dataset,
                                    args=args, out=Path(tmp), seed=0, peft_config=lora_config(LoraSpec(**lora)),
                                    callbacks=[callback] if callback else [])
        seconds = time.perf_counter() - started
        records = read_probe_records(Path(tmp) / "trainer" / DYNAMICS_FILE)
    return seconds, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, records


def benchmark_live(model_dir: Path, pairs: Path, prompt_format: str, questions, settings, *, steps: int, every: int,
                   lora: dict) -> dict:
    import torch
    from train.data import load_training_data
    tokenizer = load_tokenizer(str(model_dir))
    dataset, _ = load_training_data(str(pairs), trainer="dpo", prompt_format=prompt_format, base_dir=REPO, where="pairs")
    without, plain, _ = _train(model_dir, tokenizer, dataset, steps=steps, lora=lora)
    probe = lambda trainer: HomogenizationCallback(trainer, questions, every=every, settings=settings,  # noqa: E731
                                                   prompt_format=prompt_format)
    with_cb, probed, records = _train(model_dir, tokenizer, dataset, steps=steps, lora=lora, callback=probe)
    measuring = sum(r.seconds for r in records)
    per_step = (with_cb - measuring) / steps
    per_measurement = measuring / max(1, len(records))
    share = measuring / with_cb if with_cb > 0 else None
    equal = all(torch.equal(plain[k], probed[k]) for k in plain)
    return {"steps": steps, "every": every, "questions": len(questions), "n_samples": settings.n_samples,
            "measurements": len(records), "train_seconds_without": without, "train_seconds_with": with_cb,
            "callback_seconds": measuring, "seconds_per_measurement": per_measurement, "seconds_per_step": per_step,
            "with_over_without": with_cb / without if without > 0 else None, "callback_share": share,
            "every_for_15_percent": every_for(per_measurement, per_step),
            "weights_bitwise_equal": equal,
            "targets": {"callback_share": {"value": share, "target": f"<= {TARGET}",
                                           "met": share is not None and share <= TARGET},
                        "weights_bitwise_equal": {"value": equal, "target": "true", "met": equal}}}


def chain_cost(chain_dir: Path) -> dict:
    """Per stage of a chain run with measure.during_training: what its records cost against its training."""
    stages = {}
    for stage_dir in sorted(p for p in Path(chain_dir).iterdir() if (p / DYNAMICS_FILE).exists()):
        records = read_probe_records(stage_dir / DYNAMICS_FILE)
        metrics = read_json(stage_dir / "stage.json").get("train_metrics", {}) if (stage_dir / "stage.json").exists() else {}
        runtime, steps = metrics.get("train_runtime"), metrics.get("global_step")
        measuring = sum(r.seconds for r in records)
        share = measuring / runtime if runtime else None
        per_step = (runtime - measuring) / steps if runtime and steps else None
        per_measurement = measuring / max(1, len(records))
        stages[stage_dir.name] = {"measurements": len(records), "questions": records[0].n_questions if records else 0,
                                  "callback_seconds": measuring, "train_runtime": runtime, "steps": steps,
                                  "callback_share": share, "seconds_per_measurement": per_measurement,
                                  "every_for_15_percent": every_for(per_measurement, per_step) if per_step else None}
    total = sum(s["callback_seconds"] for s in stages.values())
    runtime = sum(s["train_runtime"] or 0 for s in stages.values())
    share = total / runtime if runtime else None
    return {"path": str(chain_dir), "found": bool(stages), "stages": stages, "callback_share": share,
            "targets": {f"callback_share ({Path(chain_dir).name})": {"value": share, "target": f"<= {TARGET}",
                                                                    "met": share is not None and share <= TARGET}}
            if stages else {}}


def print_dynamics(r: dict) -> str:
    out = []
    live = r.get("live")
    if live:
        out.append(table(f"7. Measuring during training: DPO {live['steps']} steps, probe {live['questions']} questions "
                         f"x (greedy + N={live['n_samples']}) every {live['every']} steps",
                         ["train s without", "train s with", "callback s", "measurements", "share", "with/without",
                          "s / measurement", "s / step", "every for 15%", "weights equal"],
                         [[live["train_seconds_without"], live["train_seconds_with"], live["callback_seconds"],
                           live["measurements"], live["callback_share"], live["with_over_without"],
                           live["seconds_per_measurement"], live["seconds_per_step"], live["every_for_15_percent"],
                           live["weights_bitwise_equal"]]]))
    for chain in r.get("chains", []):
        rows = [[name, s["measurements"], s["questions"], s["callback_seconds"], s["train_runtime"], s["callback_share"],
                 s["every_for_15_percent"]] for name, s in chain["stages"].items()]
        out.append(table(f"   chain {chain['path']} (as run; share of the stages' train_runtime: "
                         f"{chain['callback_share']})", ["stage", "measurements", "questions", "callback s",
                                                          "train_runtime s", "share", "every for 15%"], rows)
                   if rows else f"   chain {chain['path']}: no dynamics.jsonl (run it with measure.during_training)")
    return "\n".join(out)


def benchmark_dynamics(subject, settings, prompt_format: str, questions, *, steps: int, every: int, lora: dict,
                       chains: list[str]) -> dict:
    """Both readings (the module docstring); the part's targets gathered from them."""
    live = benchmark_live(subject.model_dir, subject.preference_path, prompt_format, questions, settings,
                          steps=steps, every=every, lora=lora)
    read = [chain_cost(Path(c)) if Path(c).is_dir() else {"path": str(c), "found": False, "stages": {}, "targets": {}}
            for c in chains]
    targets = {**{f"live {k}": v for k, v in live["targets"].items()}, **{k: v for c in read for k, v in c["targets"].items()}}
    return {"live": live, "chains": read, "targets": targets}
