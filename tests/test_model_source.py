"""Model references without GGUF packages: what each kind resolves to and records (measure/sampling/model_source.py)."""
from __future__ import annotations

import pytest

from measure.common.errors import UsageError
from measure.sampling.model_source import locate, resolve_model, sha256_file


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
