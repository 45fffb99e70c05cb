"""The `measure` settings: one dataclass, validated from a recipe section or CLI overrides.

Each setting is declared once, on its MeasureSettings field: default, help, choices and bounds (field
metadata, measure.common.fields); the types a key takes come from the type hints. Validation and
`--help` read them from there, so a new setting is one edit. Defaults owned by the code that uses them
(the NLI model, the judge margin, the ambiguity policies) are imported from it, never restated.
Every key is named in errors with its valid choices; unknown keys are errors (close matches suggested).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from measure.data.benchmarks import BENCHMARKS, BenchmarkSpec  # noqa: F401  (BenchmarkSpec: part of the settings)
from measure.scoring.cluster import DEFAULT_NLI_BATCH_SIZE, DEFAULT_NLI_MODEL, validate_clusterer_spec
from measure.scoring.correctness import AMBIGUOUS_POLICIES, DEFAULT_JUDGE_MARGIN, JUDGES
from measure.common.errors import UsageError, suggest
from measure.common.fields import declared
from measure.scoring.homogeneity import MEASURES
from measure.scoring.signals import SIGNALS
from measure.common.values import SEED_MAX, as_int, check_numbers
from measure.records.records import MIN_SAMPLES

BACKENDS = ("hf", "vllm")            # measure/sampling/backends.py's BACKENDS (a higher room: named, not imported)
DECODERS = ("compact", "generate")   # backend=hf decode loops (measure/sampling/decode.py, model.generate)
DEFAULT_CLUSTERERS = ("exact", "jaccard", "embedding")


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A settings field: its default and its declaration (help, choices, min), in one place."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class MeasureSettings:
    benchmarks: tuple[BenchmarkSpec, ...] = _f((), "benchmarks: names or {name, path, limit, split, judge} mappings")
    n_samples: int = _f(10, "samples per question (besides the greedy answer); >= 2: one sample is always one "
                        "cluster (SCR 1.000 by construction)", min=MIN_SAMPLES)
    max_samples: int = _f(1000, "bound on samples per question (n_samples, and each question of a scored file); "
                          "a guard against typos, raise it for a deliberately larger N", min=MIN_SAMPLES)
    temperature: float = _f(1.0, "sampling temperature (> 0)")
    top_p: float = _f(1.0, "nucleus sampling, in (0, 1]")
    max_new_tokens: int = _f(40, "tokens per answer at most", min=1)
    batch_size: int | None = _f(None, "questions per batch (resume/shard unit); unset: one decode call's prompts", min=1)
    rows_per_call: int | None = _f(None, "rows (prompts x (greedy + N)) per decode call; unset: auto (176 on CPU, "
                                   "from GPU memory and model size on CUDA; measure/sampling/batching.py)", min=1)
    stop: tuple[str, ...] = _f((), "stop strings (besides EOS)")
    fewshot: tuple[tuple[str, str], ...] | None = _f(None, "[{question, answer}] shots for prompt_format=qa "
                                                     "(unset: the default shots) or hh (earlier turns; unset: none)")
    clusterers: tuple[Any, ...] = _f(DEFAULT_CLUSTERERS, "names or {name: ..., threshold: ...} mappings")
    signals: tuple[str, ...] | None = _f(None, "signals to compute; unset: every registered signal")
    homogeneity: tuple[str, ...] | None = _f(None, "continuous homogeneity measures (higher = more homogeneous; "
                                             f"measure/scoring/homogeneity.py): any of {', '.join(MEASURES)}; "
                                             "unset: all; [] : none")
    embedding_model: str | None = _f(None, "sentence embedder; unset: the bundled all-MiniLM-L6-v2")
    nli_model: str = _f(DEFAULT_NLI_MODEL, "NLI model of the nli clusterer")
    nli_batch_size: int = _f(DEFAULT_NLI_BATCH_SIZE, "NLI pairs per forward pass", min=1)
    judge_margin: float = _f(DEFAULT_JUDGE_MARGIN, "truthfulqa judge: |sim(correct) - sim(incorrect)| <= margin "
                             "-> ambiguous (measure/scoring/correctness.py)")
    ambiguous: str = _f(AMBIGUOUS_POLICIES[0], "how ambiguous judgements enter AUROC etc.",
                        choices=AMBIGUOUS_POLICIES, noun="policy")
    bootstrap: int = _f(1000, "bootstrap resamples for the AUROC intervals; 0: no AUROC interval", min=0)
    seed: int = _f(0, "sampling and bootstrap seed", min=0, max=SEED_MAX)
    backend: str = _f("hf", "hf: exact full-vocabulary token entropy | vllm: top-k truncated "
                      "(measure/sampling/backends.py)", choices=BACKENDS)
    vllm_logprobs: int = _f(20, "backend=vllm: top-k log-probabilities per step", min=1)
    decoder: str = _f("compact", "backend=hf: compact (finished rows leave the batch) | generate (model.generate)",
                      choices=DECODERS)


# the settings a key=value option or YAML scalar gives directly: int / float / str fields, types from the hints
SCALAR_FIELDS = {key: d for key, d in declared(MeasureSettings).items()
                 if d.kinds and set(d.kinds) <= {int, float, str}}


def _check_type(key: str, value: Any, kinds: tuple[type, ...], where: str) -> None:
    if isinstance(value, bool) and bool not in kinds:
        raise UsageError(f"{where}{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise UsageError(f"{where}{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__} {value!r}")


def _benchmark(value: Any, where: str) -> BenchmarkSpec:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: a benchmark is a name or a mapping with 'name' (and path, limit, split, judge)")
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
    for key in ("path", "split", "judge"):
        if value.get(key) is not None:
            _check_type(key, value[key], (str,), f"{where}.")
    if value.get("judge") is not None and value["judge"] not in JUDGES:
        raise UsageError(f"{where}.judge: unknown judge {value['judge']!r}{suggest(value['judge'], JUDGES)}")
    return BenchmarkSpec(**value)


def parse_measure_settings(raw: dict | None, where: str = "measure") -> MeasureSettings:
    """Validate a `measure:` mapping. `where` prefixes key names in errors (e.g. 'recipes/x.yaml: measure')."""
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(MeasureSettings)}
    for key in raw:
        if key not in fields:
            raise UsageError(f"{where}: unknown key {key!r}{suggest(key, fields)}")
    out: dict[str, Any] = {}
    for key, d in SCALAR_FIELDS.items():
        if raw.get(key) is not None:
            _check_type(key, raw[key], d.kinds, f"{where}.")
            out[key] = raw[key]
    check_numbers(raw, where)   # .nan / .inf / integers beyond 64 bits: refused before a cache is written
    if out.get("n_samples") == 1:
        raise UsageError(f"{where}.n_samples: 1 sample per question is always one cluster, so SCR would read 1.000 "
                         f"and every cluster measure would be fixed by construction; use n_samples >= {MIN_SAMPLES}")
    for key, d in SCALAR_FIELDS.items():   # declared choices and bounds
        if key not in out:
            continue
        if d.choices is not None and out[key] not in d.choices:
            noun = f"{d.noun} " if d.noun else ""
            raise UsageError(f"{where}.{key}: unknown {noun}{out[key]!r}{suggest(out[key], d.choices)}")
        if d.hi is not None:
            as_int(out[key], f"{where}.{key}", d.lo, d.hi)
        elif d.lo is not None and out[key] < d.lo:
            raise UsageError(f"{where}.{key}: must be >= {d.lo}, got {out[key]}")
    for key, d in SCALAR_FIELDS.items():   # YAML gives 1 for "1": float fields are floats
        if key in out and float in d.kinds:
            out[key] = float(out[key])
    if out.get("n_samples", 0) > out.get("max_samples", MeasureSettings.max_samples):
        raise UsageError(f"{where}.n_samples: {out['n_samples']} is over max_samples="
                         f"{out.get('max_samples', MeasureSettings.max_samples)} (the bound on samples per question, "
                         "against typos: one question's samples are clustered and compared pairwise); if that N is "
                         f"meant, pass max_samples={out['n_samples']} too")
    if "temperature" in out and out["temperature"] <= 0:
        raise UsageError(f"{where}.temperature: must be > 0 (the greedy answer is always taken separately)")
    if "top_p" in out and not 0 < out["top_p"] <= 1:
        raise UsageError(f"{where}.top_p: must be in (0, 1], got {out['top_p']}")
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
    if raw.get("homogeneity") is not None:
        names = raw["homogeneity"] if isinstance(raw["homogeneity"], list) else [raw["homogeneity"]]
        for name in names:
            if name not in MEASURES:
                raise UsageError(f"{where}.homogeneity: unknown measure {name!r}{suggest(str(name), MEASURES)}; "
                                 f"valid: {', '.join(MEASURES)}")
        out["homogeneity"] = tuple(dict.fromkeys(names))
    return MeasureSettings(**out)
