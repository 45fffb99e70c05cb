"""Shared test setup: offline hub, the shared benchmark data path, tiny local models built once per session."""
from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # a hidden hub download must fail loudly, never hang or succeed
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


# `make test` runs `-n 2 --dist loadfile --no-loadscope-reorder`: files are handed to the two workers in
# collection order, so the longest ones (measured with --durations) come first and start on separate
# workers; every other file keeps its place.
LONGEST_FIRST = ("test_real_models.py", "test_dynamics.py", "test_train.py", "test_self_pairs.py",
                 "test_harness_smoke.py", "test_measure_cli.py", "test_sweep.py", "test_scaleout.py", "test_seeds.py",
                 "test_mitigations.py", "test_length.py", "test_outputs.py", "test_bad_inputs.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: order within a file kept


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


# ---------------------------------------------------------------- tiny models (owner: sampling helper)

# ~50 short Q/A lines: the corpus the session's tiny tokenizer is trained on (fixed, so ids are stable).
_FACTS = [("What is the capital of France?", "Paris."), ("What is the capital of Italy?", "Rome."),
          ("What is the capital of Spain?", "Madrid."), ("What is the capital of Japan?", "Tokyo."),
          ("What colour is the sky?", "Blue."), ("What colour is grass?", "Green."),
          ("How many legs does a cat have?", "Four."), ("How many legs does a bird have?", "Two."),
          ("Who wrote Hamlet?", "William Shakespeare."), ("What do bees make?", "Honey."),
          ("What is frozen water called?", "Ice."), ("Which planet is called the red planet?", "Mars."),
          ("What is the largest ocean?", "The Pacific Ocean."), ("How many days are in a week?", "Seven.")]
TINY_CORPUS: tuple[str, ...] = tuple(
    [f"Q: {q}\nA: {a}" for q, a in _FACTS]
    + [f"Q: What is {a} plus {b}?\nA: {a + b}." for a, b in zip(range(1, 19), range(3, 39, 2))]
    + [f"Q: What is {a} times {b}?\nA: {a * b}." for a, b in zip(range(2, 20), range(3, 21))])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random llama (2 layers, hidden 64) + byte-level BPE tokenizer with chat template, built once."""
    from train.tiny import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny_llama"), TINY_CORPUS, architecture="llama", seed=0)


@pytest.fixture(scope="session")
def tiny_neox_model_dir(tmp_path_factory) -> Path:
    """A tiny random GPT-NeoX (Pythia's layout: partial rotary, parallel residual, untied output layer), same
    tokenizer corpus as tiny_model_dir, built once."""
    from train.tiny import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny_neox"), TINY_CORPUS, architecture="gpt_neox", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """(model, tokenizer) loaded from tiny_model_dir with the Auto classes; model in eval mode. Do not mutate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


# ---------------------------------------------------------------- "nothing written" checks (owner: issue 10)

def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under root with its size and modification time: equal before and after a
    refused command means it created, changed and deleted nothing there."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def tree_contents(root: Path) -> dict[str, tuple]:
    """Every path under root with what it holds: a file's sha256 and modification time, a link's target, a
    folder as such. Equal before and after a refused command: no byte of any file there (inputs included)
    was created, changed or deleted."""
    import hashlib
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = ("link", os.readlink(p))
        elif p.is_dir():
            out[str(p.relative_to(root))] = ("dir",)
        elif not p.is_file():   # a FIFO or device: its mode only (reading it could block forever)
            out[str(p.relative_to(root))] = ("special", p.lstat().st_mode, p.lstat().st_mtime_ns)
        else:
            out[str(p.relative_to(root))] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), p.lstat().st_mtime_ns)
    return out
