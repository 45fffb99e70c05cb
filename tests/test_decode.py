"""measure/decode.py across architectures: the compact decoder's greedy answers and token statistics equal
`model.generate`'s (left padding, rows leaving the batch at different steps), whatever the position
scheme (rotary, learned absolute, ALiBi) and cache layout (full, sliding-window, mixed layers)."""
from __future__ import annotations

import pytest
import torch

from measure.prompts import format_prompt
from measure.sample import generate

QUESTIONS = ["What is 2 plus 5?", "Who wrote Hamlet?", "Name a colour of the sky, please.", "Why?"]


def _config(name: str, tok):
    import transformers
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id)
    if name == "gpt2":   # learned absolute positions: left padding must shift them exactly as generate does
        return transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, **ids)
    if name == "bloom":  # ALiBi: no position ids at all, positions come from the attention mask
        return transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=2, **ids)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=128, **ids)
    if name == "qwen2":
        return transformers.Qwen2Config(**small)
    if name == "mistral":  # a sliding window shorter than prompt + answer
        return transformers.MistralConfig(sliding_window=6, **small)
    if name == "gemma2":   # alternating sliding / full layers, logit soft-capping
        return transformers.Gemma2Config(sliding_window=6, head_dim=16, **small)
    raise ValueError(name)


@pytest.mark.parametrize("arch", ["qwen2", "mistral", "gemma2", "gpt2", "bloom"])
def test_compact_greedy_equals_generate_across_architectures(tiny_model, arch):
    import transformers
    _, tok = tiny_model
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(_config(arch, tok), attn_implementation="eager").eval()
    prompts = [format_prompt(tok, q, fmt) for q in QUESTIONS for fmt in ("chat", "qa")]
    kwargs = dict(temperature=1.0, top_p=1.0, max_new_tokens=10, stop=(), seed=0)
    # a random model seldom emits EOS: stop at a character its answers reach at different points
    texts = [row[0].text for row in generate(model, tok, prompts, n=1, do_sample=False, decoder="generate", **kwargs)]
    stop = max({c for t in texts for c in t if not c.isspace()},
               key=lambda c: (len({t.find(c) for t in texts}), c))
    kwargs["stop"] = (stop,)
    compact = generate(model, tok, prompts, n=1, do_sample=False, decoder="compact", **kwargs)
    reference = generate(model, tok, prompts, n=1, do_sample=False, decoder="generate", **kwargs)
    lengths = {len(row[0].token_logprobs) for row in reference}
    assert len(lengths) > 1, "rows should end at different steps (so some leave the batch early)"
    for (a,), (b,) in zip(compact, reference):
        assert a.text == b.text
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)
        assert a.token_entropies == pytest.approx(b.token_entropies, abs=1e-4)


def test_prefill_projects_only_the_last_position(tiny_model):
    """The prefill asks for the last position's logits only (a long prompt never materializes
    prompt_len x vocabulary logits), through a PEFT wrapper too."""
    from peft import LoraConfig, get_peft_model
    from measure.decode import _last_logits_only
    model, tok = tiny_model
    assert _last_logits_only(model) == {"logits_to_keep": 1}
    shapes: list[tuple[int, ...]] = []
    handle = model.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.logits.shape)))
    try:
        generate(model, tok, [format_prompt(tok, q, "chat") for q in QUESTIONS], n=2, do_sample=True,
                 temperature=1.0, top_p=1.0, max_new_tokens=3, stop=(), seed=0)
    finally:
        handle.remove()
    assert shapes[0] == (4, 1, model.config.vocab_size)   # 4 prompts, one position each
    import copy
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj"]))
    assert _last_logits_only(peft_model) == {"logits_to_keep": 1}
