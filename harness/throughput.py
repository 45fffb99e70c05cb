"""Benchmarks 1 and 2: the toolkit's sampling pass against a per-sample reference loop and the raw
batched-generate floor, and forward passes per decode step.

Ways to get greedy + N sampled answers with full-vocabulary token entropies for the same questions:

  toolkit  measure.sampling.sample.sample_questions with its default decoder (measure/sampling/decode.py): per batch of
           questions one greedy decode and batched sampling decodes (each prompt prefilled once, its cache
           repeated N times; finished rows leave the batch); token statistics from the logits of those
           same forward passes.
  loop     what reference semantic-entropy code does: for every question, N+1 `generate` calls with
           num_return_sequences=1 (the greedy answer, then one call per sample), each followed by a
           second forward pass over prompt+answer whose logits give the token entropies. Same prompts,
           temperature/top_p, neutral knobs, EOS ids, stop strings and max_new_tokens as the toolkit.
  floor    the raw batched `model.generate` of the same tokens: every decode the toolkit ran is re-issued
           as one `generate` call with the SAME input_ids, attention mask and left padding, the same rows
           (num_return_sequences=N), do_sample/temperature/top_p/EOS/pad kwargs and the same RNG state,
           and with max_new_tokens = min_new_tokens = the number of decode steps that decode took; but
           without output_logits, stop strings, token statistics, decoding or text cutting. It runs the
           same number of forward passes (checked), over all rows at every step and with N prefill copies.
  toolkit, decoder=generate   the toolkit's pass with measure.decoder=generate (`model.generate` with
           output_logits=True), for models whose cache cannot drop rows; shown for comparison.
  forward passes alone   the compact decodes' own model work replayed without anything else (prefill of
           the distinct prompts, live rows per step, same tokens; harness/schedule.py): the matched
           floor, since (b) does more model work than the compact decoder.

Throughput counts *answer tokens*: per generated row, the tokens up to and including EOS, or up to the
step at which its stop string appeared, or max_new_tokens -- never the padding a finished row gets
while the rest of its batch continues. The floor generates the same calls, so it is credited with the
toolkit's answer tokens. Speed ratios compare seconds per answer token (the loop draws its own
samples, so its token count differs a little).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from measure import (MeasureSettings, Question, QuestionSamples, StopOnText, answer_end_ids,
                     count_forward_calls, encode_prompt, format_prompt, sample as toolkit_sample,
                     sample_questions, step_statistics, stop_strings)

from harness.subject import median, timed

# generate() kwargs that only shape the output the toolkit reads (or stop early); the floor drops them
OUTPUT_ONLY = ("return_dict_in_generate", "output_logits", "output_scores", "stopping_criteria", "max_new_tokens",
               "min_new_tokens")
# the loop pins the same sampling knobs as the toolkit's generate path, so both draw
# from softmax(logits / T) with top_p and nothing else
NEUTRAL = {k: v for k, v in toolkit_sample._NEUTRAL.items() if k != "min_new_tokens"}


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
    compact: tuple | None = None   # compact decoder: (input_ids, attention_mask, n, tokens, lengths) for its replay


@dataclass
class Recorder:
    calls: list[GenerateCall] = field(default_factory=list)
    generate_s: float = 0.0    # wall seconds spent inside model.generate


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


def _rows_per_prompt(kwargs: dict[str, Any]) -> int:
    """Rows a decode_compact call decoded per prompt: n, plus the greedy row where it decoded one."""
    return kwargs["n"] + bool(kwargs.get("greedy") and kwargs["do_sample"])


def _generate_kwargs_of_compact(input_ids, attention_mask, *, n, do_sample, temperature, top_p, eos_ids, pad_id,
                                greedy=False, **_) -> dict[str, Any]:
    """The `model.generate` kwargs that decode what a decode_compact call decoded (same prompts, rows, rule;
    generate cannot mix a greedy row into a sampling call, so that row is one more sampled row there)."""
    sampling = dict(temperature=temperature, top_p=top_p) if do_sample else dict(temperature=None, top_p=None, top_k=None)
    rows = _rows_per_prompt(dict(n=n, do_sample=do_sample, greedy=greedy))
    return dict(input_ids=input_ids, attention_mask=attention_mask, do_sample=do_sample, num_return_sequences=rows,
                eos_token_id=list(eos_ids), pad_token_id=pad_id, num_beams=1, **{**NEUTRAL, **sampling})


@contextlib.contextmanager
def recording(model, tokenizer) -> Iterator[Recorder]:
    """Record every decode of the toolkit's sampling pass (kwargs for a `model.generate` replay, RNG state,
    steps, answer tokens), whichever decoder runs: measure.sampling.decode.decode_compact (the default) is
    wrapped at module level, `model.generate` (decoder=generate) on this model object only."""
    from measure import decode as decoding
    recorder = Recorder()
    original_generate, original_compact = model.generate, decoding.decode_compact
    eos = answer_end_ids(model.generation_config.eos_token_id, tokenizer)

    def snapshot():
        return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def wrapped_generate(*args, **kwargs):
        if args:
            raise TypeError("the benchmark recorder expects keyword arguments only (as measure.sampling.sample passes them)")
        rng, cuda_rng = snapshot()
        started = time.perf_counter()
        out = original_generate(**kwargs)
        recorder.generate_s += time.perf_counter() - started
        seqs = out.sequences if hasattr(out, "sequences") else out
        prompt_len = kwargs["input_ids"].shape[1]
        stopper = next(iter(kwargs.get("stopping_criteria") or []), None)
        lengths = answer_lengths(seqs[:, prompt_len:].cpu(), eos, getattr(stopper, "stopped_at", None))
        recorder.calls.append(GenerateCall(dict(kwargs), rng, cuda_rng, seqs.shape[0], prompt_len,
                                           seqs.shape[1] - prompt_len, sum(lengths)))
        return out

    def wrapped_compact(model_, input_ids, attention_mask, **kwargs):
        rng, cuda_rng = snapshot()
        started = time.perf_counter()
        decoded = original_compact(model_, input_ids, attention_mask, **kwargs)
        recorder.generate_s += time.perf_counter() - started
        recorder.calls.append(GenerateCall(_generate_kwargs_of_compact(input_ids, attention_mask, **kwargs), rng, cuda_rng,
                                           len(decoded.lengths), input_ids.shape[1], decoded.tokens.shape[1],
                                           sum(decoded.lengths), (input_ids, attention_mask, _rows_per_prompt(kwargs),
                                                                  decoded.tokens, decoded.lengths)))
        return decoded

    model.generate = wrapped_generate   # an instance attribute shadows the class method for this object only
    decoding.decode_compact = wrapped_compact
    try:
        yield recorder
    finally:
        del model.generate
        decoding.decode_compact = original_compact


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


def run_forwards(model, calls: Sequence[GenerateCall]) -> int:
    """The compact decodes' forward passes alone (harness/schedule.py); returns how many ran."""
    from harness.schedule import replay_forwards
    return sum(replay_forwards(model, *call.compact) for call in calls)


