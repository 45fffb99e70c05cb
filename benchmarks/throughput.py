"""Benchmarks 1 and 2: the toolkit's sampling pass against a per-sample reference loop and the raw
batched-generate floor, and forward passes per decode step.

Three ways to get greedy + N sampled answers with full-vocabulary token entropies for the same questions:

  toolkit  measure.sample.sample_questions: one batched greedy `generate` per batch of questions and
           batched sampling calls (num_return_sequences=N); the token statistics come from the raw
           logits of those same calls (output_logits=True).
  loop     what reference semantic-entropy code does: for every question, N+1 `generate` calls with
           num_return_sequences=1 (the greedy answer, then one call per sample), each followed by a
           second forward pass over prompt+answer whose logits give the token entropies. Same prompts,
           temperature/top_p, neutral knobs, EOS ids, stop strings and max_new_tokens as the toolkit.
  floor    the toolkit's own `model.generate` calls replayed with nothing else: recorded from a toolkit
           pass, each call is re-issued with the SAME input_ids, attention mask and left padding, the
           same num_return_sequences/do_sample/temperature/top_p/EOS/pad kwargs and the same RNG state,
           and with max_new_tokens = min_new_tokens = the number of decode steps that call took; but
           without output_logits, return_dict_in_generate, the stop-string criterion, token statistics,
           decoding or text cutting. So it runs exactly the same number of batched forward passes over
           the same batch shapes (checked: its forward-call count must equal the toolkit's).

Throughput counts *answer tokens*: per generated row, the tokens up to and including EOS, or up to the
step at which its stop string appeared, or max_new_tokens -- never the padding a finished row gets
while the rest of its batch continues. The floor generates the same calls, so it is credited with the
toolkit's answer tokens. Speed ratios compare seconds per answer token (the loop draws its own
samples, so its token count differs a little).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from measure.config import MeasureSettings
from measure.records import Question, QuestionSamples
from measure import sample as toolkit_sample
from measure.sample import (StopOnText, count_forward_calls, encode_prompt, format_prompt, sample_questions,
                            stop_strings)

from benchmarks.subject import median, timed

# generate() kwargs that only shape the output the toolkit reads (or stop early); the floor drops them
OUTPUT_ONLY = ("return_dict_in_generate", "output_logits", "output_scores", "stopping_criteria", "max_new_tokens",
               "min_new_tokens")
# the loop pins the same sampling knobs as the toolkit (its own table when it has one), so both draw
# from softmax(logits / T) with top_p and nothing else
NEUTRAL = {k: v for k, v in getattr(toolkit_sample, "_NEUTRAL", {
    "top_k": 0, "typical_p": 1.0, "min_p": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}).items() if k != "min_new_tokens"}


@dataclass
class GenerateCall:
    """One `model.generate` call as the toolkit issued it, with what it produced."""
    kwargs: dict[str, Any]
    rng: torch.Tensor
    cuda_rng: list | None
    rows: int
    prompt_len: int
    steps: int                 # decode steps = generated columns (forward passes of this call)
    answer_tokens: int         # see the module docstring


@dataclass
class Recorder:
    calls: list[GenerateCall] = field(default_factory=list)
    generate_s: float = 0.0    # wall seconds spent inside model.generate


def eos_ids(model, tokenizer) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def answer_lengths(generated: torch.Tensor, eos: Sequence[int], stopped_at: dict[int, int] | None) -> list[int]:
    """Answer tokens per row of generated ids [rows, steps]: through the first EOS, or up to the stop step."""
    out = []
    for r, tokens in enumerate(generated.tolist()):
        n = len(tokens)
        if stopped_at and r in stopped_at:
            n = min(n, stopped_at[r])
        for i, tok in enumerate(tokens[:n]):
            if tok in eos:
                n = i + 1
                break
        out.append(n)
    return out


@contextlib.contextmanager
def recording(model, tokenizer) -> Iterator[Recorder]:
    """Wrap this model object's `generate` to record every call (kwargs, RNG state, steps, answer tokens)."""
    recorder = Recorder()
    original = model.generate
    eos = eos_ids(model, tokenizer)

    def wrapped(*args, **kwargs):
        if args:
            raise TypeError("the benchmark recorder expects keyword arguments only (as measure.sample passes them)")
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        started = time.perf_counter()
        out = original(**kwargs)
        recorder.generate_s += time.perf_counter() - started
        seqs = out.sequences if hasattr(out, "sequences") else out
        prompt_len = kwargs["input_ids"].shape[1]
        stopper = next(iter(kwargs.get("stopping_criteria") or []), None)
        lengths = answer_lengths(seqs[:, prompt_len:].cpu(), eos, getattr(stopper, "stopped_at", None))
        recorder.calls.append(GenerateCall(dict(kwargs), rng, cuda_rng, seqs.shape[0], prompt_len,
                                           seqs.shape[1] - prompt_len, sum(lengths)))
        return out

    model.generate = wrapped   # an instance attribute shadows the class method for this object only
    try:
        yield recorder
    finally:
        del model.generate


