"""Sampling: one greedy answer plus N sampled answers per question, with per-token statistics.

Token statistics, for each generated step t, from the raw logits of the forward pass that generated the
token (the default decoder, measure/sampling/decode.py, takes them step by step; decoder=generate reads
`output_logits=True` of the same `model.generate` call), never a second forward pass
(`count_forward_calls` lets tests check that):
  token_logprobs[t]  = log p(y_t | prompt, y_<t)  and  token_entropies[t] = -sum_v p(v) log p(v) (nats),
with p = softmax(raw logits) over the FULL vocabulary: the model's own distribution at temperature 1
without top-k/top-p truncation, whatever T/top_p the sample was drawn with (the lm-polygraph
convention), so an answer gets the same statistics whether greedy or sampled.
The arrays cover every generated step up to and including the one that emitted EOS (the stop
decision is part of p(answer, stop); lm-polygraph keeps it too), never the padding after it. A stop
string cuts the text before its first occurrence, and the arrays keep the tokens whose text starts
before the cut (the delimiter is not part of the answer). Texts are whitespace-stripped, without
special tokens. token_ids keep every generated token of the answer (through EOS, or through the step that
completed a stop string), so the text is a function of them (measure.sampling.answers) and any prefix of
k ids is the answer of a max_new_tokens=k run (see "Prefixes" below).

Sampling distribution: softmax(logits / T) with nucleus top_p, nothing else: the compact decoder applies
only those two warpers, and decoder=generate runs with the model's generation_config reduced to its
special token ids (protocol_generation_config), so a hub generation_config cannot change the protocol.

Determinism: `generate` calls `transformers.set_seed(seed)` before decoding: same prompts + settings -> identical
output on the same CPU build. `sample_questions` cuts questions into batches and decode calls
(measure/sampling/batching.py: rows_per_call, batch_size), fixed by the full question list, and seeds each call
from (settings.seed, the question ids in it), so a run is identical for the same settings, a resumed run
equals an uninterrupted one, and a run sharded across processes (`batch_plan`: whole batches dealt to
ranks) equals a single-process one (with the same threads per process; measure.sampling.backends.aligned_weights
makes the arithmetic independent of how weights were loaded). Other rows_per_call give other (equally
valid) samples: a call shares one random stream and left padding changes the arithmetic. The compact
decoder decodes each prompt's greedy answer in the same call as its samples (one prefill); the greedy
row is the argmax of its own logits, equal to a separate greedy decode (tests/test_decode.py).

Prefixes: decoding is autoregressive, so the first k tokens of an answer are, in distribution, an answer of
a max_new_tokens=k run. With the same seed and the same decode calls they are that very answer, token for
token (tests/test_length.py), in both decoders: for steps < k both runs hold the same rows (a row leaves the
batch only when it ends, at the same step in both), so they do the same arithmetic and draw the same
uniforms (compact: one per live row per step) or the same multinomial draws (generate: every row every
step). Not guaranteed bit for bit where the decode calls differ: on CUDA the automatic rows budget grows as
max_new_tokens shrinks (measure/sampling/batching.py), which changes the prompts per call, hence the calls'
seeds; set rows_per_call to compare such runs token for token. The vLLM backend gives no such promise.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from measure.sampling import decode as decoding
from measure.sampling.batching import batch_plan, calls, decode_plan, derive_seed  # noqa: F401 (batch_plan, derive_seed: re-exported)
from measure.scoring.config import DECODERS, MeasureSettings
from measure.common.errors import UsageError, suggest
from measure.common.io import to_jsonable
from measure.sampling.answers import answer_ids, answer_text
from measure.sampling.prompts import answer_end_ids, encode_left_padded, format_prompt, stop_strings
from measure.records.records import Generation, GenerationTiming, Question, QuestionSamples
from measure.sampling.sample_cache import append_cache, cache_settings, open_cache

# Generation knobs pinned so the sampling distribution is exactly softmax(logits/T) + top_p.
_NEUTRAL = {"top_k": 0, "typical_p": 1.0, "min_p": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
            "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0}


# ---------------------------------------------------------------- forward-pass counting

@dataclass
class ForwardCounter:
    count: int = 0


@contextlib.contextmanager
def count_forward_calls(model: torch.nn.Module) -> Iterator[ForwardCounter]:
    """Count calls of `model.forward` inside the block (one per generation step for a plain HF model)."""
    counter = ForwardCounter()

    def hook(module, args, output):
        counter.count += 1

    handle = model.register_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


# ---------------------------------------------------------------- generation

def token_statistics(step_logits: Sequence[torch.Tensor], tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw logits per step ([rows, V] each) and chosen tokens [rows, steps] -> (logprobs, entropies) [rows, steps]."""
    if not step_logits:
        empty = torch.zeros(tokens.shape[0], 0)
        return empty, empty
    per_step = [decoding.step_statistics(logits, tokens[:, t]) for t, logits in enumerate(step_logits)]
    return torch.stack([lp for lp, _ in per_step], 1), torch.stack([h for _, h in per_step], 1)


