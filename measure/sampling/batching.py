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
import os
from dataclasses import dataclass
from typing import Sequence

from measure.common.errors import UsageError

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


def _weights(model) -> tuple[int, int]:
    """(bytes per weight element, bytes of all weights) of a loaded model."""
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    return (params[0].element_size() if params else 2), sum(p.numel() * p.element_size() for p in params)


def row_bytes(model, max_new_tokens: int) -> int | None:
    """Bytes one decode row needs: its KV cache for ASSUMED_PROMPT + max_new_tokens tokens, plus four float32
    vocabulary rows of logits/probabilities (None when the model's config does not give its shapes)."""
    config = getattr(model, "config", None)
    kv = _kv_bytes_per_token(config, _weights(model)[0]) if config is not None else None
    if kv is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return kv * (ASSUMED_PROMPT + max_new_tokens) + 4 * 4 * (getattr(text, "vocab_size", 0) or 0)


def auto_rows(model, max_new_tokens: int) -> tuple[int, str]:
    """The default rows budget for this model on its device (see the module docstring)."""
    import torch
    device = getattr(model, "device", torch.device("cpu"))
    if getattr(device, "type", "cpu") != "cuda":
        return CPU_ROWS, "cpu default"
    total = torch.cuda.get_device_properties(device).total_memory
    per_row = row_bytes(model, max_new_tokens)
    if per_row is None:
        return 512, "cuda: model config without layer shapes, fixed 512"
    rows = int(max(64, min(MAX_ROWS, (total // 2 - _weights(model)[1]) // per_row)))
    return rows, f"cuda: (total memory / 2 - weights) / {per_row} bytes per row"


def device_memory(model) -> tuple[int, str]:
    """(total bytes, what) of the memory the model decodes in: its GPU's, or this machine's RAM."""
    import torch
    device = getattr(model, "device", torch.device("cpu"))
    if getattr(device, "type", "cpu") == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, f"the GPU ({device})"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"


def check_memory(settings, model, prompts: int, rows_per_prompt: int) -> None:
    """Refuse, before the first prefill, a decode call whose estimated memory (rows x row_bytes) exceeds the
    device's memory less the weights: n_samples=10**6 would otherwise die inside the prefill."""
    per_row = row_bytes(model, settings.max_new_tokens)
    if per_row is None:
        return
    total, where = device_memory(model)
    room = total - _weights(model)[1]
    rows = prompts * rows_per_prompt
    if rows * per_row > room:
        gb = lambda b: f"{b / 2**30:.1f} GB"  # noqa: E731
        raise UsageError(f"n_samples={settings.n_samples}: one decode call would hold {rows} rows ({prompts} prompt(s) x "
                         f"{rows_per_prompt} answers), about {gb(rows * per_row)} for this model ({per_row} bytes per "
                         f"row: KV cache of {ASSUMED_PROMPT} prompt + {settings.max_new_tokens} new tokens, and logits), "
                         f"more than the {gb(room)} {where} has besides the weights; lower n_samples or max_new_tokens "
                         "(or rows_per_call; one prompt's answers are always decoded together)")


def decode_plan(settings, model, rows_per_prompt: int) -> DecodePlan:
    """The plan for these settings: rows budget, prompts per call, questions per batch; a call too big for the
    device's memory is refused (check_memory)."""
    if settings.rows_per_call is not None:
        rows, source = settings.rows_per_call, "setting"
    else:
        rows, source = auto_rows(model, settings.max_new_tokens)
    prompts = max(1, rows // rows_per_prompt)
    check_memory(settings, model, prompts, rows_per_prompt)
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
