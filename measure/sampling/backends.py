"""Sampling backends: how a checkpoint is loaded and its greedy + N sampled answers are generated.

    python -m measure run model=<dir | hub id | file.gguf | pkg:<package>> benchmark=gsm8k out=<dir>   (backend=hf)
    python -m measure run model=<hub id> benchmark=gsm8k out=<dir> backend=vllm [vllm_logprobs=<top k>]

`hf` (default): transformers `generate` (measure/sampling/sample.py). Token entropy is EXACT: the full-vocabulary
entropy of softmax(raw logits) at every generated step.

`vllm` (optional extra: pip install -e .[vllm]; needs a CUDA GPU): `vllm.LLM.generate` with
SamplingParams(n=N, temperature, top_p, max_tokens, logprobs=k, seed per question) plus one greedy
request (temperature 0). vLLM returns only the top-k log-probabilities of each step, so token entropy
is an APPROXIMATION: the entropy of the renormalized top-k distribution (`topk_entropy`), which
ignores the tail's mass and so is biased low (k=20 covers almost all mass on peaked steps, less on flat
ones). The chosen token's log-probability is exact (vLLM always returns it). Log-probabilities are
requested as `raw_logprobs` (before temperature/top-p), the same T=1 distribution the HF backend uses.
The report's settings say which: `entropy: "exact full-vocabulary"` or `"top-k truncated (k=20, ...)"`.
Seeds: one per question (derived from settings.seed and the question id), so vLLM's own batching
never changes a question's samples; results still differ from the HF backend's (other kernels and RNG).
"""
from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from measure.scoring.config import MeasureSettings
from measure.common.errors import UsageError, choose
from measure.sampling.model_source import load_causal_lm, resolve_model
from measure.sampling.prompts import answer_end_ids
from measure.records.records import Generation, Question, QuestionSamples

if TYPE_CHECKING:
    from measure.sampling.sample import GenerationClock

EXACT_ENTROPY = "exact full-vocabulary"
# On a CPU every checkpoint is measured in float32, whatever dtype it is stored in (EleutherAI/pythia-160m
# ships float16, its HH-tuned descendants float32): CPU half-precision matrix products are slow or emulated
# on most CPUs and round differently, and a chain whose stages load in different precisions would compare
# precisions as well as training stages. The report records the dtype (settings.model_dtype).
CPU_DTYPE = "float32"
VLLM_CHUNK = 256  # questions per vLLM call between cache writes; vLLM batches internally


def topk_entropy(logprobs: Sequence[float]) -> float:
    """Entropy (nats) of the top-k distribution renormalized to sum 1: p_i = exp(l_i) / sum_j exp(l_j).

    The vLLM backend's token-entropy approximation (the tail beyond the top k is dropped)."""
    if not logprobs:
        raise ValueError("topk_entropy needs at least one log-probability")
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]  # shifted for stability; the shift cancels
    total = sum(weights)
    return -sum(w / total * math.log(w / total) for w in weights if w > 0)


def load_tokenizer(source: str):
    """The checkpoint's tokenizer, padding with EOS when it has no pad token (many base models ship
    without one); training and both sampling backends load tokenizers through here."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def eos_token_ids(source: str, tokenizer) -> list[int]:
    """measure.sampling.prompts.answer_end_ids with the generation config read from a checkpoint dir (vLLM and
    the length sensitivity hold no transformers model to ask). A checkpoint without generation_config.json:
    the one transformers derives from config.json when it loads the model (what the HF backend uses), else
    the tokenizer's EOS alone."""
    from transformers import AutoConfig, GenerationConfig
    try:
        configured = GenerationConfig.from_pretrained(source).eos_token_id
    except OSError:
        try:
            configured = GenerationConfig.from_model_config(AutoConfig.from_pretrained(source)).eos_token_id
        except (OSError, ValueError):
            configured = None
    return answer_end_ids(configured, tokenizer)


def aligned_weights(model, alignment: int = 64):
    """Copy any weight that does not start on a 64-byte boundary into fresh (aligned) memory.

    Weights memory-mapped from a safetensors file can start at any 8-byte offset, and a CPU matrix-vector
    product (a 1-row batch; the compact decoder's prefill logits) takes another SIMD path on misaligned
    data, changing the last float bit. Aligned weights make the arithmetic the same however the model
    was loaded, so a sharded run reproduces a single process bit for bit."""
    for param in model.parameters():
        if param.device.type == "cpu" and param.data_ptr() % alignment:
            param.data = param.data.clone()
    return model