# ---------------------------------------------------------------- the three methods

def run_toolkit(model, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str,
                count: bool = True) -> tuple[list[QuestionSamples], Recorder, int | None]:
    """The toolkit's sampling pass, recorded; returns (rows, recorder, forward calls counted or None).
    Timed runs pass count=False: the forward hook is not part of the toolkit."""
    with recording(model, tokenizer) as recorder, \
            (count_forward_calls(model) if count else contextlib.nullcontext()) as counter:
        rows = sample_questions(model, tokenizer, questions, settings, prompt_format)
    return rows, recorder, counter.count if count else None


@torch.inference_mode()
def run_floor(model, calls: Sequence[GenerateCall]) -> int:
    """Replay the recorded calls as bare generate calls; returns the number of decode steps generated."""
    steps = 0
    for call in calls:
        kwargs = {k: v for k, v in call.kwargs.items() if k not in OUTPUT_ONLY}
        torch.set_rng_state(call.rng)
        if call.cuda_rng is not None:
            torch.cuda.set_rng_state_all(call.cuda_rng)
        out = model.generate(**kwargs, max_new_tokens=call.steps, min_new_tokens=call.steps)
        seqs = out.sequences if hasattr(out, "sequences") else out   # a generation_config may ask for a dict
        steps += seqs.shape[1] - call.prompt_len
    return steps


@torch.inference_mode()
def run_loop(model, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str,
             seed: int = 0) -> dict[str, int]:
    """Reference-style per-sample loop; returns counts (generate calls, forward passes, answer tokens)."""
    import transformers
    stop = stop_strings(settings.stop, prompt_format)
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    common = dict(max_new_tokens=settings.max_new_tokens, num_return_sequences=1, eos_token_id=eos,
                  pad_token_id=pad, num_beams=1, min_new_tokens=0, **NEUTRAL)
    transformers.set_seed(seed)
    counts = {"generate_calls": 0, "entropy_passes": 0, "answer_tokens": 0}
    for q in questions:
        prompt = format_prompt(tokenizer, q.text, prompt_format, settings.fewshot)
        ids = torch.tensor([encode_prompt(tokenizer, prompt)], device=model.device)
        for k in range(settings.n_samples + 1):
            sampling = dict(do_sample=True, temperature=settings.temperature, top_p=settings.top_p) if k else \
                dict(do_sample=False, temperature=None, top_p=None, top_k=None)
            stopper = StopOnText(tokenizer, stop, ids.shape[1])
            extra = {"stopping_criteria": transformers.StoppingCriteriaList([stopper])} if stop else {}
            seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **{**common, **sampling}, **extra)
            n = answer_lengths(seq[:, ids.shape[1]:].cpu(), eos, stopper.stopped_at)[0]
            counts["generate_calls"] += 1
            if n == 0:
                continue
            # the second pass: logits at positions prompt_len-1 .. prompt_len+n-2 predict the n answer tokens
            full = seq[:, :ids.shape[1] + n]
            logits = model(input_ids=full, attention_mask=torch.ones_like(full)).logits[0, ids.shape[1] - 1:-1]
            logp = torch.log_softmax(logits.float(), dim=-1)
            # the per-token statistics the toolkit records (computed for their cost; not compared here)
            _entropies = -(logp.exp() * logp.clamp(min=torch.finfo(logp.dtype).min)).sum(-1)
            _logprobs = logp.gather(-1, full[0, ids.shape[1]:, None]).squeeze(-1)
            counts["entropy_passes"] += 1
            counts["answer_tokens"] += n
    return counts


# ---------------------------------------------------------------- the benchmarks

def _method(wall: list[float], cpu: list[float], tokens: int, **extra: Any) -> dict:
    return {"seconds": median(wall), "cpu_seconds": median(cpu), "seconds_all": wall, "cpu_seconds_all": cpu,
            "answer_tokens": tokens, "tokens_per_s": tokens / median(wall), **extra}


def _ratios(toolkit: dict, loop: dict, floor: dict, key: str) -> dict[str, float]:
    """(a)/toolkit per answer token (the loop draws its own samples) and toolkit/(b) (same calls, same tokens)."""
    return {"loop_over_toolkit": (loop[key] / max(loop["answer_tokens"], 1)) / (toolkit[key] / max(toolkit["answer_tokens"], 1)),
            "toolkit_over_floor": toolkit[key] / floor[key]}


