"""What the speed benchmarks run on (model, questions, measure settings) and the small helpers they share.

Default subject: the toy world demo's DPO checkpoint (checkpoints/toy/dpo, written by `make demo`) on
the world's held-out questions (for any chain stage given as model=: <chain>/world/eval.jsonl if present), sampled with the toy recipe's measure settings (prompt format, stop
strings, few-shot, temperature, batch size) as recorded in the checkpoint's stage.json. Without it,
a random-weight model of recipes/toy.yaml's `model.build` shape (so its per-token cost is the demo
model's) is built in a temporary directory with train.tiny.build_tiny_model and sampled on
tests/data/eval.jsonl with recipes/toy.yaml's prompt format and measure settings.
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from measure import BenchmarkSpec, MeasureSettings, parse_measure_settings
from measure.common.errors import UsageError
from train.checkpoint import MANIFEST, read_manifest

REPO = Path(__file__).resolve().parents[1]
TOY_CHAIN = REPO / "checkpoints" / "toy"
TOY_MODEL = TOY_CHAIN / "dpo"
TEST_DATA = REPO / "tests" / "data"
TOY_RECIPE = REPO / "recipes" / "toy.yaml"
# used when recipes/toy.yaml is absent or has no model.build: its shape when this was written
FALLBACK_SHAPE = dict(architecture="llama", hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384,
                      vocab_size=512, max_position_embeddings=64)
# the memory benchmark's default model: big enough (27.5M parameters, 105 MiB) that a second frozen copy
# stands out of the trainer's own overhead, small enough for a few CPU steps in seconds
WIDE_SHAPE = dict(architecture="llama", hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1536,
                  vocab_size=512, max_position_embeddings=128)
BUILD_KEYS = ("architecture", "hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
              "max_position_embeddings")


@dataclass(frozen=True)
class Subject:
    model_dir: Path
    questions_path: Path
    note: str                 # how the model was chosen, printed and recorded
    recipe: dict | None       # the chain recipe that trained it (its stage.json), if any
    stage: str | None
    preference_path: Path     # preference pairs the memory benchmark trains on


def read_stage_manifest(model_dir: Path) -> tuple[dict | None, str | None]:
    """(the recorded recipe, the stage) of a chain stage dir; (None, None) for any other model dir."""
    if not (model_dir / MANIFEST).exists():
        return None, None
    manifest = read_manifest(model_dir)   # invalid JSON: a UsageError naming file:line
    return manifest.recipe or None, manifest.stage


def toy_recipe() -> dict:
    """recipes/toy.yaml as plain YAML (not validated: only its model.build, prompt_format and measure are read)."""
    import yaml
    if not TOY_RECIPE.exists():
        return {}
    raw = yaml.safe_load(TOY_RECIPE.read_text(encoding="utf-8"))
    return raw if isinstance(raw, dict) else {}


def build_fallback_model(out_dir: Path, recipe: dict) -> Path:
    """A random-weight model of the toy recipe's shape; its tokenizer is trained on the test corpus.
    max_position_embeddings is at least 128 so a long prompt + answer fits (rotary: no extra compute)."""
    from train.tiny import build_tiny_model
    build = (recipe.get("model") or {}).get("build") or {}
    shape = {**FALLBACK_SHAPE, **{k: build[k] for k in BUILD_KEYS if k in build}}
    shape["max_position_embeddings"] = max(shape["max_position_embeddings"], 128)
    corpus = (TEST_DATA / "corpus.txt").read_text(encoding="utf-8").splitlines()
    corpus += [json.loads(line)["question"] for line in (TEST_DATA / "eval.jsonl").read_text().splitlines() if line.strip()]
    return build_tiny_model(out_dir, corpus, seed=0, **shape)


def build_wide_model(out_dir: Path) -> Path:
    from train.tiny import build_tiny_model
    corpus = (TEST_DATA / "corpus.txt").read_text(encoding="utf-8").splitlines()
    return build_tiny_model(out_dir, corpus, seed=0, **WIDE_SHAPE)


def choose_subject(model: str | None, questions: str | None, workdir: Path) -> Subject:
    """model/questions from the command line, else the toy DPO checkpoint, else a freshly built model."""
    fallback: dict | None = None
    if model is not None:
        model_dir = Path(model)
        if not (model_dir / "config.json").exists():
            raise UsageError(f"model={model!r}: no config.json there; give a local Hugging Face model directory")
        note = f"model={model_dir} (given)"
    elif (TOY_MODEL / "stage.json").exists():
        model_dir = TOY_MODEL
        note = f"the toy world demo's DPO checkpoint {TOY_MODEL.relative_to(REPO)}"
    else:
        fallback = toy_recipe()
        model_dir = build_fallback_model(workdir / "fallback-model", fallback)
        note = (f"{TOY_MODEL.relative_to(REPO)} not found (run `make demo` to benchmark the demo model): "
                "a random-weight model of recipes/toy.yaml's shape, built with train.tiny.build_tiny_model, "
                "sampled with recipes/toy.yaml's measure settings")
    chain_eval = model_dir.parent / "world" / "eval.jsonl"   # a chain stage's generated world, if it has one
    if questions is not None:
        questions_path = Path(questions)
    elif (model_dir / "stage.json").exists() and chain_eval.exists():
        questions_path = chain_eval
    else:
        questions_path = TEST_DATA / "eval.jsonl"
    if not questions_path.exists():
        raise UsageError(f"questions={questions_path}: file not found")
    recipe, stage = read_stage_manifest(model_dir)
    if fallback is not None:
        recipe, stage = fallback, None
    world_pairs = questions_path.parent / "dpo.jsonl"  # a generated world keeps its pairs beside eval.jsonl
    preference = world_pairs if world_pairs.exists() else TEST_DATA / "dpo.jsonl"
    return Subject(model_dir, questions_path, note, recipe, stage, preference)


def measure_settings(subject: Subject, tokenizer, *, n_samples: int, max_new_tokens: int,
                     batch_size: int | None, prompt_format: str | None) -> tuple[MeasureSettings, str]:
    """The sampling settings of the subject's recipe (its stage.json, or recipes/toy.yaml for the fallback
    model), with N, max_new_tokens and (if given) batch_size from the command line. The prompt format:
    the command line's, else the stage's, else the recipe's, else chat when the tokenizer has a template."""
    raw: dict[str, Any] = {}
    fmt = prompt_format
    if subject.recipe is not None:
        from train.recipe import BASE, Recipe
        measure = subject.recipe.get("measure") or {}
        raw = {k: measure[k] for k in ("temperature", "top_p", "batch_size", "stop", "fewshot", "seed",
                                                       "embedding_model") if k in measure}
        if fmt is None:
            try:  # the recipe as its stage.json recorded it, typed like a loaded one
                fmt = Recipe.from_mapping(subject.recipe, TOY_RECIPE).prompt_format_of(subject.stage or BASE)
            except (KeyError, TypeError, UsageError):
                fmt = None
    if fmt is None:
        fmt = "chat" if getattr(tokenizer, "chat_template", None) else "qa"
    raw.update(n_samples=n_samples, max_new_tokens=max_new_tokens)
    if batch_size is not None:
        raw["batch_size"] = batch_size
    return parse_measure_settings(raw, "benchmark settings"), fmt


