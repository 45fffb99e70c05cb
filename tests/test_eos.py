"""The one EOS rule (measure.sampling.prompts.answer_end_ids), shared by the HF and vLLM backends and the benchmarks."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from measure.common.errors import UsageError
from measure.sampling.prompts import answer_end_ids


def test_generation_config_ids_first_then_the_tokenizers_once():
    tok = SimpleNamespace(eos_token_id=2)
    assert answer_end_ids(2, tok) == [2]
    assert answer_end_ids([2, 0], tok) == [2, 0]           # instruct models: <|im_end|> and <|endoftext|>
    assert answer_end_ids([106, 1], SimpleNamespace(eos_token_id=106)) == [106, 1]
    assert answer_end_ids(None, tok) == [2]                 # no generation config: the tokenizer's EOS alone
    assert answer_end_ids(7, SimpleNamespace(eos_token_id=None)) == [7]


def test_no_eos_anywhere_is_a_usage_error():
    with pytest.raises(UsageError, match="no EOS token"):
        answer_end_ids(None, SimpleNamespace(eos_token_id=None))