@torch.inference_mode()
def run_loop(model, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str,
             seed: int = 0) -> dict[str, int]:
    """Reference-style per-sample loop; returns counts (generate calls, forward passes, answer tokens)."""
    import transformers
    stop = stop_strings(settings.stop, prompt_format)
    eos = answer_end_ids(model.generation_config.eos_token_id, tokenizer)
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
            # the per-token statistics the toolkit records (computed for their cost; not compared here)
            step_statistics(logits, full[0, ids.shape[1]:])
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
    matched = all(c.compact is not None for c in calls)   # the compact decoder ran: its forwards alone can be timed
    if matched and run_forwards(model, calls) != sum(c.steps for c in calls):
        raise RuntimeError("the forward-pass replay ran another number of passes than the toolkit's decodes")

    generate_settings = dataclasses.replace(settings, decoder="generate")
    run_toolkit(model, tokenizer, questions[:2], generate_settings, prompt_format, count=False)   # its warm-up
    times: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in ("toolkit", "generate", "floor", "loop",
                                                                               "forwards")}
    inside: list[float] = []
    generate_tokens = 0
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
            if matched:
                wall, cpu, _ = timed(lambda: run_forwards(model, calls))
                times["forwards"][0].append(wall), times["forwards"][1].append(cpu)
            wall, cpu, (_, rec, _) = timed(lambda: run_toolkit(model, tokenizer, questions, generate_settings,
                                                               prompt_format, count=False))
            times["generate"][0].append(wall), times["generate"][1].append(cpu)
            generate_tokens = sum(c.answer_tokens for c in rec.calls)
        if i < loop_repeats:
            wall, cpu, loop_counts = timed(lambda: run_loop(model, tokenizer, questions, settings, prompt_format))
            times["loop"][0].append(wall), times["loop"][1].append(cpu)
    toolkit = _method(*times["toolkit"], tokens, generate_calls=len(calls), inside_generate_seconds=median(inside))
    floor = _method(*times["floor"], tokens, generate_calls=len(calls), decode_steps=sum(c.steps for c in calls),
                    row_steps=sum(c.rows * c.steps for c in calls),
                    matched="the toolkit's decodes issued as bare model.generate calls (same prompts, padding, rows = "
                            "prompts x N, sampling rule, RNG state, decode steps via min_new_tokens=max_new_tokens="
                            "steps); every row runs every step, no logits output, stop-string check, token "
                            "statistics or text decoding")
    loop = _method(*times["loop"], loop_counts["answer_tokens"], generate_calls=loop_counts["generate_calls"],
                   entropy_forward_passes=loop_counts["entropy_passes"])
    with_generate = _method(*times["generate"], generate_tokens,
                            generate_calls=len(calls), note="the toolkit's own pass with measure.decoder=generate")
    wall_ratios, cpu_ratios = _ratios(toolkit, loop, floor, "seconds"), _ratios(toolkit, loop, floor, "cpu_seconds")
    forwards = _method(*times["forwards"], tokens, generate_calls=len(calls),
                       note="the toolkit's own forward passes alone (harness/schedule.py)") if matched else None
    for ratios, key in ((wall_ratios, "seconds"), (cpu_ratios, "cpu_seconds")):   # per answer token, own samples
        ratios["decoder_generate_over_toolkit"] = ((with_generate[key] / max(generate_tokens, 1))
                                                   / (toolkit[key] / max(toolkit["answer_tokens"], 1)))
        ratios["toolkit_over_own_forwards"] = toolkit[key] / forwards[key] if forwards else None
    result = {"questions": len(questions), "n_samples": settings.n_samples, "max_new_tokens": settings.max_new_tokens,
              "repeats": repeats, "loop_repeats": loop_repeats, "toolkit": toolkit, "loop": loop, "floor": floor,
              "toolkit_decoder_generate": with_generate, "decoder": settings.decoder, "own_forwards": forwards,
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
                    "measure.sampling.sample.count_forward_calls around the whole sample_questions pass",
            "targets": {"extra_forward_calls": {"value": forward_calls - steps, "target": "== 0", "met": forward_calls == steps}}}


def benchmark_forward_passes(model, tokenizer, questions: list[Question], settings: MeasureSettings,
                             prompt_format: str) -> tuple[dict, list[QuestionSamples]]:
    """Only benchmark 2 (no timing): one recorded toolkit pass and one floor replay."""
    rows, recorder, forward_calls = run_toolkit(model, tokenizer, questions, settings, prompt_format)
    with count_forward_calls(model) as floor_counter:
        run_floor(model, recorder.calls)
    return forward_passes_result(recorder.calls, forward_calls, floor_counter.count), rows

