"""measure/sampling/decode.py across architectures: the compact decoder's greedy answers and token statistics equal
`model.generate`'s (left padding, rows leaving the batch at different steps), whatever the position
scheme (rotary, partial rotary, learned absolute, ALiBi) and cache layout (full, sliding-window, mixed layers)."""
from __future__ import annotations

import pytest
import torch

from measure.sampling.prompts import encode_prompt, format_prompt
from measure.sampling.sample import generate
from numerics import assert_same_greedy, comparable_steps, entropy_atol, logprob_atol, rows_with_tokens, torch_threads

QUESTIONS = ["What is 2 plus 5?", "Who wrote Hamlet?", "Name a colour of the sky, please.", "Why?"]


def _config(name: str, tok):
    import transformers
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id)
    if name == "gpt2":   # learned absolute positions: left padding must shift them exactly as generate does
        return transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, **ids)
    if name == "bloom":  # ALiBi: no position ids at all, positions come from the attention mask
        return transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=2, **ids)
    if name == "gpt_neox":  # Pythia: rotary on a quarter of each head's dimensions, parallel residual
        return transformers.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, max_position_embeddings=128, rotary_pct=0.25, **ids)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=128, **ids)
    if name == "qwen2":
        return transformers.Qwen2Config(**small)
    if name == "mistral":  # a sliding window shorter than prompt + answer
        return transformers.MistralConfig(sliding_window=6, **small)
    if name == "gemma2":   # alternating sliding / full layers, logit soft-capping
        return transformers.Gemma2Config(sliding_window=6, head_dim=16, **small)
    raise ValueError(name)


def _assert_compact_greedy_equals_generate(model, tok, prompts, monkeypatch) -> tuple:
    """Greedy answers of both decoders, ended by a stop string reached at different steps (rows leave the
    compact batch early: cache row selection); returns the stop used."""
    kwargs = dict(temperature=1.0, top_p=1.0, max_new_tokens=10, stop=(), seed=0)
    # a random model seldom emits EOS: stop at a character its answers reach at different points
    texts = [row[0].text for row in generate(model, tok, prompts, n=1, do_sample=False, decoder="generate", **kwargs)]
    stop = max({c for t in texts for c in t if not c.isspace()},
               key=lambda c: (len({t.find(c) for t in texts}), c))
    kwargs["stop"] = (stop,)
    compact, c_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False,
                                      decoder="compact", **kwargs)
    reference, r_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False,
                                        decoder="generate", **kwargs)
    lengths = {len(row[0].token_logprobs) for row in reference}
    assert len(lengths) > 1, "rows should end at different steps (so some leave the batch early)"
    assert_same_greedy(model, tok, prompts, compact, c_ids, reference, r_ids)
    return kwargs["stop"]


@pytest.mark.parametrize("arch", ["qwen2", "mistral", "gemma2", "gpt2", "bloom", "gpt_neox"])
def test_compact_greedy_equals_generate_across_architectures(tiny_model, monkeypatch, arch):
    import transformers
    _, tok = tiny_model
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(_config(arch, tok), attn_implementation="eager").eval()
    prompts = [format_prompt(tok, q, fmt) for q in QUESTIONS for fmt in ("chat", "qa")]
    _assert_compact_greedy_equals_generate(model, tok, prompts, monkeypatch)


def test_gpt_neox_checkpoint_through_both_decoders(tiny_neox_model_dir, monkeypatch):
    """A GPT-NeoX checkpoint in Pythia's layout (train.tiny architecture=gpt_neox: partial rotary, parallel
    residual, untied output layer), loaded as a measurement loads it and prompted in the HH format the Pythia
    HH models were tuned on: the compact decoder's greedy tokens equal model.generate's, and each prompt's
    greedy row inside a sampling call (its prefill cache repeated per row, rows leaving at different steps)
    equals the separate greedy decode, within tests/numerics.py's bounds up to the first near-tie."""
    from measure.sampling.backends import HFBackend
    model, tok = HFBackend().load(str(tiny_neox_model_dir), "cpu")
    assert type(model).__name__ == "GPTNeoXForCausalLM" and model.config.rope_parameters["partial_rotary_factor"] < 1
    prompts = [format_prompt(tok, q, fmt) for q in QUESTIONS for fmt in ("hh", "qa")]
    stop = _assert_compact_greedy_equals_generate(model, tok, prompts, monkeypatch)
    kwargs = dict(temperature=1.0, top_p=1.0, max_new_tokens=10, stop=stop, seed=0)
    alone, alone_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False, **kwargs)
    rows, ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=4, do_sample=True, greedy=True, **kwargs)
    assert_same_greedy(model, tok, prompts, [row[:1] for row in rows], ids[::5], alone, alone_ids)
    assert len({s.text for row in rows for s in row[1:]}) > len(prompts), "rows 1..N are samples"


