"""Sampling a model that is being trained, leaving no trace on the training run.

    with untouched_training_state(model):
        rows = sample_questions(model, ...)     # reseeds every generator, switches to eval mode

The sampler seeds each decode call (measure.sampling.sample.generate -> transformers.set_seed: Python's
`random`, numpy's global generator, torch's CPU generator and every accelerator's) and puts the model in
eval mode. A training loop draws from the same generators afterwards (dropout masks, data order,
DPO/KTO sampling) and expects its own train/eval mode per module. This block saves all of them and puts
them back exactly, and runs its body without autograd, so the optimizer step that follows sees the same
generator states, modes and gradients as if nothing had run: the weights and losses of a run with an
in-training measurement are bitwise those of a run without one (tests/test_dynamics.py).
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch

# accelerator modules of torch whose default generators transformers.set_seed reseeds (when present)
ACCELERATORS = ("cuda", "xpu", "npu", "mlu", "musa", "hpu", "mps")


def _accelerator_states() -> dict[str, Any]:
    states: dict[str, Any] = {}
    for name in ACCELERATORS:
        module = getattr(torch, name, None)
        available = getattr(module, "is_available", None)
        try:
            if module is None or not callable(available) or not available():
                continue
            get_all = getattr(module, "get_rng_state_all", None)
            states[name] = get_all() if callable(get_all) else module.get_rng_state()
        except (RuntimeError, AttributeError):   # a backend compiled in but not initialisable here
            continue
    return states


def _restore_accelerators(states: dict[str, Any]) -> None:
    for name, state in states.items():
        module = getattr(torch, name)
        set_all = getattr(module, "set_rng_state_all", None)
        if callable(set_all) and isinstance(state, (list, tuple)):
            set_all(state)
        else:
            module.set_rng_state(state)


@contextlib.contextmanager
def preserved_random_state() -> Iterator[None]:
    """Every random generator the sampler reseeds, saved on entry and restored on exit (even on error)."""
    python, numpy_state, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    accelerators = _accelerator_states()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(cpu)
        _restore_accelerators(accelerators)


@contextlib.contextmanager
def untouched_training_state(model) -> Iterator[None]:
    """Random generators and the train/eval flag of every module saved and restored around the body, which
    runs under torch.no_grad() with the model in eval mode."""
    modes = [(module, module.training) for module in model.modules()] if hasattr(model, "modules") else []
    with preserved_random_state(), torch.no_grad():
        try:
            if hasattr(model, "eval"):
                model.eval()
            yield
        finally:
            for module, training in modes:
                module.training = training
