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

from measure.decode import _last_logits_only


@torch.inference_mode()
def replay_forwards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int,
                    tokens: torch.Tensor, lengths: Sequence[int]) -> int:
    """Run one decode's forward passes; returns how many (must equal the decode's steps)."""
    device = input_ids.device
    mask = attention_mask.to(device)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **_last_logits_only(model))
    cache, forwards = out.past_key_values, 1
    if n > 1:
        cache.batch_repeat_interleave(n)
    mask, next_position = mask.repeat_interleave(n, 0), positions[:, -1].repeat_interleave(n, 0) + 1
    live, length = torch.arange(len(lengths)), torch.tensor(list(lengths))
    for step in range(max(lengths) - 1):
        going = length[live] > step + 1            # rows that generate a token after this one
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            live, mask, next_position = live[keep], mask[keep.to(device)], next_position[keep.to(device)]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        model(input_ids=tokens[live, step][:, None].to(device), attention_mask=mask,
              position_ids=next_position[:, None], past_key_values=cache, use_cache=True)
        next_position, forwards = next_position + 1, forwards + 1
    return forwards
