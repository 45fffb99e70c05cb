"""The Anthropic HH dialogue format: "\\n\\nHuman: ...\\n\\nAssistant: ..." turns, in one place.

Anthropic's HH-RLHF data (Bai et al. 2022) and the models tuned on it without a chat template (the Pythia
HH SFT/DPO/PPO checkpoints, e.g. lomahony/eleuther-pythia160m-hh-sft) use plain text turns: each turn
starts with a blank line and the speaker's name. A model trained on them answers after "\\n\\nAssistant:"
and, when it does not end with EOS, goes on with the next "\\n\\nHuman:" turn, so that marker ends an answer.

Used by the `hh` prompt format (measure/sampling/prompts.py) and the `hh_rlhf` benchmark
(measure/data/benchmarks.py), whose questions are the opening human requests of HH dialogues.
"""
from __future__ import annotations

from typing import Sequence

from measure.common.errors import UsageError

HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"


def hh_prompt(question: str, shots: Sequence[tuple[str, str]] = ()) -> str:
    """The text an HH model continues: earlier (question, answer) turns, then the question and an open
    assistant turn. The space after each marker is the training data's ("Human: what ...")."""
    turns = "".join(f"{HH_HUMAN} {q}{HH_ASSISTANT} {a}" for q, a in shots)
    return f"{turns}{HH_HUMAN} {question}{HH_ASSISTANT}"


def first_request(dialogue: str, where: str) -> str:
    """The opening human turn of an HH dialogue ("\\n\\nHuman: a\\n\\nAssistant: b ..." -> "a")."""
    if not isinstance(dialogue, str) or not dialogue.startswith(HH_HUMAN):
        raise UsageError(f"{where}: an HH dialogue starts with {HH_HUMAN!r}; got {str(dialogue)[:40]!r}")
    request = dialogue[len(HH_HUMAN):].split(HH_ASSISTANT, 1)[0].split(HH_HUMAN, 1)[0].strip()
    if not request:
        raise UsageError(f"{where}: the dialogue's first human turn is empty")
    return request