def benchmark_throughput(model, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str,
                         *, repeats: int, loop_repeats: int) -> tuple[dict, list[QuestionSamples], dict]:
    """Warm up, then time toolkit / floor / loop `repeats` times each (interleaved, so a burst of other load
    hits all three; the loop, the slow one, `loop_repeats` times) and take medians.
    Returns (throughput result, the toolkit's samples, forward-pass result)."""
    # warm-up: one toolkit pass (recorded: its calls define the floor), one floor replay, a short loop
    rows, recorder, forward_calls = run_toolkit(model, tokenizer, questions, settings, prompt_format)
    calls = recorder.calls
    tokens = sum(c.answer_tokens for c in calls)
    with count_forward_calls(model) as floor_counter:
        run_floor(model, calls)
    if floor_counter.count != sum(c.steps for c in calls):
        raise RuntimeError(f"the floor replay ran {floor_counter.count} forward passes, the toolkit's calls "
                           f"{sum(c.steps for c in calls)} decode steps: the two would not be matched")
    run_loop(model, tokenizer, questions[:2], settings, prompt_format)
    forward = forward_passes_result(calls, forward_calls, floor_counter.count)

    times: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in ("toolkit", "floor", "loop")}
    inside: list[float] = []
    loop_counts: dict[str, int] = {}
    for i in range(max(repeats, loop_repeats)):
        if i < repeats:
            wall, cpu, (_, rec, _) = timed(lambda: run_toolkit(model, tokenizer, questions, settings, prompt_format,
                                                               count=False))
            if sum(c.answer_tokens for c in rec.calls) != tokens:
                raise RuntimeError("the toolkit's sampling pass gave other answers on a repeat: it is not deterministic")
            times["toolkit"][0].append(wall), times["toolkit"][1].append(cpu), inside.append(rec.generate_s)
            wall, cpu, _ = timed(lambda: run_floor(model, calls))
            times["floor"][0].append(wall), times["floor"][1].append(cpu)
        if i < loop_repeats:
            wall, cpu, loop_counts = timed(lambda: run_loop(model, tokenizer, questions, settings, prompt_format))
            times["loop"][0].append(wall), times["loop"][1].append(cpu)
    toolkit = _method(*times["toolkit"], tokens, generate_calls=len(calls), inside_generate_seconds=median(inside))
    floor = _method(*times["floor"], tokens, generate_calls=len(calls), decode_steps=sum(c.steps for c in calls),
                    row_steps=sum(c.rows * c.steps for c in calls),
                    matched="same generate calls as the toolkit (prompts, padding, rows, sampling kwargs, RNG state, "
                            "decode steps via min_new_tokens=max_new_tokens=steps); no logits output, stop-string "
                            "check, token statistics or decoding")
    loop = _method(*times["loop"], loop_counts["answer_tokens"], generate_calls=loop_counts["generate_calls"],
                   entropy_forward_passes=loop_counts["entropy_passes"])
    wall_ratios, cpu_ratios = _ratios(toolkit, loop, floor, "seconds"), _ratios(toolkit, loop, floor, "cpu_seconds")
    result = {"questions": len(questions), "n_samples": settings.n_samples, "max_new_tokens": settings.max_new_tokens,
              "repeats": repeats, "loop_repeats": loop_repeats, "toolkit": toolkit, "loop": loop, "floor": floor,
              **wall_ratios, "cpu_time_ratios": cpu_ratios,
              "targets": {"loop_over_toolkit": {"value": wall_ratios["loop_over_toolkit"], "target": ">= 10",
                                                "met": wall_ratios["loop_over_toolkit"] >= 10},
                          "toolkit_over_floor": {"value": wall_ratios["toolkit_over_floor"], "target": "<= 1.25",
                                                 "met": wall_ratios["toolkit_over_floor"] <= 1.25}}}
    return result, rows, forward


def forward_passes_result(calls: Sequence[GenerateCall], forward_calls: int, floor_forward_calls: int | None) -> dict:
    steps = sum(c.steps for c in calls)
    tokens = sum(c.answer_tokens for c in calls)
    return {"generate_calls": len(calls), "decode_steps": steps, "forward_calls": forward_calls,
            "extra_forward_calls": forward_calls - steps, "answer_tokens": tokens,
            "forward_calls_per_answer_token": forward_calls / max(tokens, 1),
            "floor_forward_calls": floor_forward_calls,
            "note": "decode steps = generated columns summed over the sampling pass's generate calls (each step is "
                    "one batched forward pass over all rows of its call); forward calls counted with "
                    "measure.sample.count_forward_calls around the whole sample_questions pass",
            "targets": {"extra_forward_calls": {"value": forward_calls - steps, "target": "== 0", "met": forward_calls == steps}}}


def benchmark_forward_passes(model, tokenizer, questions: list[Question], settings: MeasureSettings,
                             prompt_format: str) -> tuple[dict, list[QuestionSamples]]:
    """Only benchmark 2 (no timing): one recorded toolkit pass and one floor replay."""
    rows, recorder, forward_calls = run_toolkit(model, tokenizer, questions, settings, prompt_format)
    with count_forward_calls(model) as floor_counter:
        run_floor(model, recorder.calls)
    return forward_passes_result(recorder.calls, forward_calls, floor_counter.count), rows

