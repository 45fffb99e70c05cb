"""The compact decoder's forward passes alone: its matched floor.

The raw-`generate` floor (b) prefills N copies of each prompt and keeps every row until the longest ends,
so it does more model work than the compact decoder. This replays exactly the compact decoder's model
work for each recorded decode: the prefill of the k distinct prompts (logits_to_keep=1 where supported),
the cache repeated N times, then at every step a forward of the rows still live at that step, fed the
tokens the toolkit generated, with finished rows dropped from batch and cache at the same steps. No
sampling, token statistics, stop-string checks or text decoding. toolkit / this = the cost of the
toolkit's own bookkeeping on top of the model.
"""
from __future__ import annotations

from typing import Sequence

import torch

from measure import prefill


@torch.inference_mode()
def replay_forwards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int,
                    tokens: torch.Tensor, lengths: Sequence[int]) -> int:
    """Run one decode's forward passes (measure.sampling.decode's own prefill and step); returns how many (must
    equal the decode's steps)."""
    _, batch = prefill(model, input_ids, attention_mask, n)
    length, forwards = torch.tensor(list(lengths)), 1
    for step in range(max(lengths) - 1):
        going = length[batch.live] > step + 1            # rows that generate a token after this one
        if not bool(going.all()):
            batch.keep(going.nonzero().squeeze(1))
        batch.forward(model, tokens[batch.live, step].to(input_ids.device))
        forwards += 1
    return forwards
