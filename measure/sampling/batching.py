"""How the HF backend's questions are cut into batches and decode calls: sized by rows, not by prompts.

A decode call holds prompts x rows per prompt (the greedy answer + N samples with the compact decoder), so
its cost is set by rows: at N=10 a call of 16 prompts is 176 rows. Two settings (measure/scoring/config.py):

  rows_per_call  the rows budget of one decode call. None (default) = auto:
                   CPU   CPU_ROWS (176 = 16 prompts at N=10): on SmolLM2-135M on 2 cores, 160 rows per call
                         were 2.4x faster than 10 (issue 11: 36.6 vs 86.2 s), since a step's matrix products
                         only reach the CPU's compute rate with many rows; a bigger call holds a bigger KV
                         cache, which transformers' DynamicCache copies at every step. Measured here on a
                         shared machine (16 questions, 1 thread): 88 rows 45.3 CPU s, 176 rows 48.3 CPU s,
                         within the noise; the old default (a 16-row greedy call + 160-row sampling
                         calls) 55.1 CPU s. rows_per_call overrides it;
                   CUDA  derived from the GPU's TOTAL memory and the model: half of it, less the weights,
                         over the bytes one row needs (KV cache for ASSUMED_PROMPT + max_new_tokens tokens,
                         plus four float32 vocabulary rows of logits/probabilities), 64..MAX_ROWS rows.
                         Total, not free, memory: the same settings on the same GPU model always give the
                         same plan, hence identical samples (free memory varies from run to run).
                 a decode call takes max(1, rows_per_call // rows per prompt) prompts.
  batch_size     questions per batch: the unit of the resume cache (rows appended after each batch) and of
                 sharding (whole batches dealt to ranks). None (default) = one decode call's prompts. An
                 explicit batch_size (old recipes: 16, 160) keeps that unit; its batch is decoded in calls of
                 the rows budget's prompts, so `batch_size: 160` no longer means 160-prompt greedy calls.

Seeds and left padding belong to a decode call, whose prompts are fixed by the full question list and
these two numbers, so a resumed or sharded run equals an uninterrupted single-process one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

CPU_ROWS = 176
MAX_ROWS = 4096
ASSUMED_PROMPT = 256   # tokens a prompt is assumed to take when sizing GPU rows (chat templates + question)


@dataclass(frozen=True)
class DecodePlan:
    rows_per_call: int       # the rows budget used
    prompts_per_call: int    # prompts per decode call
    batch_size: int          # questions per batch (resume / shard unit)
    source: str              # how rows_per_call was chosen: "setting", "cpu default", "cuda: ..."


def _kv_bytes_per_token(config, dtype_bytes: int) -> int | None:
    """Keys + values of one token over all layers, from the model's config (None if it does not say)."""
    config = getattr(config, "get_text_config", lambda: config)()
    layers, heads = getattr(config, "num_hidden_layers", None), getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not (layers and heads and hidden):
        return None
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def auto_rows(model, max_new_tokens: int) -> tuple[int, str]:
    """The default rows budget for this model on its device (see the module docstring)."""
    import torch
    device = getattr(model, "device", torch.device("cpu"))
    if getattr(device, "type", "cpu") != "cuda":
        return CPU_ROWS, "cpu default"
    params = list(model.parameters())
    dtype_bytes = params[0].element_size() if params else 2
    weights = sum(p.numel() * p.element_size() for p in params)
    total = torch.cuda.get_device_properties(device).total_memory
    kv = _kv_bytes_per_token(model.config, dtype_bytes)
    vocab = getattr(model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config,
                    "vocab_size", 0) or 0
    if kv is None:
        return 512, "cuda: model config without layer shapes, fixed 512"
    per_row = kv * (ASSUMED_PROMPT + max_new_tokens) + 4 * 4 * vocab
    rows = int(max(64, min(MAX_ROWS, (total // 2 - weights) // per_row)))
    return rows, f"cuda: (total memory / 2 - weights) / {per_row} bytes per row"


def decode_plan(settings, model, rows_per_prompt: int) -> DecodePlan:
    """The plan for these settings: rows budget, prompts per call, questions per batch."""
    if settings.rows_per_call is not None:
        rows, source = settings.rows_per_call, "setting"
    else:
        rows, source = auto_rows(model, settings.max_new_tokens)
    prompts = max(1, rows // rows_per_prompt)
    return DecodePlan(rows, prompts, settings.batch_size or prompts, source)


def calls(ids: Sequence[str], prompts_per_call: int) -> list[list[str]]:
    """A batch's question ids cut into decode calls."""
    return [list(ids[start:start + prompts_per_call]) for start in range(0, len(ids), prompts_per_call)]


def derive_seed(seed: int, tag: str, ids: Sequence[str]) -> int:
    """A per-call seed from the run seed and the questions in the call (stable across processes)."""
    digest = hashlib.sha256(json.dumps([seed, tag, list(ids)]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def batch_plan(n_questions: int, batch_size: int, rank: int = 0, world: int = 1) -> list[range]:
    """The batches (index ranges into the full question list) that process `rank` of `world` samples.

    Batches are cut from the full list first and batch b goes to rank b % world: a batch's content,
    hence its seeds and its left padding, never depends on the number of processes, so the union of
    the ranks' rows equals a single process's output."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    starts = range(0, n_questions, batch_size)
    return [range(start, min(start + batch_size, n_questions)) for b, start in enumerate(starts) if b % world == rank]
