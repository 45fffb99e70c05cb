"""Generated token ids -> the answer: its ids, its text, and how many steps' token statistics belong to it.

The one rule both backends apply to every generated row (measure.sampling.sample._cut), and that the length
sensitivity (measure.analysis.length_sensitivity) applies to a prefix of an answer's stored ids, so the text
of a k-token prefix is exactly the text a max_new_tokens=k run would have written for the same tokens:
  - ids: the generated tokens up to and including the first EOS (what follows it is the decoder's padding);
  - text: tokenizer.decode(ids before the EOS, skip_special_tokens=True), cut before the first occurrence of
    any stop string, whitespace-stripped;
  - statistics: every step up to and including the EOS (the stop decision is part of p(answer, stop)), or,
    when a stop string cut the text, the steps whose tokens' text starts before the cut.
No torch here: the analysis imports it to decode prefixes without loading a model.
"""
from __future__ import annotations

from typing import Sequence


def answer_ids(tokens: Sequence[int], eos_ids: Sequence[int]) -> list[int]:
    """The generated tokens through the first EOS (all of them when none is an EOS)."""
    tokens = list(tokens)
    end = next((i + 1 for i, tok in enumerate(tokens) if tok in eos_ids), len(tokens))
    return tokens[:end]


def answer_text(tokenizer, tokens: Sequence[int], eos_ids: Sequence[int], stop: Sequence[str]) -> tuple[str, int]:
    """(text, steps whose statistics belong to the answer) of one row of generated tokens; see the module
    docstring. A token straddling a stop string's start keeps its statistics (part of it is answer text)."""
    tokens = list(tokens)
    keep, text_tokens = len(tokens), tokens
    for i, tok in enumerate(tokens):
        if tok in eos_ids:
            keep, text_tokens = i + 1, tokens[:i]
            break
    text = tokenizer.decode(text_tokens, skip_special_tokens=True)
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    if hits:
        cut = min(hits)
        text = text[:cut]
        keep = 0
        while keep < len(text_tokens) and len(tokenizer.decode(text_tokens[:keep], skip_special_tokens=True)) < cut:
            keep += 1
    return text.strip(), keep