class StopOnText:
    """Stopping criterion: a row is done once a stop string appears in the text of its generated tokens.

    Used instead of transformers' `stop_strings`, which also matches across the prompt boundary and
    inside special tokens' names; this one sees exactly the text we return, and it records the step
    at which each row stopped, so the tokens generated as padding afterwards can be dropped.
    """

    def __init__(self, tokenizer, stop: Sequence[str], prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, tuple(stop), prompt_len
        self.stopped_at: dict[int, int] = {}  # row -> number of generated tokens when its stop string appeared

    def have_stop(self, rows: list[list[int]]) -> list[bool]:
        """Whether each row's text contains a stop string (one batched decode call for all rows)."""
        if not rows:
            return []
        texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True)
        return [any(s in text for s in self.stop) for text in texts]

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        generated = input_ids[:, self.prompt_len:].tolist()
        open_rows = [row for row in range(len(generated)) if row not in self.stopped_at]
        for row, hit in zip(open_rows, self.have_stop([generated[row] for row in open_rows])):
            if hit:
                self.stopped_at[row] = len(generated[row])
        return torch.tensor([row in self.stopped_at for row in range(input_ids.shape[0])], device=input_ids.device)


def _cut(tokenizer, tokens: list[int], logprobs: list[float], entropies: list[float],
         eos_ids: Sequence[int], stop: Sequence[str]) -> Generation:
    """One generated row -> Generation by measure.sampling.answers' rule: ids through EOS, text cut at EOS or
    before the first stop string, statistics through EOS or up to the stop string."""
    ids = answer_ids(tokens, eos_ids)
    text, keep = answer_text(tokenizer, ids, eos_ids, stop)
    return Generation(text, tuple(logprobs[:keep]), tuple(entropies[:keep]), tuple(ids))


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], *, n: int, temperature: float, top_p: float,
             max_new_tokens: int, stop: Sequence[str], seed: int, do_sample: bool,
             decoder: str = MeasureSettings.decoder, greedy: bool = False) -> list[list[Generation]]:
    """Generate `n` continuations per prompt in one batched decode; returns them per prompt, in order.
    greedy=True (compact decoder, do_sample): each prompt's list starts with its greedy answer (n + 1 rows).

    decoder: `compact` (measure/sampling/decode.py: finished rows leave the batch, each prompt is prefilled once,
    token statistics are taken step by step) or `generate` (transformers' `model.generate` with
    output_logits=True; for models whose cache cannot drop rows)."""
    import transformers

    if not do_sample and n != 1:
        raise ValueError("greedy decoding (do_sample=False) gives one answer per prompt; use n=1")
    if decoder not in DECODERS:
        raise UsageError(f"unknown decoder {decoder!r}{suggest(decoder, DECODERS)}")
    if greedy and (decoder != "compact" or not do_sample):
        raise ValueError("greedy=True adds a greedy row to a sampling call of the compact decoder")
    if not prompts:
        return []
    eos = answer_end_ids(model.generation_config.eos_token_id, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    input_ids, mask = encode_left_padded(tokenizer, prompts, pad_id)
    stopper = StopOnText(tokenizer, stop, input_ids.shape[1])
    transformers.set_seed(seed)
    if decoder == "compact":
        decoded = decoding.decode_compact(
            model, input_ids.to(model.device), mask.to(model.device), n=n, do_sample=do_sample,
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, eos_ids=eos, pad_id=pad_id,
            have_stop=stopper.have_stop if stop else None, greedy=greedy)
        generated, logprobs, entropies, ends = decoded.tokens, decoded.logprobs, decoded.entropies, decoded.lengths
    else:
        generated, logprobs, entropies, ends = _hf_generate(model, input_ids, mask, stopper, n=n, do_sample=do_sample,
                                                            temperature=temperature, top_p=top_p, eos_ids=eos,
                                                            pad_id=pad_id, max_new_tokens=max_new_tokens)
    rows = [_cut(tokenizer, generated[r, :end].tolist(), logprobs[r, :end].tolist(), entropies[r, :end].tolist(),
                 eos, stop) for r, end in enumerate(ends)]
    per = n + greedy
    return [rows[i * per:(i + 1) * per] for i in range(len(prompts))]  # rows are prompt-major


@contextlib.contextmanager
def protocol_generation_config(model) -> Iterator[None]:
    """generate() fills every knob the call leaves unset from model.generation_config (suppress_tokens,
    bad_words_ids, forced/begin tokens, min_length, ...); for the call, the model's config keeps only its
    special token ids, so both decoders follow exactly the protocol: softmax(logits / T) with top_p."""
    from transformers import GenerationConfig
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    original = target.generation_config
    target.generation_config = GenerationConfig(**{k: getattr(original, k, None) for k in
                                                   ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")})
    try:
        yield
    finally:
        target.generation_config = original


def _hf_generate(model, input_ids, mask, stopper: "StopOnText", *, n: int, do_sample: bool, temperature: float,
                 top_p: float, eos_ids: list[int], pad_id: int, max_new_tokens: int):
    """decoder=generate: one `model.generate` call; token statistics from its raw logits (output_logits)."""
    import transformers
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_return_sequences=n,
                  return_dict_in_generate=True, output_logits=True, output_scores=False,
                  eos_token_id=eos_ids, pad_token_id=pad_id, num_beams=1, **_NEUTRAL)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    else:  # unset so a hub generation_config's sampling values do not trigger "unused flag" warnings
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if stopper.stop:
        kwargs["stopping_criteria"] = transformers.StoppingCriteriaList([stopper])
    with protocol_generation_config(model):
        out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device), **kwargs)
    generated = out.sequences[:, input_ids.shape[1]:]
    logprobs, entropies = (x.cpu() for x in token_statistics(out.logits, generated))  # on the model's device
    generated = generated.cpu()
    # later tokens of a stopped row are padding; _cut ends a row at its EOS
    ends = [stopper.stopped_at.get(r, generated.shape[1]) for r in range(generated.shape[0])]
    return generated, logprobs, entropies, ends


