"""Prompts: the text a model continues for a question, its token ids, and the stop strings that end an answer.

Training (train/data.py via train.recipe's prompt_format) and measurement use the same formats, so a
stage is measured in the format it was trained in:
  chat  the tokenizer's chat template (instruct models, as deployed);
  qa    few-shot "Q: ...\nA:" blocks (base models; measure.fewshot replaces the default shots);
  hh    Anthropic HH turns "\n\nHuman: {question}\n\nAssistant:" (models tuned on HH dialogues without a
        chat template, e.g. the Pythia HH SFT/DPO/PPO checkpoints; measure/data/hh.py), zero-shot unless
        measure.fewshot gives earlier turns.
qa and hh add their format's next-turn marker to the stop strings (`stop_strings`): a model that keeps
following the pattern writes it instead of ending with EOS, and what follows it is not part of the answer.
"""
from __future__ import annotations

from typing import Sequence

import torch

from measure.common.errors import UsageError, suggest
from measure.data.hh import HH_HUMAN, hh_prompt

PROMPT_FORMATS = ("chat", "hh", "qa")
# Neutral general-knowledge shots for base models (prompt_format=qa); replace via measure.fewshot.
DEFAULT_FEWSHOT: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "Paris."),
    ("How many legs does a spider have?", "Eight."),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare."),
)
# A base model that keeps following the Q/A pattern starts the next block with this; always a stop in qa format.
QA_STOP = "\nQ:"
# An HH model that does not end its turn with EOS starts the next human turn; always a stop in hh format.
HH_STOP = HH_HUMAN
FORMAT_STOPS = {"qa": QA_STOP, "hh": HH_STOP}


def format_prompt(tokenizer, question: str, prompt_format: str,
                  fewshot: Sequence[tuple[str, str]] | None = None) -> str:
    """The text the model continues: its chat template (`chat`), few-shot `Q: ...\\nA:` blocks (`qa`; default
    shots unless `fewshot` is given) or HH turns (`hh`; earlier turns only when `fewshot` is given)."""
    if prompt_format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise UsageError("prompt_format 'chat' needs a tokenizer with a chat template; use prompt_format=qa for base models")
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    if prompt_format == "qa":
        shots = DEFAULT_FEWSHOT if fewshot is None else fewshot
        return "".join(f"Q: {q}\nA: {a}\n\n" for q, a in shots) + f"Q: {question}\nA:"
    if prompt_format == "hh":
        return hh_prompt(question, fewshot or ())
    raise UsageError(f"unknown prompt_format {prompt_format!r}{suggest(prompt_format, PROMPT_FORMATS)}")


def stop_strings(stop: Sequence[str], prompt_format: str) -> tuple[str, ...]:
    """The stop strings actually used: the configured ones, plus the format's next-turn marker (QA_STOP in
    `qa`, HH_STOP in `hh`; `chat` ends turns with the template's EOS token)."""
    out, own = tuple(stop), FORMAT_STOPS.get(prompt_format)
    return out + (own,) if own is not None and own not in out else out


def answer_end_ids(configured, tokenizer) -> list[int]:
    """The token ids that end an answer: the generation config's `eos_token_id` (an int, a list -- instruct
    models often have several, e.g. <|im_end|> and <|endoftext|> -- or None) plus the tokenizer's EOS.
    The one EOS rule of both backends; none at all is a UsageError (generation could never stop)."""
    ids = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise UsageError("the model and tokenizer define no EOS token; generation could not stop")
    return ids


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt token ids. A chat template already starts with BOS when the model wants one; adding
    another would double it, so special tokens are added only to prompts that lack it."""
    bos = tokenizer.bos_token
    return tokenizer(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))["input_ids"]


def encode_left_padded(tokenizer, prompts: Sequence[str], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, ids in enumerate(encoded):
        if ids:
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            mask[i, width - len(ids):] = 1
    return input_ids, mask