def test_prefill_projects_only_the_last_position(tiny_model):
    """The prefill asks for the last position's logits only (a long prompt never materializes
    prompt_len x vocabulary logits), through a PEFT wrapper too."""
    from peft import LoraConfig, get_peft_model
    from measure.sampling.decode import _last_logits_only
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


def test_hub_generation_config_cannot_change_the_protocol(tiny_model, monkeypatch):
    """A generation_config that suppresses the greedy token changes neither decoder's answers, and the
    model keeps its config after the call."""
    import copy
    model, tok = tiny_model
    model = copy.deepcopy(model)
    prompts = [format_prompt(tok, q, "chat") for q in QUESTIONS]
    kwargs = dict(temperature=1.0, top_p=1.0, max_new_tokens=4, stop=(), seed=0)
    plain, p_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False,
                                    decoder="generate", **kwargs)
    first = model(**tok(prompts[0], return_tensors="pt", add_special_tokens=False)).logits[0, -1].argmax().item()
    model.generation_config.suppress_tokens = [first]
    model.generation_config.bad_words_ids = [[first]]
    ids = tok(prompts[0], return_tensors="pt", add_special_tokens=False)
    assert model.generate(**ids, max_new_tokens=1, do_sample=False)[0, -1].item() != first   # the config bites
    for decoder in ("compact", "generate"):
        again, a_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False,
                                        decoder=decoder, **kwargs)
        assert_same_greedy(model, tok, prompts, again, a_ids, plain, p_ids)
    assert model.generation_config.suppress_tokens == [first]


def test_integer_temperature_and_unsupported_models(tiny_model):
    """temperature=1 from YAML is a float to both decoders; models the loop cannot drive exactly are refused
    with a pointer to decoder=generate (PEFT prompt learning; recurrent caches)."""
    import copy
    from peft import PromptTuningConfig, get_peft_model
    from measure.scoring.config import parse_measure_settings
    from measure.common.errors import UsageError
    model, tok = tiny_model
    settings = parse_measure_settings({"temperature": 1, "top_p": 1})
    assert isinstance(settings.temperature, float) and isinstance(settings.top_p, float)
    rows = generate(model, tok, [format_prompt(tok, "Why?", "chat")], n=2, do_sample=True, temperature=2, top_p=1,
                    max_new_tokens=3, stop=(), seed=0)
    assert len(rows[0]) == 2
    prompted = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.raises(UsageError, match="prompt learning.*decoder=generate"):
        generate(prompted, tok, ["Why?"], n=1, do_sample=False, temperature=1.0, top_p=1.0, max_new_tokens=2,
                 stop=(), seed=0)
    import transformers
    mamba = transformers.MambaForCausalLM(transformers.MambaConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, state_size=4, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)).eval()
    with pytest.raises(UsageError, match=r"MambaForCausalLM: its cache .*decoder=generate"):
        generate(mamba, tok, ["Why?"], n=1, do_sample=False, temperature=1.0, top_p=1.0, max_new_tokens=2,
                 stop=(), seed=0)


# Another batch composition changes the arithmetic of every row: reordered rows, or more left padding because
# a longer prompt joins the batch (dropped again before comparing).
LONG = "Name a colour of the sky, please, and then name a colour of grass and of the sea."
BATCHES = {"as given": lambda p, long: (p, list(range(len(p)))),
           "reversed": lambda p, long: (p[::-1], list(range(len(p)))[::-1]),
           "padded": lambda p, long: ([long] + p, list(range(1, len(p) + 1)))}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", list(BATCHES))