# ---------------------------------------------------------------- questions, batches, cache

class GenerationClock:
    """Accumulates generation seconds batch by batch (the samplers call `add`); `timing()` builds the one
    GenerationTiming record of the run."""

    def __init__(self) -> None:
        self._greedy_s, self._sampling_s, self._measured = 0.0, 0.0, False

    def add(self, *, greedy_s: float = 0.0, sampling_s: float = 0.0) -> None:
        self._greedy_s += greedy_s
        self._sampling_s += sampling_s
        self._measured = True

    def timing(self) -> GenerationTiming:
        return GenerationTiming(self._greedy_s, self._sampling_s, self._measured)


def _sample_batch(model, tokenizer, batch: Sequence[Question], prompts: dict[str, str],
                  settings: MeasureSettings, stop: Sequence[str], clock: GenerationClock) -> list[QuestionSamples]:
    """One batch in decode calls of the rows budget's prompts (measure/sampling/batching.py). The compact decoder
    decodes greedy + N samples per prompt in one call; its wall time is split between greedy and
    sampling seconds by answer tokens (one call has one clock). decoder=generate: a greedy call, then a
    sampling call, per decode call's prompts."""
    common = dict(temperature=settings.temperature, top_p=settings.top_p,
                  max_new_tokens=settings.max_new_tokens, stop=stop, decoder=settings.decoder)
    together = settings.decoder == "compact"
    plan = decode_plan(settings, model, settings.n_samples + together)
    out: list[QuestionSamples] = []
    by_id = {q.id: q for q in batch}
    for chunk in calls([q.id for q in batch], plan.prompts_per_call):
        texts = [prompts[i] for i in chunk]
        started = time.perf_counter()
        if together:
            rows = generate(model, tokenizer, texts, n=settings.n_samples, do_sample=True, greedy=True,
                            seed=derive_seed(settings.seed, "sample", chunk), **common)
            seconds = time.perf_counter() - started
            greedy_tokens = sum(len(r[0].token_logprobs) for r in rows)
            share = greedy_tokens / max(1, sum(len(g.token_logprobs) for r in rows for g in r))
            clock.add(greedy_s=seconds * share, sampling_s=seconds * (1 - share))
            out += [QuestionSamples(by_id[i], r[0], tuple(r[1:])) for i, r in zip(chunk, rows)]
            continue
        greedy = generate(model, tokenizer, texts, n=1, do_sample=False,
                          seed=derive_seed(settings.seed, "greedy", chunk), **common)
        clock.add(greedy_s=time.perf_counter() - started)
        started = time.perf_counter()
        samples = generate(model, tokenizer, texts, n=settings.n_samples, do_sample=True,
                           seed=derive_seed(settings.seed, "sample", chunk), **common)
        clock.add(sampling_s=time.perf_counter() - started)
        out += [QuestionSamples(by_id[i], g[0], tuple(smp)) for i, g, smp in zip(chunk, greedy, samples)]
    return out


