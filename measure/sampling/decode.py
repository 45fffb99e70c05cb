"""The default decoder of the HF backend: batched sampling that drops finished rows and prefills each prompt once.

`model.generate` keeps every row of a batch in the forward pass until the longest row ends, prefills a
prompt once per requested sequence (num_return_sequences copies), and with output_logits=True holds
rows x steps x vocabulary logits until it returns. For uncertainty sampling (N short answers per
prompt) all three are waste. This loop, over the same model forward with its own KV cache:
  - prefills the k distinct prompts once and repeats their cache per row (Cache.batch_repeat_interleave);
    with `greedy=True` each prompt's first row is its greedy answer (argmax), decoded in the same batch as
    its N samples: one prefill and one forward per step for both;
  - drops a row from the batch and the cache as soon as it ends (EOS, a stop string, or max_new_tokens;
    Cache.batch_select_indices), so every forward pass computes only live rows;
  - turns each step's raw logits into the token statistics at once ([live rows] numbers, not logits),
    kept on the model's device; one host sync per step (which rows ended).
The sampling distribution is generate's: softmax of the logits warped by transformers'
TemperatureLogitsWarper and TopPLogitsWarper (at T=1, top_p=1 that is the softmax the statistics already
computed); a token is drawn by inverse CDF (one uniform per sampled row, searchsorted in the cumulative
distribution), which draws from the same distribution as torch.multinomial at a fraction of its CPU cost
(measured: 66 vs 395 ms for 176 x 49152 probabilities), so samples differ from generate's (equally
valid) ones. Greedy = argmax of the raw logits. One forward pass per decode step (the prefill yields
step 1's logits), none extra. Seeded runs are deterministic.

Models whose cache cannot drop rows (linear-attention / recurrent layers) need decoder=generate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from measure.common.errors import UsageError


@dataclass
class Decoded:
    """Per generated row (prompt-major, n rows per prompt): tokens [rows, steps] (pad after a row's end),
    lengths (tokens generated, EOS included), logprobs/entropies [rows, steps] of the raw distribution."""
    tokens: torch.Tensor
    lengths: list[int]
    logprobs: torch.Tensor
    entropies: torch.Tensor


def _check_cache(cache, model) -> None:
    """Only cache layers whose batch rows can be repeated and selected exactly (keys/values and nothing
    else per row); subclasses may keep more per-row state (compressed KV, recurrent states), so exact types."""
    from transformers import cache_utils
    from transformers.cache_utils import DynamicCache
    # the layer kinds of this transformers release (DummyLayer, DynamicIndexedLayer are newer than 5.0)
    exact = tuple(getattr(cache_utils, name) for name in ("DynamicLayer", "DynamicSlidingWindowLayer",
                                                          "DynamicIndexedLayer", "DummyLayer") if hasattr(cache_utils, name))
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, DynamicCache) or layers is None or any(type(layer) not in exact for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers or []}) or [type(cache).__name__]
        raise UsageError(f"{type(model).__name__}: its cache ({', '.join(kinds)}) cannot drop finished rows; "
                         "measure it with decoder=generate (valid choices: compact, generate)")


def _check_model(model) -> None:
    """PEFT prompt learning (prompt/prefix/p-tuning) adds its virtual tokens in generate's input preparation,
    which this loop does not call."""
    config = getattr(model, "active_peft_config", None)
    if getattr(config, "is_prompt_learning", False):
        raise UsageError(f"{type(model).__name__} uses PEFT prompt learning ({config.peft_type}); "
                         "measure it with decoder=generate (valid choices: compact, generate)")


def _last_logits_only(model) -> dict:
    """`logits_to_keep=1` where the forward takes it (as generate does): the prefill then computes the
    vocabulary projection for the last prompt position only, not for every prompt token."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model   # a PEFT wrapper forwards kwargs
    supports = getattr(base, "_supports_logits_to_keep", None)
    return {"logits_to_keep": 1} if callable(supports) and supports() else {}


def cache_argument(model) -> str:
    """The forward's name for the KV cache: `cache` (transformers 5.24 has it and deprecates
    `past_key_values`, to be removed in 5.40) or `past_key_values` (earlier releases and forwards written
    against them), read from the forward's signature, so the decoder neither warns nor breaks on either side
    of the rename. The output field has the same name."""
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model   # PEFT forwards **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def step_statistics(logits: torch.Tensor, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw logits [rows, V] and chosen tokens [rows] -> (log p(chosen), full-vocabulary entropy), in nats."""
    logp, probs = _distribution(logits)
    return logp.gather(-1, chosen[:, None]).squeeze(-1), _entropy(logp, probs)


def _distribution(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p, p) over the vocabulary. log p is clamped in place to the lowest finite float: p log p = 0
    where p = 0 (a -inf logit), and no token with p > 0 changes (the chosen token's log p is read from it)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    probs = logp.exp()
    return logp.clamp_(min=torch.finfo(logp.dtype).min), probs


def _entropy(logp: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    return -torch.linalg.vecdot(probs, logp)   # one fused pass, no [rows, V] temporaries


def draw(probs: torch.Tensor) -> torch.Tensor:
    """One token per row of probabilities [rows, V] by inverse CDF: the first index whose cumulative mass
    exceeds u * total, u ~ U[0, 1) (scaled by the row's total so float rounding never runs off the end;
    a zero-probability token has no interval and is never drawn)."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


@dataclass
class LiveBatch:
    """The rows still decoding: their KV cache, attention mask, next position, and which generated row each
    batch row is (`live`, on the CPU)."""
    cache: Any
    mask: torch.Tensor
    next_position: torch.Tensor
    live: torch.Tensor
    cache_name: str = "past_key_values"

    def keep(self, keep: torch.Tensor) -> None:
        """Keep only batch rows `keep` (CPU indices: valid for cache layers on any device)."""
        on_device = keep.to(self.mask.device)
        self.mask, self.next_position, self.live = self.mask[on_device], self.next_position[on_device], self.live[keep]
        self.cache.batch_select_indices(keep)

    def forward(self, model, tokens: torch.Tensor) -> torch.Tensor:
        """One decode step: each live row is fed its token [rows]; returns the next logits [rows, V] (float32)."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.next_position[:, None],
                    use_cache=True, **{self.cache_name: self.cache})
        self.next_position = self.next_position + 1
        return out.logits[:, -1].float()


def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int) -> tuple[torch.Tensor, LiveBatch]:
    """One forward over the k distinct left-padded prompts, its cache repeated n times (prompt-major rows);
    returns the first step's logits [k * n, V] (float32) and the live batch."""
    mask = attention_mask.to(input_ids.device)
    # generate's positions under left padding: count real tokens; pads get a harmless 1
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **_last_logits_only(model))
    name = cache_argument(model)
    cache = out.get(name) if hasattr(out, "get") else getattr(out, name, None)  # recurrent models: cache_params
    _check_cache(cache, model)
    logits = out.logits[:, -1].float().repeat_interleave(n, 0)
    if n > 1:
        cache.batch_repeat_interleave(n)
    return logits, LiveBatch(cache, mask.repeat_interleave(n, 0), positions[:, -1].repeat_interleave(n, 0) + 1,
                             torch.arange(logits.shape[0]), name)