class Backend(Protocol):
    """What the pipeline needs of a sampling backend (HFBackend, VLLMBackend; `make_backend` picks one)."""
    name: str

    def check(self, shard: tuple[int, int]) -> None:
        """Refuse (UsageError) what this backend cannot run, before anything is loaded."""

    def settings(self) -> dict[str, Any]:
        """The keys the report's settings record for this backend."""

    def load(self, source: str, device: str | None = None) -> tuple[Any, Any]:
        """(model, tokenizer) for a model reference."""

    def sample(self, model, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str, *,
               cache_path: Path | None, clock: GenerationClock, shard: tuple[int, int]) -> list[QuestionSamples]:
        """Greedy + N samples per question, in question order; their seconds are added to `clock`."""

    def plan(self, model, settings: MeasureSettings) -> dict[str, Any] | None:
        """How sample() batches the work, for the report's settings; None when the backend decides it itself."""


class HFBackend:
    """transformers.generate with exact full-vocabulary token statistics (measure/sampling/sample.py)."""
    name = "hf"

    def check(self, shard: tuple[int, int]) -> None:
        """Nothing optional to import; the HF backend runs on CPU or GPU, sharded or not."""

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "entropy": EXACT_ENTROPY}

    def load(self, source: str, device: str | None = None):
        """Any model reference (measure/sampling/model_source.py: hub id, checkpoint dir, GGUF file or package) via
        AutoModelForCausalLM (pickled weights only weights-only: load_causal_lm), or a PEFT adapter dir (merged
        on load). dtype: as stored on a GPU; float32 on a CPU (CPU_DTYPE)."""
        import torch
        resolved = resolve_model(source)
        source = resolved.path
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, CPU_DTYPE) if str(device).startswith("cpu") else "auto"
        if resolved.kind == "adapter":
            from peft import AutoPeftModelForCausalLM
            model = AutoPeftModelForCausalLM.from_pretrained(source, dtype=dtype).merge_and_unload()
        else:
            try:
                model = load_causal_lm(source, dtype=dtype)
            except OSError as e:
                raise UsageError(f"model={source!r}: cannot load a causal LM from it ({e})") from None
        tokenizer = load_tokenizer(source)
        return aligned_weights(model.to(device)), tokenizer

    def sample(self, model, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str, *,
               cache_path: Path | None, clock: GenerationClock, shard: tuple[int, int]) -> list[QuestionSamples]:
        from measure.sampling.sample import sample_questions
        return sample_questions(model, tokenizer, questions, settings, prompt_format, cache_path=cache_path,
                                clock=clock, shard=shard)

    def plan(self, model, settings: MeasureSettings) -> dict[str, Any]:
        """The decode plan sample() follows (measure/sampling/batching.py), for the report's settings."""
        import dataclasses
        from measure.sampling.batching import decode_plan
        return dataclasses.asdict(decode_plan(settings, model, settings.n_samples + (settings.decoder == "compact")))


