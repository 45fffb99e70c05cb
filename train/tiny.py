"""Build a tiny, randomly initialised causal LM with a locally trained tokenizer (no download).

Recipes with `build:` and the test suite use this so that every stage runs offline. The result is an
ordinary Hugging Face model directory: `AutoModelForCausalLM.from_pretrained(out_dir)` and
`AutoTokenizer.from_pretrained(out_dir)` load it, exactly like a hub checkpoint.

Tokenizer: byte-level BPE (GPT-2 style: every byte is in the alphabet, so no input is ever unknown)
trained on the given corpus, plus the special tokens below. Chat template: one turn per message,
`<|user|>\\n...<|end|>` for user/system turns and `<|assistant|>\\n...<|eos|>` for assistant turns,
so a model trained with it ends its answers with the EOS token and generation stops there. The
assistant content and its EOS sit inside `{% generation %}` markers, which TRL's SFTTrainer needs
for `assistant_only_loss=True` (the EOS is inside the mask, so the model learns to stop); plain
`apply_chat_template` ignores the markers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from measure.common.errors import UsageError, choose

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
USER, ASSISTANT, SYSTEM, END = "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, USER, ASSISTANT, SYSTEM, END)  # ids 0..6 in this order

# Jinja chat template. `bos_token`/`eos_token` are filled in by transformers. Whitespace control
# (`{%-`/`-%}`) keeps the template's own newlines out of the rendered text.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '" + ASSISTANT + "\\n' -}}"
    "{%- generation -%}{{- message['content'] + eos_token -}}{%- endgeneration -%}"
    "{%- elif message['role'] in ['user', 'system'] -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '" + END + "\\n' -}}"
    "{%- else -%}"
    "{{- raise_exception('unknown chat role ' + message['role'] + '; valid: user, assistant, system') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '" + ASSISTANT + "\\n' -}}{%- endif -%}"
)


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    return LlamaConfig, LlamaForCausalLM


def _qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    return Qwen2Config, Qwen2ForCausalLM


def _gpt_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    return GPTNeoXConfig, GPTNeoXForCausalLM


# name -> () -> (config class, model class); imported lazily so that validation stays cheap
ARCHITECTURES = {"llama": _llama, "qwen2": _qwen2, "gpt_neox": _gpt_neox}
# config keys of a family beyond the shared shape. gpt_neox is shaped like Pythia (EleutherAI/pythia-*'s
# config.json): rotary embeddings on a quarter of each head (rotary_pct 0.25), parallel attention + MLP
# residual, an output layer of its own (untied); it has no grouped-query attention.
FAMILY_CONFIG = {"llama": {"tie_word_embeddings": True}, "qwen2": {"tie_word_embeddings": True},
                 "gpt_neox": {"tie_word_embeddings": False, "rotary_pct": 0.25, "use_parallel_residual": True}}


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Byte-level BPE trained on `corpus`, wrapped as a PreTrainedTokenizerFast with the chat template.

    The vocabulary can come out smaller than `vocab_size` when the corpus has too few distinct
    pairs to merge; callers size the model from `len(tokenizer)`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(alphabet) + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise UsageError(f"vocab_size: must be >= {minimum} (256 bytes + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size}")
    texts = [t for t in corpus if isinstance(t, str) and t]
    if not texts:
        raise UsageError("tiny model corpus: no text to train the tokenizer on")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # trim_offsets=False keeps character offsets exact; apply_chat_template's assistant mask relies on them
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM, END], chat_template=CHAT_TEMPLATE,
        model_max_length=None)


@dataclass(frozen=True)
class BuildSpec:
    """A recipe's `model.build`: the tiny model's shape (build_tiny_model's defaults) and its tokenizer corpus."""
    architecture: str = field(default="llama", metadata={"help": "model family", "choices": tuple(ARCHITECTURES)})
    hidden_size: int = field(default=64, metadata={"help": "hidden width"})
    num_layers: int = field(default=2, metadata={"help": "decoder layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads (divides hidden_size)"})
    intermediate_size: int = field(default=128, metadata={"help": "MLP width"})
    vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary (>= 256 bytes + special tokens)"})
    max_position_embeddings: int = field(default=256, metadata={"help": "context length"})
    corpus: str | dict | list | None = field(default=None, metadata={
        "help": "tokenizer training text (a dataset); default: model.pretrain's dataset"})


_SHAPE = BuildSpec()


def build_tiny_model(out_dir: str | os.PathLike, corpus: Iterable[str], *, architecture: str = _SHAPE.architecture,
                     hidden_size: int = _SHAPE.hidden_size, num_layers: int = _SHAPE.num_layers,
                     num_heads: int = _SHAPE.num_heads, intermediate_size: int = _SHAPE.intermediate_size,
                     vocab_size: int = _SHAPE.vocab_size, max_position_embeddings: int = _SHAPE.max_position_embeddings,
                     seed: int = 0) -> Path:
    """Train the tokenizer on `corpus`, build a seeded random model of `architecture`, save both to `out_dir`."""
    import torch
    from transformers import GenerationConfig

    make = choose("architecture", architecture, ARCHITECTURES)
    for key, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("num_heads", num_heads),
                       ("intermediate_size", intermediate_size), ("max_position_embeddings", max_position_embeddings)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{key}: must be a positive integer, got {value!r}")
    if hidden_size % num_heads:
        raise UsageError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")

    tokenizer = train_tokenizer(corpus, vocab_size)
    tokenizer.model_max_length = max_position_embeddings
    config_cls, model_cls = make()
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    family = dict(FAMILY_CONFIG[architecture])
    if architecture != "gpt_neox":
        family["num_key_value_heads"] = num_heads
    config = config_cls(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_position_embeddings, **family, **ids)
    torch.manual_seed(seed)  # the random init is the model: same seed -> same weights
    model = model_cls(config)
    model.generation_config = GenerationConfig(**ids)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
