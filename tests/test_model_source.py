"""Model references without GGUF packages: what each kind resolves to and records (measure/sampling/model_source.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from measure.common.errors import UsageError
from measure.sampling.model_source import locate, resolve_model, sha256_file

REPO = Path(__file__).resolve().parents[1]


def test_hub_id_and_checkpoint_dir_resolve_without_conversion(tiny_model_dir):
    hub = resolve_model("org/name")
    assert (hub.kind, hub.path, hub.gguf) == ("hub", "org/name", None)
    assert hub.provenance() == {"given": "org/name", "kind": "hub", "loaded_from": "org/name"}
    local = resolve_model(str(tiny_model_dir))
    assert (local.kind, local.path, local.gguf) == ("dir", str(tiny_model_dir), None)
    files = local.provenance()["files"]
    assert files["config.json"] == sha256_file(tiny_model_dir / "config.json") and "model.safetensors" in files


def test_locate_names_what_was_expected(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert locate(str(tmp_path / "adapter")) == ("adapter", tmp_path / "adapter")
    with pytest.raises(UsageError, match="no config.json, adapter_config.json or .gguf"):
        locate(str(tmp_path))
    with pytest.raises(UsageError, match="no such file or directory"):
        locate(str(tmp_path / "missing"))


# ---------------------------------------------------------------- weights: safetensors, or pickles weights-only

def _bin_only_copy(src, dst, state_dict):
    """`src`'s config and tokenizer with `state_dict` saved as pytorch_model.bin (torch.save: a pickle) and
    no safetensors file, as an old hub checkpoint ships (e.g. lomahony/eleuther-pythia160m-hh-sft)."""
    import shutil
    import torch
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(state_dict, dst / "pytorch_model.bin")
    return dst


def test_pickled_weights_load_weights_only_and_are_recorded(tiny_model_dir, tmp_path, monkeypatch):
    """A .bin-only checkpoint (here stored in float16) loads through the measurement's loader -- float32 on a
    CPU, the stored values exactly -- and its provenance names the file and the weights-only loader; beside a
    safetensors file the .bin is never read; measure run (here in prompt_format=hh) records both in its report."""
    import json
    import torch
    from transformers import AutoModelForCausalLM
    from measure.cli import main
    from measure.sampling.backends import HFBackend
    from measure.sampling.model_source import WEIGHTS_ONLY
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    half = {k: v.half() for k, v in reference.state_dict().items()}
    bin_dir = _bin_only_copy(tiny_model_dir, tmp_path / "bin_only", half)
    model, _ = HFBackend().load(str(bin_dir), "cpu")
    assert model.dtype == torch.float32
    for name, value in model.state_dict().items():
        assert torch.equal(value, half[name].float()), name
    prov = resolve_model(str(bin_dir)).provenance()
    assert prov["weights"] == {"file": "pytorch_model.bin", "format": "pickle", "loaded_with": WEIGHTS_ONLY}
    assert prov["files"]["pytorch_model.bin"] == sha256_file(bin_dir / "pytorch_model.bin")
    assert resolve_model(str(tiny_model_dir)).provenance()["weights"] == {"file": "model.safetensors",
                                                                          "format": "safetensors"}
    # both files: safetensors is what loads (the .bin here holds zeros)
    both = _bin_only_copy(tiny_model_dir, tmp_path / "both", {k: torch.zeros_like(v) for k, v in half.items()})
    import shutil
    shutil.copy(tiny_model_dir / "model.safetensors", both / "model.safetensors")
    loaded, _ = HFBackend().load(str(both), "cpu")
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert resolve_model(str(both)).provenance()["weights"]["format"] == "safetensors"
    # the report of a run on the .bin checkpoint
    out = tmp_path / "run"
    main(["run", f"model={bin_dir}", "benchmark=jsonl", f"benchmark_path={REPO / 'tests/data/eval.jsonl'}",
          f"out={out}", "limit=2", "n_samples=2", "max_new_tokens=3", "bootstrap=10", "clusterers=[exact]",
          "prompt_format=hh"])
    settings = json.loads((out / "report.json").read_text())["settings"]
    assert settings["model_files"]["weights"]["loaded_with"] == WEIGHTS_ONLY and settings["model_dtype"] == "float32"
    assert settings["prompt_format"] == "hh"


def test_a_pickle_holding_code_is_refused_never_run(tiny_model_dir, tmp_path):
    """A pytorch_model.bin whose pickle would call a function on load is refused by every loader (measurement,
    training) with a UsageError naming the refused global, and the function never runs."""
    import pathlib
    from transformers import AutoModelForCausalLM
    from measure.sampling.backends import HFBackend
    from train.checkpoint import load_model
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    state = {**AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict(), "extra": Payload()}
    evil = _bin_only_copy(tiny_model_dir, tmp_path / "evil", state)
    assert not marker.exists()
    for load in (lambda: HFBackend().load(str(evil), "cpu"), lambda: load_model(str(evil))):
        with pytest.raises(UsageError, match=r"evil: its pickled weights .* weights-only .*refused: Unsupported global"):
            load()
    assert not marker.exists()


def test_hub_weights_are_read_from_the_local_cache_only(monkeypatch):
    """A hub id's weights entry comes from the local hub cache (no network): the file a finished download
    left, absent before any."""
    import huggingface_hub
    from measure.sampling.model_source import WEIGHTS_ONLY
    cached = {("org/old", "pytorch_model.bin"), ("org/new", "model.safetensors"), ("org/new", "pytorch_model.bin")}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name, **kw: f"/cache/{repo}/{name}" if (repo, name) in cached else None)
    assert resolve_model("org/old").provenance()["weights"] == {"file": "pytorch_model.bin", "format": "pickle",
                                                                "loaded_with": WEIGHTS_ONLY}
    assert resolve_model("org/new").provenance()["weights"]["file"] == "model.safetensors"
    assert "weights" not in resolve_model("org/none").provenance()