class VLLMBackend:
    """vllm.LLM: N samples + greedy per question, top-k log-probabilities per step (entropy approximated)."""
    name = "vllm"

    def __init__(self, logprobs: int = MeasureSettings.vllm_logprobs):
        if isinstance(logprobs, bool) or not isinstance(logprobs, int) or logprobs < 1:
            raise UsageError(f"vllm_logprobs: expected a positive integer (top-k log-probabilities per step), got {logprobs!r}")
        self.k = logprobs
        self.logprobs_mode = "raw_logprobs"

    def check(self, shard: tuple[int, int]) -> None:
        try:
            importlib.import_module("vllm")
        except ImportError as e:
            raise UsageError(f"backend=vllm: the vllm package is not installed ({e}); install the extra with "
                             "`pip install -e .[vllm]` on a machine with a CUDA GPU, or use backend=hf (the default)") from None
        import torch
        if not torch.cuda.is_available():
            raise UsageError("backend=vllm needs a CUDA GPU and none is visible; use backend=hf (the default)")
        if shard[1] > 1:
            raise UsageError("backend=vllm runs in one process (it batches and shards internally: raise "
                             "tensor_parallel_size for big models); launch it without `accelerate launch` "
                             "--num_processes > 1, or use backend=hf for sharded measurement")

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "vllm_logprobs": self.k, "logprobs_mode": self.logprobs_mode,
                "entropy": f"top-k truncated (k={self.k}, renormalized over the top k; tail mass ignored)"}

    def load(self, source: str, device: str | None = None):
        import vllm
        source = resolve_model(source).path  # vLLM reads the converted checkpoint of a GGUF like any other
        kwargs = dict(model=source, dtype="auto", max_logprobs=self.k, seed=0)
        try:
            llm = vllm.LLM(**kwargs, logprobs_mode=self.logprobs_mode)
        except TypeError:  # a vLLM without logprobs_mode (pre 0.10): its default, recorded in the report
            llm, self.logprobs_mode = vllm.LLM(**kwargs), "engine default"
        tokenizer = load_tokenizer(source)  # the same tokenizer/chat template as the HF backend
        self.eos_ids = eos_token_ids(source, tokenizer)
        return llm, tokenizer

    def sample(self, llm, tokenizer, questions: list[Question], settings: MeasureSettings, prompt_format: str, *,
               cache_path: Path | None, clock: GenerationClock, shard: tuple[int, int]) -> list[QuestionSamples]:
        from measure.sampling.sample import sample_questions
        return sample_questions(llm, tokenizer, questions, settings, prompt_format, cache_path=cache_path,
                                clock=clock, shard=shard, batch_size=max(VLLM_CHUNK, settings.batch_size or 0),
                                sampler=self._batch, cache_tag=self.settings())

    def plan(self, model, settings: MeasureSettings) -> None:
        """vLLM schedules its own batches: no plan to record."""
        return None

    def _generation(self, tokenizer, completion, eos_ids: Sequence[int], stop: Sequence[str]) -> Generation:
        from measure.sampling.sample import _cut
        # token_ids: what vLLM generated (through EOS or the stop string's last token); _cut keeps them through EOS
        tokens, logprobs, entropies = list(completion.token_ids), [], []
        for tok, step in zip(tokens, completion.logprobs or []):
            logprobs.append(step[tok].logprob)  # the chosen token is always returned, even outside the top k
            top = [lp.logprob for lp in step.values() if lp.rank is not None and lp.rank <= self.k]
            entropies.append(topk_entropy(top or [step[tok].logprob]))
        return _cut(tokenizer, tokens, logprobs, entropies, eos_ids, stop)  # same EOS/stop rules as HF

    def _batch(self, llm, tokenizer, batch: Sequence[Question], prompts: dict[str, str], settings: MeasureSettings,
               stop: Sequence[str], clock: GenerationClock) -> list[QuestionSamples]:
        from vllm import SamplingParams
        from measure.sampling.prompts import encode_prompt
        from measure.sampling.batching import derive_seed
        eos_ids = getattr(self, "eos_ids", None) or answer_end_ids(None, tokenizer)
        inputs = [{"prompt_token_ids": encode_prompt(tokenizer, prompts[q.id])} for q in batch]
        # stop strings end a request early; the text is cut by _cut exactly as in the HF backend
        common = dict(max_tokens=settings.max_new_tokens, logprobs=self.k, stop=list(stop) or None,
                      include_stop_str_in_output=True, repetition_penalty=1.0, min_p=0.0, top_k=-1)
        started = time.perf_counter()
        greedy = llm.generate(inputs, SamplingParams(n=1, temperature=0.0, **common), use_tqdm=False)
        clock.add(greedy_s=time.perf_counter() - started)
        params = [SamplingParams(n=settings.n_samples, temperature=settings.temperature, top_p=settings.top_p,
                                 seed=derive_seed(settings.seed, "sample", [q.id]), **common) for q in batch]
        started = time.perf_counter()
        sampled = llm.generate(inputs, params, use_tqdm=False)
        clock.add(sampling_s=time.perf_counter() - started)
        return [QuestionSamples(q, self._generation(tokenizer, g.outputs[0], eos_ids, stop),
                                tuple(self._generation(tokenizer, c, eos_ids, stop) for c in s.outputs))
                for q, g, s in zip(batch, greedy, sampled)]


BACKENDS: dict[str, type] = {"hf": HFBackend, "vllm": VLLMBackend}


def make_backend(name: str = MeasureSettings.backend, *, vllm_logprobs: int = MeasureSettings.vllm_logprobs) -> Backend:
    """A backend by name; an unknown name is a UsageError listing the valid ones."""
    cls = choose("backend", str(name), BACKENDS)
    return cls(vllm_logprobs) if cls is VLLMBackend else cls()