def load_questions(subject: Subject, limit: int | None, seed: int):
    from measure import load_benchmark
    return load_benchmark(BenchmarkSpec(name="jsonl", path=str(subject.questions_path), limit=limit), seed=seed)


# ---------------------------------------------------------------- timing, memory, tables

def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, this process's CPU seconds, result). With one torch thread the CPU seconds are the
    work done, whatever else the machine runs; wall seconds include waiting for a shared core."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _proc_status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc/self/status VmRSS; elsewhere the peak so far)."""
    rss = _proc_status_bytes("VmRSS")
    return rss if rss is not None else ru_maxrss_bytes()


def ru_maxrss_bytes() -> int:
    """getrusage's ru_maxrss (KiB on Linux, bytes on macOS). On Linux it is NOT this program's own peak
    when the parent is big: the kernel carries the high-water mark of the address space that exec
    replaced -- with vfork/fork+exec, the parent's -- into ru_maxrss (seen here: a child launched after
    the parent had loaded the clustering models started at the parent's ~690 MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if os.uname().sysname == "Darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This program's own peak RSS: VmHWM of its address space (since the last reset_peak_rss), where
    /proc exists; else ru_maxrss."""
    hwm = _proc_status_bytes("VmHWM")
    return hwm if hwm is not None else ru_maxrss_bytes()


def fmt_num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table."""
    cells = [[fmt_num(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [title, "  ".join(str(h).ljust(w) for h, w in zip(headers, widths)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def settings_record(settings: MeasureSettings, prompt_format: str) -> dict:
    block = {k: v for k, v in dataclasses.asdict(settings).items()
             if k in ("n_samples", "temperature", "top_p", "max_new_tokens", "batch_size", "stop", "fewshot", "seed")}
    return {**block, "prompt_format": prompt_format}
