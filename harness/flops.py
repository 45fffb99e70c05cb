"""Model FLOPs of a causal LM's forward calls as they happen, and this machine's fp32 matmul roof at its shapes.

The count (model FLOPs, as MFU counts them: what the model's arithmetic needs, not what a kernel happens to do).
For one forward call with R rows of S new positions attending to K positions (the attention mask's length: the
KV cache plus the new positions, padding included), whose LM head projects H positions:

    forward  = 2*M*R*S + 2*h*V*H + 4*L*d*R*S*K  [+ 2*P*R*S with a LoRA adapter training]

  M  multiply-adds per token of the decoder's linear layers, sum of in*out over its nn.Linear modules
     (Llama: L*(h*(d + 2*d_kv) + d*h + 3*h*I)); the embedding lookup costs nothing
  h*V  the LM head (hidden x vocabulary, tied or not); H = R*S for a full forward, R for a sampling step (the
     sampler asks for the last position's logits only), R*(S-1) for TRL's fused head (trl.trainer.utils.
     add_fused_lm_head, which SFTTrainer and DPOTrainer use: every position but the last, projected in tiles
     without materializing the logits; its module hook never fires, so the call's `fused_lm_head` says so)
  4*L*d*K  per position: Q.K^T and attention-weights.V over K positions in L layers, d = query heads x head dim;
     the full K even where a causal mask hides half of it (the PaLM / TRL compute_flops_per_token convention)
  P  the LoRA adapter's trainable parameters (A and B of every adapted linear)

A call made with autograd on (training) also runs a backward through the FROZEN base:

    backward = 2*M*R*S + 2*h*V*H + 8*L*d*R*S*K + 4*P*R*S

  activation gradients of every linear (dx = dy.W, as many FLOPs as its forward) and none for the frozen weights;
  attention's backward needs gradients of Q and K (scores) and of the weights and V: twice its forward; the LoRA
  matrices need activation AND weight gradients: twice their forward. So a LoRA step is ~2x its forward, not the
  3x of full fine-tuning (TRL's compute_flops_per_token assumes 3x).
Not counted: norms, rotary, softmax, activation functions and the loss (O(R*S*h) or O(R*S*V) elementwise work);
the projections that read the frozen embeddings need no activation gradient, and torch computes none (Llama:
layer 0's q, k, v and their LoRA A; the count is high by 0.2% of a SmolLM2-135M LoRA step); TRL's fused head
recomputes its logits in the backward (one more 2*h*V*H of hardware work, not model FLOPs).
Sampling one token at context K: 2*M + 2*h*V + 4*L*d*K, plus the prompts' prefills (counted as the calls they are).

The roof: torch.matmul in fp32 of (m x in) by (in x out), the weight stored (out, in) as nn.Linear stores it, for
every distinct linear shape of the decoder and the head, at the row counts m the workload uses; after a warm-up,
the median of `repeats` timings; 2*m*in*out / seconds per shape, and the roof = the rate at which the model's own
mix of those matmuls runs: sum(count * 2*m*in*out) / sum(count * seconds) (the FLOP-weighted harmonic mean).
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    linear_shapes: tuple[tuple[int, int, int], ...]   # (in, out, count) over the decoder's nn.Linear modules
    hidden: int
    vocab: int
    layers: int
    attn_width: int       # d: query heads x head dim
    lora_params: int = 0  # P

    @property
    def linear_macs(self) -> int:   # M
        return sum(i * o * c for i, o, c in self.linear_shapes)


@dataclass
class Call:
    """One forward call of the model, as the counter saw it."""
    rows: int
    new: int               # S: new positions per row
    context: int           # K: positions attended to
    grad: bool             # autograd on: a backward follows
    head: int | None = None   # H: positions the LM head projected (None until known)
    fused: bool = False


def model_shape(model, lora_params: int = 0) -> ModelShape:
    """The shape of a Hugging Face causal LM (before any adapter is added: LoRA modules are skipped)."""
    import torch
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    decoder = model.get_decoder()
    shapes = Counter((m.in_features, m.out_features) for name, m in decoder.named_modules()
                     if isinstance(m, torch.nn.Linear) and "lora_" not in name)
    if not shapes:
        raise ValueError(f"{type(model).__name__}: no nn.Linear layers in its decoder; the FLOP count needs them")
    vocab, hidden = model.get_output_embeddings().weight.shape
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(tuple((i, o, c) for (i, o), c in sorted(shapes.items())), hidden=int(hidden), vocab=int(vocab),
                      layers=config.num_hidden_layers, attn_width=heads * head_dim, lora_params=lora_params)


def forward_flops(s: ModelShape, c: Call) -> int:
    tokens = c.rows * c.new
    lora = 2 * s.lora_params * tokens if c.grad else 0
    return (2 * s.linear_macs * tokens + 2 * s.hidden * s.vocab * (c.head or 0)
            + 4 * s.layers * s.attn_width * tokens * c.context + lora)


def backward_flops(s: ModelShape, c: Call) -> int:
    if not c.grad:
        return 0
    tokens = c.rows * c.new
    return (2 * s.linear_macs * tokens + 2 * s.hidden * s.vocab * (c.head or 0)
            + 8 * s.layers * s.attn_width * tokens * c.context + 4 * s.lora_params * tokens)


def call_flops(s: ModelShape, c: Call) -> int:
    return forward_flops(s, c) + backward_flops(s, c)


def attention_flops(s: ModelShape, c: Call) -> int:
    return 4 * s.layers * s.attn_width * c.rows * c.new * c.context * (3 if c.grad else 1)


@dataclass
class CallCounter:
    """Records every forward call of `model` while entered (hooks; a few microseconds per call)."""
    model: Any
    calls: list[Call] = field(default_factory=list)

    def __enter__(self) -> "CallCounter":
        self._handles = [self.model.register_forward_pre_hook(self._before, with_kwargs=True),
                         self.model.register_forward_hook(self._after, with_kwargs=True),
                         self.model.get_output_embeddings().register_forward_hook(self._head)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _before(self, module, args, kwargs) -> None:
        import torch
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        rows, new = int(ids.shape[0]), int(ids.shape[1])
        mask = kwargs.get("attention_mask")
        if mask is not None and getattr(mask, "dim", lambda: 0)() == 2:
            context = int(mask.shape[-1])
        else:
            cache = kwargs.get("past_key_values", kwargs.get("cache"))
            context = new + (int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else 0)
        self.calls.append(Call(rows, new, context, torch.is_grad_enabled(), fused=bool(kwargs.get("fused_lm_head"))))

    def _head(self, module, args, output) -> None:
        if not self.calls:   # the head called on its own, outside a model call: not a forward of the model
            return
        call = self.calls[-1]
        call.head = (call.head or 0) + int(args[0].shape[:-1].numel())

    def _after(self, module, args, kwargs, output) -> None:
        call = self.calls[-1]
        if call.head is None:
            call.head = call.rows * (call.new - 1) if call.fused else 0


def time_matmul(m: int, k: int, n: int, repeats: int) -> float:
    """Median seconds of an fp32 (m x k) @ (k x n) with the weight stored (n, k), after one warm-up."""
    import torch
    x, w = torch.randn(m, k), torch.randn(n, k)
    torch.matmul(x, w.t())
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(x, w.t())
        times.append(time.perf_counter() - started)
    return float(statistics.median(times))


def matmul_roof(s: ModelShape, rows: int, repeats: int) -> dict:
    """Per shape and in all: the fp32 matmul rate at `rows` rows (module docstring)."""
    shapes = [*((i, o, c, "decoder") for i, o, c in s.linear_shapes), (s.hidden, s.vocab, 1, "head")]
    out, flops, seconds = [], 0, 0.0
    for k, n, count, where in shapes:
        sec = time_matmul(rows, k, n, repeats)
        f = 2 * rows * k * n
        out.append({"where": where, "m": rows, "k": k, "n": n, "count": count, "seconds": sec,
                    "gflops_per_s": f / sec / 1e9})
        flops, seconds = flops + count * f, seconds + count * sec
    return {"rows": rows, "repeats": repeats, "shapes": out, "gflops_per_s": flops / seconds / 1e9}