@torch.inference_mode()
def decode_compact(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, n: int, do_sample: bool,
                   temperature: float, top_p: float, max_new_tokens: int, eos_ids: Sequence[int], pad_id: int,
                   have_stop: Callable[[list[list[int]]], list[bool]] | None = None, greedy: bool = False) -> Decoded:
    """Decode n continuations of each left-padded prompt (with `greedy` and do_sample: n + 1 rows per
    prompt, the first its greedy answer). `have_stop(rows)` says, for the generated tokens so far of each
    live row, whether they contain a stop string (the row ends at that step, its last token kept)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    _check_model(model)
    greedy = greedy and do_sample
    per_prompt = n + greedy
    rows, device = input_ids.shape[0] * per_prompt, input_ids.device
    # on the model's device: the loop moves nothing to the host but which rows ended
    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(rows, max_new_tokens, device=device)
    entropies, lengths = torch.zeros_like(logprobs), torch.zeros(rows, dtype=torch.long, device=device)
    if max_new_tokens <= 0 or rows == 0:
        return Decoded(tokens[:, :0].cpu(), lengths.tolist(), logprobs[:, :0].cpu(), entropies[:, :0].cpu())
    # generate's sampling warpers, added under generate's conditions (none for greedy)
    warpers = LogitsProcessorList(([TemperatureLogitsWarper(float(temperature))] if float(temperature) != 1.0 else [])
                                  + ([TopPLogitsWarper(float(top_p))] if top_p < 1.0 else []))
    eos = torch.tensor(list(eos_ids), device=device)

    logits, batch = prefill(model, input_ids, attention_mask, per_prompt)
    for step in range(max_new_tokens):
        where = batch.live.to(device)
        logp, probs = _distribution(logits)
        chosen = logits.argmax(-1)
        if do_sample:   # one uniform per live row (a greedy row's goes unused): no boolean indexing, no sync
            drawn = draw(torch.softmax(warpers(None, logits), dim=-1) if len(warpers) else probs)
            chosen = torch.where(where % per_prompt != 0, drawn, chosen) if greedy else drawn
        tokens[where, step], lengths[where] = chosen, step + 1
        logprobs[where, step] = logp.gather(-1, chosen[:, None]).squeeze(-1)
        entropies[where, step] = _entropy(logp, probs)
        ended = torch.isin(chosen, eos)
        if have_stop is not None:
            open_rows = (~ended).nonzero().squeeze(1)
            hits = have_stop(tokens[where[open_rows], :step + 1].tolist())
            ended[open_rows] |= torch.tensor(hits, dtype=torch.bool, device=device)
        ended = ended.cpu()   # the step's one host sync: which rows leave the batch
        if step == max_new_tokens - 1 or bool(ended.all()):
            break
        if bool(ended.any()):   # drop the finished rows from the batch and the cache
            keep = (~ended).nonzero().squeeze(1)
            batch.keep(keep)
            chosen = chosen[keep.to(device)]
        logits = batch.forward(model, chosen)
    lengths = lengths.tolist()
    steps = max(lengths)
    return Decoded(tokens[:, :steps].cpu(), lengths, logprobs[:, :steps].cpu(), entropies[:, :steps].cpu())
