"""train/tiny.py: a locally built tiny model loads like a hub checkpoint and its chat template works with TRL."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from measure.common.errors import UsageError
from train.tiny import ARCHITECTURES, SPECIAL_TOKENS, build_tiny_model

CORPUS = ["Q: What is the capital of France?\nA: Paris.", "Q: How many legs does a cat have?\nA: Four."] * 5


def test_loads_with_auto_classes(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names and "config.json" in names
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (64, 2, 4, 128)
    assert cfg.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert cfg.vocab_size == len(tok) <= 512
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert (cfg.eos_token_id, model.generation_config.eos_token_id, cfg.pad_token_id) == (
        tok.eos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert len({tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}) == len(SPECIAL_TOKENS)
    # byte-level: any text round-trips, nothing is unknown
    text = "Q: Ünïcödé 42 ✓?\nA:"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_chat_template_renders(tiny_model):
    _, tok = tiny_model
    user = [{"role": "user", "content": "Hi there"}]
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True) == \
        "<|bos|><|user|>\nHi there<|end|>\n<|assistant|>\n"
    convo = user + [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    assert tok.apply_chat_template(convo, tokenize=False) == \
        "<|bos|><|user|>\nHi there<|end|>\n<|assistant|>\nHello<|eos|><|user|>\nBye<|end|>\n"
    # the {% generation %} span is the assistant content plus its EOS: the model learns to stop
    out = tok.apply_chat_template(convo, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "Hello<|eos|>" and masked[-1] == tok.eos_token_id
    with pytest.raises(Exception, match="unknown chat role"):
        tok.apply_chat_template([{"role": "robot", "content": "x"}], tokenize=False)


def test_trl_sft_assistant_only_loss_accepts_template(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert has_generation_markers(tok.chat_template) and is_chat_template_stop_token_trained(tok)
    rows = [{"messages": [{"role": "user", "content": "What is 1 plus 2?"}, {"role": "assistant", "content": "3."}]}] * 2
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, max_steps=1, per_device_train_batch_size=2,
                     report_to=[], use_cpu=True, save_strategy="no")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    example = trainer.train_dataset[0]
    trained = [t for t in example["labels"] if t != -100]
    assert tok.decode(trained) == "3.<|eos|>"
    trainer.train()


def test_qwen2_and_seeded_init(tmp_path):
    a = build_tiny_model(tmp_path / "a", CORPUS, architecture="qwen2", hidden_size=32, num_heads=2, seed=3)
    b = build_tiny_model(tmp_path / "b", CORPUS, architecture="qwen2", hidden_size=32, num_heads=2, seed=3)
    c = build_tiny_model(tmp_path / "c", CORPUS, architecture="qwen2", hidden_size=32, num_heads=2, seed=4)
    ma, mb, mc = (AutoModelForCausalLM.from_pretrained(p) for p in (a, b, c))
    assert type(ma).__name__ == "Qwen2ForCausalLM" and ma.config.hidden_size == 32
    wa, wb, wc = (m.model.embed_tokens.weight for m in (ma, mb, mc))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert AutoTokenizer.from_pretrained(a).get_vocab() == AutoTokenizer.from_pretrained(b).get_vocab()


def test_gpt_neox_is_shaped_like_pythia(tiny_neox_model_dir):
    """architecture=gpt_neox: Pythia's layout (EleutherAI/pythia-*'s config.json): partial rotary (a quarter of
    each head), parallel residual, an untied output layer."""
    model = AutoModelForCausalLM.from_pretrained(tiny_neox_model_dir)
    assert type(model).__name__ == "GPTNeoXForCausalLM"
    assert model.config.rope_parameters["partial_rotary_factor"] == 0.25 and model.config.use_parallel_residual
    assert model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert not torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight)


def test_bad_arguments(tmp_path):
    assert set(ARCHITECTURES) == {"llama", "qwen2", "gpt_neox"}
    with pytest.raises(UsageError, match=r"unknown architecture 'lama'.*did you mean 'llama'.*valid choices: gpt_neox, llama, qwen2"):
        build_tiny_model(tmp_path, CORPUS, architecture="lama")
    with pytest.raises(UsageError, match="vocab_size: must be >= 263"):
        build_tiny_model(tmp_path, CORPUS, vocab_size=100)
    with pytest.raises(UsageError, match="divisible by num_heads"):
        build_tiny_model(tmp_path, CORPUS, hidden_size=30, num_heads=4)
    with pytest.raises(UsageError, match="no text"):
        build_tiny_model(tmp_path, [])
    assert not any(tmp_path.iterdir())  # validation failed before anything was written
