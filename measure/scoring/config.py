"""The `measure` settings: one dataclass, validated from a recipe section or CLI overrides.

Every key is named in errors with its valid choices; unknown keys are errors (close matches suggested).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from measure.data.benchmarks import BENCHMARKS, BenchmarkSpec  # noqa: F401  (BenchmarkSpec: part of the settings)
from measure.scoring.cluster import validate_clusterer_spec
from measure.common.errors import UsageError, suggest
from measure.scoring.signals import SIGNALS
from measure.common.values import as_seed, check_numbers

AMBIGUOUS_POLICIES = ("exclude", "incorrect", "correct")
BACKENDS = ("hf", "vllm")
DECODERS = ("compact", "generate")   # backend=hf decode loops (measure/sampling/decode.py, model.generate)
DEFAULT_CLUSTERERS = ("exact", "jaccard", "embedding")


@dataclass(frozen=True)
class MeasureSettings:
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    n_samples: int = 10
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 40
    batch_size: int | None = None  # questions per batch (resume/shard unit); None: one decode call's prompts
    rows_per_call: int | None = None  # rows (prompts x (greedy + N)) per decode call; None: auto
                                      # (176 on CPU, from GPU memory and model size on CUDA; measure/sampling/batching.py)
    stop: tuple[str, ...] = ()
    fewshot: tuple[tuple[str, str], ...] | None = None   # (question, answer) pairs for prompt_format=qa; None -> default
    clusterers: tuple[Any, ...] = DEFAULT_CLUSTERERS      # names or {name: ..., threshold: ...} mappings
    signals: tuple[str, ...] | None = None                # None -> every registered signal
    embedding_model: str | None = None                    # None -> the bundled all-MiniLM-L6-v2
    nli_model: str = "microsoft/deberta-large-mnli"
    nli_batch_size: int = 32
    judge_margin: float = 0.02    # truthfulqa judge: |sim(correct) - sim(incorrect)| <= margin -> ambiguous
                                  # (0.02: the band where the judge is at chance on TruthfulQA's references)
    ambiguous: str = "exclude"    # how ambiguous judgements enter AUROC etc.
    bootstrap: int = 1000
    seed: int = 0
    backend: str = "hf"           # hf: exact full-vocabulary token entropy | vllm: top-k truncated (measure/sampling/backends.py)
    vllm_logprobs: int = 20       # backend=vllm: top-k log-probabilities per step
    decoder: str = "compact"      # backend=hf: compact (finished rows leave the batch) | generate (model.generate)


def _check_type(key: str, value: Any, kinds: tuple[type, ...], where: str) -> None:
    if isinstance(value, bool) and bool not in kinds:
        raise UsageError(f"{where}{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise UsageError(f"{where}{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__} {value!r}")


def _benchmark(value: Any, where: str) -> BenchmarkSpec:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: a benchmark is a name or a mapping with 'name' (and path, limit, split)")
    allowed = {f.name for f in dataclasses.fields(BenchmarkSpec)}
    for key in value:
        if key not in allowed:
            raise UsageError(f"{where}: unknown key {key!r}{suggest(key, allowed)}")
    if value.get("name") not in BENCHMARKS:
        raise UsageError(f"{where}.name: unknown benchmark {value.get('name')!r}{suggest(str(value.get('name')), BENCHMARKS)}")
    if value.get("limit") is not None:
        _check_type("limit", value["limit"], (int,), f"{where}.")
        if value["limit"] < 1:
            raise UsageError(f"{where}.limit: must be >= 1, got {value['limit']}")
    for key in ("path", "split"):
        if value.get(key) is not None:
            _check_type(key, value[key], (str,), f"{where}.")
    return BenchmarkSpec(**value)


def parse_measure_settings(raw: dict | None, where: str = "measure") -> MeasureSettings:
    """Validate a `measure:` mapping. `where` prefixes key names in errors (e.g. 'recipes/x.yaml: measure')."""
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(MeasureSettings)}
    for key in raw:
        if key not in fields:
            raise UsageError(f"{where}: unknown key {key!r}{suggest(key, fields)}")
    out: dict[str, Any] = {}
    types = {"n_samples": (int,), "temperature": (int, float), "top_p": (int, float), "max_new_tokens": (int,),
             "batch_size": (int,), "rows_per_call": (int,), "nli_batch_size": (int,), "judge_margin": (int, float), "bootstrap": (int,),
             "seed": (int,), "ambiguous": (str,), "embedding_model": (str,), "nli_model": (str,),
             "backend": (str,), "vllm_logprobs": (int,), "decoder": (str,)}
    for key, kinds in types.items():
        if raw.get(key) is not None:
            _check_type(key, raw[key], kinds, f"{where}.")
            out[key] = raw[key]
    check_numbers(raw, where)   # .nan / .inf / integers beyond 64 bits: refused before a cache is written
    if "seed" in out:
        as_seed(out["seed"], f"{where}.seed")
    if out.get("backend", "hf") not in BACKENDS:
        raise UsageError(f"{where}.backend: unknown {out['backend']!r}{suggest(out['backend'], BACKENDS)}")
    if out.get("decoder", "compact") not in DECODERS:
        raise UsageError(f"{where}.decoder: unknown {out['decoder']!r}{suggest(out['decoder'], DECODERS)}")
    for key in ("n_samples", "max_new_tokens", "batch_size", "rows_per_call", "nli_batch_size", "vllm_logprobs"):
        if key in out and out[key] < 1:
            raise UsageError(f"{where}.{key}: must be >= 1, got {out[key]}")
    for key in ("temperature", "top_p", "judge_margin"):   # YAML gives 1 for "1": these are floats
        if key in out:
            out[key] = float(out[key])
    if "temperature" in out and out["temperature"] <= 0:
        raise UsageError(f"{where}.temperature: must be > 0 (the greedy answer is always taken separately)")
    if "top_p" in out and not 0 < out["top_p"] <= 1:
        raise UsageError(f"{where}.top_p: must be in (0, 1], got {out['top_p']}")
    if out.get("ambiguous", "exclude") not in AMBIGUOUS_POLICIES:
        raise UsageError(f"{where}.ambiguous: unknown policy {out['ambiguous']!r}{suggest(out['ambiguous'], AMBIGUOUS_POLICIES)}")
    benchmarks = raw.get("benchmarks", [])
    if isinstance(benchmarks, (str, dict)):
        benchmarks = [benchmarks]
    if not isinstance(benchmarks, list):
        raise UsageError(f"{where}.benchmarks: expected a list of benchmarks")
    out["benchmarks"] = tuple(_benchmark(b, f"{where}.benchmarks[{i}]") for i, b in enumerate(benchmarks))
    if raw.get("stop") is not None:
        stop = [raw["stop"]] if isinstance(raw["stop"], str) else raw["stop"]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise UsageError(f"{where}.stop: expected a list of non-empty strings")
        out["stop"] = tuple(stop)
    if raw.get("fewshot") is not None:
        shots = raw["fewshot"]
        if not isinstance(shots, list) or not all(isinstance(s, dict) and set(s) == {"question", "answer"} for s in shots):
            raise UsageError(f"{where}.fewshot: expected a list of {{question: ..., answer: ...}} mappings")
        out["fewshot"] = tuple((s["question"], s["answer"]) for s in shots)
    if raw.get("clusterers") is not None:
        specs = raw["clusterers"] if isinstance(raw["clusterers"], list) else [raw["clusterers"]]
        if not specs:
            raise UsageError(f"{where}.clusterers: give at least one clusterer")
        for i, spec in enumerate(specs):
            validate_clusterer_spec(spec, f"{where}.clusterers[{i}]")
        out["clusterers"] = tuple(specs)
    if raw.get("signals") is not None:
        signals = raw["signals"] if isinstance(raw["signals"], list) else [raw["signals"]]
        for name in signals:
            if name not in SIGNALS:
                raise UsageError(f"{where}.signals: unknown signal {name!r}{suggest(str(name), SIGNALS)}")
        out["signals"] = tuple(signals)
    return MeasureSettings(**out)
