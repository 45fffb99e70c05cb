"""Measuring a model while it trains: `measure_live` samples and scores a model in memory, and
`HomogenizationCallback` (a transformers TrainerCallback, for any Trainer: TRL's DPOTrainer, SFTTrainer, ...)
runs it on a fixed probe set every `every` optimizer steps.

    trainer.add_callback(HomogenizationCallback(trainer, {"name": "jsonl", "path": "eval.jsonl", "limit": 32},
                                                every=25, settings={"n_samples": 10, "max_new_tokens": 32}))

Each measurement is the toolkit's own, on the live model (a PEFT model with its LoRA adapters as they are
at that step): greedy + N samples per question from the sampler (measure.sampling.sample, its seeds),
scored by measure.pipeline.score_rows (the clusterers, signals and judge of `measure run`), flattened by
measure.scoring.probe (SCR with its exact interval, mean clusters, pairwise agreement per clusterer, the
greedy answer's token entropy and the other signals' means, accuracy when the probe is labelled). It
runs in eval mode without autograd and restores every random generator and module mode afterwards
(measure.sampling.preserve), so training is bitwise unaffected. The callback then
  - appends a record to `out` (default <output_dir>/dynamics.jsonl; measure.records.dynamics): step,
    epoch, the measures and intervals, and what the Trainer logged at that step (loss, rewards/margins,
    learning rate) when it logged there;
  - hands the measures to the Trainer's callbacks as a log event under `homogenization/`, so whatever
    `report_to` set (TensorBoard, W&B, ...) records them at that step. It does not call Trainer.log:
    that would append to the Trainer's log history and make TRL trainers average their metrics over a
    different window, changing the loss log.
When: before the first step (at_start), every `every` steps (or `evaluations` times over the run:
every = ceil(max_steps / evaluations)), and at the end of training if the last step was not measured.
Resuming from a Trainer checkpoint at step k keeps the records up to k and measures the later steps
again, so the file holds every scheduled step exactly once.

Stopping a run that collapses: `stop_when={"scr/exact": ">= 0.5", "mean_clusters/exact": "<= 2"}` ends
training after the first step whose measurement meets any rule (checked after training steps, not on the
measurement before the first one); the record says which rule (`stopped`), and the Trainer ends as after
its last step (on_train_end, final save). A rule's key must be one of the record's measures: one that is
not is a UsageError at the first measurement, naming the measures there are.

Several processes (`accelerate launch`, DDP): the main process measures the whole probe alone while
the others wait at a barrier (the probe is small; its seeds then match a single-process run), then
sends them its stop decision, so every process stops at the same step. Sharded weights (FSDP,
DeepSpeed ZeRO-3) cannot be sampled from one process: refused.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from transformers import TrainerCallback

from measure.common.errors import UsageError
from measure.data.benchmarks import BENCHMARKS, BenchmarkSpec, load_benchmark
from measure.pipeline import auto_judge, score_rows
from measure.records.dynamics import DYNAMICS_FILE, ProbeRecord, append_probe_record, keep_through
from measure.records.records import Question
from measure.sampling.preserve import untouched_training_state
from measure.sampling.sample import sample_questions
from measure.scoring.config import MeasureSettings, parse_measure_settings
from measure.scoring.probe import met_rule, parse_stop_rules, probe_measures

PREFIX = "homogenization/"


@dataclasses.dataclass(frozen=True)
class LiveMeasurement:
    measures: dict[str, float | None]     # measure.scoring.probe keys
    intervals: dict[str, list[float]]
    n_questions: int
    seconds: float


def as_settings(settings: MeasureSettings | Mapping | None, where: str = "settings") -> MeasureSettings:
    """MeasureSettings as given, or validated from a mapping of its keys (None: every default)."""
    return settings if isinstance(settings, MeasureSettings) else parse_measure_settings(dict(settings or {}), where)


def probe_questions(probe: Any, seed: int = 0, where: str = "probe") -> tuple[list[Question], str | None]:
    """(questions, judge) of a probe: a list of Questions (judge: chosen from their gold answers), or a
    benchmark -- a name, a {name, path, limit, split} mapping or a BenchmarkSpec -- judged as that benchmark."""
    if isinstance(probe, (str, dict, BenchmarkSpec)):
        spec = probe if isinstance(probe, BenchmarkSpec) else parse_measure_settings({"benchmarks": [probe]}, where).benchmarks[0]
        return load_benchmark(spec, seed=seed), BENCHMARKS[spec.name].judge
    questions = list(probe)
    if not questions or not all(isinstance(q, Question) for q in questions):
        raise UsageError(f"{where}: expected a benchmark (name, mapping or BenchmarkSpec) or a non-empty list of "
                         "measure.Question")
    return questions, None


def measure_live(model, tokenizer, questions: Sequence[Question], settings: MeasureSettings, prompt_format: str, *,
                 judge: str | None = None) -> LiveMeasurement:
    """Greedy + N samples of every question from `model` as it is in memory, scored and flattened; the
    model's modes and every random generator are as they were when this returns."""
    started = time.perf_counter()
    with untouched_training_state(model):
        rows = sample_questions(model, tokenizer, list(questions), settings, prompt_format)
        scored = score_rows(rows, settings, judge or auto_judge(rows))
    measures, intervals = probe_measures(scored.records, list(scored.clusterers), seed=settings.seed)
    return LiveMeasurement(measures, intervals, len(rows), time.perf_counter() - started)