def test_greedy_row_in_the_sampling_call_equals_a_separate_greedy_decode(tiny_model, monkeypatch, threads, batch):
    """greedy=True decodes each prompt's greedy answer in the same call (one prefill, same forward passes)
    as its N samples, here under 1 or 2 torch threads and in another batch (reordered, or padded by a longer
    prompt). Against a separate greedy decode and model.generate's (2 threads, the batch as given): the same
    tokens up to the first near-tie (tests/numerics.py; the whole answer when there is none), token
    statistics within the float32 bounds derived there; the samples are rows 1..N."""
    model, tok = tiny_model
    prompts = [format_prompt(tok, q, fmt) for q in QUESTIONS for fmt in ("chat", "qa")]
    arranged, back = BATCHES[batch](prompts, format_prompt(tok, LONG, "chat"))
    lp_tol, h_tol = logprob_atol(), entropy_atol(model.config.vocab_size)
    for stop in ((), ("e",)):
        kwargs = dict(temperature=1.0, top_p=1.0, max_new_tokens=12, stop=stop, seed=0)
        alone, alone_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False, **kwargs)
        reference, ref_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False,
                                              decoder="generate", **kwargs)
        with torch_threads(threads):
            rows, ids = rows_with_tokens(monkeypatch, generate, model, tok, arranged, n=4, do_sample=True, greedy=True,
                                         **kwargs)
        assert all(len(row) == 5 for row in rows)
        together = [rows[j] for j in back]
        together_ids = [ids[5 * j] for j in back]     # rows are prompt-major, greedy first
        for i, (row, (a,), (r,)) in enumerate(zip(together, alone, reference)):
            g, prompt_ids = row[0], encode_prompt(tok, prompts[i])
            for other, other_ids in ((a, alone_ids[i]), (r, ref_ids[i])):
                k = comparable_steps(model, prompt_ids, other_ids[:len(other.token_logprobs)],
                                     together_ids[i][:len(g.token_logprobs)])
                if k == len(other.token_logprobs):
                    assert g.text == other.text
                assert g.token_logprobs[:k] == pytest.approx(other.token_logprobs[:k], abs=lp_tol)
                assert g.token_entropies[:k] == pytest.approx(other.token_entropies[:k], abs=h_tol)
        samples = {s.text for row in together for s in row[1:]}
        assert len(samples) > len(prompts), "rows 1..N are samples, not copies of the greedy answer"
    with pytest.raises(ValueError, match="greedy=True"):
        generate(model, tok, prompts, n=2, do_sample=True, greedy=True, decoder="generate", **kwargs)


def test_cache_argument_both_names(tiny_model):
    """The decoder passes the KV cache under the forward's own name: `cache` (transformers >= 5.2x) or
    `past_key_values` (earlier 5.x; removed in 5.40), with equal answers either way and no deprecation
    warning on the new name."""
    import logging
    from types import SimpleNamespace
    from measure.sampling import decode as decoding
    model, tok = tiny_model
    assert decoding.cache_argument(model) in ("cache", "past_key_values")

    class OldSignature(torch.nn.Module):   # a model whose forward still takes past_key_values
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config
            self.device = inner.device
            self.names: list[str] = []

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    use_cache=None, logits_to_keep=0):
            self.names.append("past_key_values")
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=use_cache, logits_to_keep=logits_to_keep,
                             **{decoding.cache_argument(self.inner): past_key_values})
            return SimpleNamespace(logits=out.logits, past_key_values=getattr(out, decoding.cache_argument(self.inner)))

    old = OldSignature(model)
    assert decoding.cache_argument(old) == "past_key_values"
    prompts = [format_prompt(tok, q, "chat") for q in QUESTIONS]
    kwargs = dict(temperature=1.0, top_p=1.0, max_new_tokens=6, stop=(), seed=0)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("transformers").addHandler(handler)
    from transformers.utils import logging as hf_logging
    getattr(hf_logging.warning_once, "cache_clear", lambda: None)()   # warned earlier in this process: warn again
    try:
        new_rows = generate(model, tok, prompts, n=3, do_sample=True, greedy=True, **kwargs)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [r for r in records if "deprecated" in r.getMessage()]
    assert generate(old, tok, prompts, n=3, do_sample=True, greedy=True, **kwargs) == new_rows
    assert old.names and set(old.names) == {"past_key_values"}