def sample_questions(model, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str,
                     cache_path: Path | None = None, clock: GenerationClock | None = None, *,
                     shard: tuple[int, int] = (0, 1), batch_size: int | None = None,
                     sampler: Callable[..., list[QuestionSamples]] | None = None,
                     cache_tag: dict | None = None) -> list[QuestionSamples]:
    """Greedy + settings.n_samples answers per question, in input order; resumes from `cache_path`.

    Questions go in batches (measure/sampling/batching.py: settings.batch_size questions, default one decode
    call's worth of the rows budget settings.rows_per_call), each decoded in calls of at most that many
    rows (greedy + N per prompt). After each batch its
    rows are appended to `cache_path` (JSONL in the samples.jsonl format, flushed and fsynced); a
    re-run skips the batches found there complete (a batch cut short by a kill is sampled again whole,
    so its seeds and padding stay those of the uninterrupted run). `clock`, if given, accumulates the
    wall seconds spent in greedy and in sampled generation (GenerationClock).

    shard=(rank, world): sample only this process's batches (`batch_plan`) and return only its rows,
    in input order. `batch_size` overrides settings.batch_size for the plan (a backend with its own
    batching); `sampler(model, tokenizer, batch, prompts, settings, stop, clock)` replaces the HF
    batch sampler (measure/sampling/backends.py), and `cache_tag` (e.g. {"backend": "vllm"}) joins the settings
    a cache must match, so one backend never resumes from another's rows.
    """
    from tqdm.auto import tqdm

    stop = stop_strings(settings.stop, prompt_format)
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise UsageError(f"duplicate question ids: {', '.join(dupes[:5])}")
    prompts = {q.id: format_prompt(tokenizer, q.text, prompt_format, settings.fewshot) for q in questions}
    done: dict[str, QuestionSamples] = {}
    if cache_path is not None:
        cache_path = Path(cache_path)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**cache_settings(settings, prompt_format, stop), **to_jsonable(cache_tag or {})}
        done = open_cache(cache_path, meta, questions, settings.n_samples)
    if hasattr(model, "eval"):
        model.eval()
    rows_per_prompt = settings.n_samples + (settings.decoder == "compact")
    plan = batch_plan(len(questions), batch_size or decode_plan(settings, model, rows_per_prompt).batch_size, *shard)
    mine = [questions[i] for batch in plan for i in batch]
    sampler = sampler or _sample_batch
    initial = sum(all(questions[i].id in done for i in batch) * len(batch) for batch in plan)
    with tqdm(total=len(mine), initial=initial, desc="sampling", unit="question", disable=shard[0] != 0) as bar:
        for batch_range in plan:  # batches fixed by the full list, so resuming and sharding are exact
            batch = [questions[i] for i in batch_range]
            if all(q.id in done for q in batch):
                continue
            rows = sampler(model, tokenizer, batch, prompts, settings, stop, clock if clock is not None else GenerationClock())
            if cache_path is not None:
                append_cache(cache_path, rows)
            done.update((r.question.id, r) for r in rows)
            bar.update(len(batch))
    return [QuestionSamples(q, done[q.id].greedy, done[q.id].samples) for q in mine]