def _numbers(logs: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def sharded_weights(trainer) -> bool:
    """FSDP or DeepSpeed ZeRO-3: no process holds the whole model."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    plugin = getattr(getattr(getattr(trainer, "accelerator", None), "state", None), "deepspeed_plugin", None)
    return bool(getattr(trainer, "is_deepspeed_enabled", False) and getattr(plugin, "zero_stage", 0) == 3)


class HomogenizationCallback(TrainerCallback):
    """Measure a probe set during training (see the module docstring). `trainer` is the Trainer the callback
    is added to (its callbacks receive the log events; its processes meet at the barrier); `probe` a
    benchmark or a list of Questions; exactly one of `every` (optimizer steps) or `evaluations` (per run)."""

    def __init__(self, trainer, probe: Any, *, every: int | None = None, evaluations: int | None = None,
                 out: str | Path | None = None, settings: MeasureSettings | Mapping | None = None,
                 prompt_format: str = "chat", at_start: bool = True, tokenizer=None,
                 stop_when: Mapping[str, str] | None = None):
        if (every is None) == (evaluations is None):
            raise UsageError("HomogenizationCallback: give exactly one of every=<optimizer steps> or "
                             "evaluations=<measurements per run>")
        for name, value in (("every", every), ("evaluations", evaluations)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"HomogenizationCallback: {name} must be an integer >= 1, got {value!r}")
        if sharded_weights(trainer):
            raise UsageError("HomogenizationCallback: the weights are sharded across processes (FSDP / DeepSpeed "
                             "ZeRO-3) and no process can sample the model alone; measure the saved checkpoints "
                             "afterwards instead (python -m train.dynamics), or train with DDP")
        self.trainer, self.every, self.evaluations, self.at_start = trainer, every, evaluations, at_start
        self.settings = as_settings(settings)
        self.stop_rules = parse_stop_rules(stop_when)
        self.prompt_format = prompt_format
        self.questions, self.judge = probe_questions(probe, self.settings.seed)
        processor = tokenizer if tokenizer is not None else trainer.processing_class
        self.tokenizer = getattr(processor, "tokenizer", processor)   # a multimodal processor holds one
        self.out = Path(out) if out is not None else Path(trainer.args.output_dir) / DYNAMICS_FILE
        self.done: set[int] = set()
        self.pending: ProbeRecord | None = None
        self.dispatching = False

    # ------------------------------------------------------------ the schedule

    def interval(self, state) -> int:
        return self.every or max(1, math.ceil(state.max_steps / self.evaluations))

    def main(self, state) -> bool:
        return bool(state.is_world_process_zero)

    # ------------------------------------------------------------ Trainer events

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.main(state):
            self.done = {r.step for r in keep_through(self.out, state.global_step)}
        if self.at_start and state.global_step == 0:
            self.measure(args, state, control, model, defer=False)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.interval(state) == 0:
            # the Trainer logs this step after on_step_end (DefaultFlowCallback has set should_log): the record
            # then waits for on_log to carry that log, and is written before any checkpoint of this step
            if self.measure(args, state, control, model, defer=bool(control.should_log), may_stop=True):
                control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.dispatching or self.pending is None or self.pending.step != state.global_step:
            return
        record, self.pending = self.pending, None
        self.write(args, state, control, dataclasses.replace(record, train=_numbers(logs or {})))

    def on_save(self, args, state, control, **kwargs):
        self.flush(args, state, control)   # no log came for a deferred record (a Trainer that skipped it)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.flush(args, state, control)
        logged = {k: v for e in state.log_history if e.get("step") == state.global_step and "train_runtime" not in e
                  for k, v in _numbers(e).items() if k != "step"}
        self.measure(args, state, control, model, defer=False, train=logged)

    # ------------------------------------------------------------ measuring and writing

    def measure(self, args, state, control, model, *, defer: bool, train: dict | None = None,
                may_stop: bool = False) -> bool:
        """Measure now (main process; the others wait), unless this step already has a record. True when a
        stop rule was met (every process gets the main process's answer)."""
        step = state.global_step
        self.flush(args, state, control)
        stop = None
        if self.main(state) and step not in self.done:
            live = measure_live(model if model is not None else self.trainer.model, self.tokenizer, self.questions,
                                self.settings, self.prompt_format, judge=self.judge)
            # every measurement checks the rules (a key that is no measure fails at the first one, before
            # training when at_start); only one after a training step may stop it
            met = met_rule(live.measures, self.stop_rules) if self.stop_rules else None
            stop = met if may_stop else None
            record = ProbeRecord(step=step, epoch=state.epoch, measures=live.measures, intervals=live.intervals,
                                 train=dict(train or {}), n_questions=live.n_questions,
                                 seconds=round(live.seconds, 3), stopped=stop)
            self.done.add(step)
            if stop:
                print(f"[homogenization] step {step}: {stop}: training stops", file=sys.stderr, flush=True)
            if defer:
                self.pending = record
            else:
                self.write(args, state, control, record)
        self.trainer.accelerator.wait_for_everyone()
        if self.stop_rules and may_stop and self.trainer.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list
            stop = broadcast_object_list([stop], from_process=0)[0]
        return stop is not None

    def flush(self, args, state, control) -> None:
        if self.pending is not None:
            record, self.pending = self.pending, None
            self.write(args, state, control, record)

    def write(self, args, state, control, record: ProbeRecord) -> None:
        append_probe_record(self.out, record)
        logs = {PREFIX + k: v for k, v in record.measures.items() if v is not None}
        self.dispatching = True   # our own on_log sees this event too
        try:
            self.trainer.callback_handler.on_log(args, state, control, logs)
        finally:
            self.dispatching = False
