"""Recipe validation and bad-input handling of the training CLIs: exit 2, a named error, nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from measure.common.errors import UsageError
from measure.common.overrides import parse_overrides
from train import chain
from train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates(path, monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = load_recipe(path)
    assert recipe.name and recipe.output_dir
    for spec in recipe.stages.values():
        assert spec.parent in recipe.stage_names[:recipe.stage_names.index(spec.name)]


def test_defaults_and_overrides(monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = load_recipe("recipes/tiny.yaml", parse_overrides(["stages.dpo.args.beta=0.05", "seed=3"]))
    assert recipe.stages["dpo"].args["beta"] == 0.05
    assert recipe.seed == 3
    assert recipe.output_dir == "checkpoints/tiny"
    assert recipe.stages["sft"].parent == "base" and recipe.stages["dpo"].mode == "merge"


def test_the_typed_recipe_is_frozen_and_its_defaults_come_from_the_dataclasses(tmp_path):
    """A recipe that leaves every optional key out gets each default from its dataclass field; to_dict() is the
    YAML as written plus those defaults (what stage.json records), and reading that record back gives the same
    typed recipe (train/reuse.py compares a recorded and a current recipe this way)."""
    import dataclasses
    from train.recipe import LoraSpec, Quantization, Recipe, StageSpec
    raw = {"name": "r", "model": {"path": str(REPO / "tests")},
           "lora": {"r": 4}, "stages": {"sft": {"trainer": "sft", "dataset": str(REPO / "tests/data/sft.jsonl")},
                                        "dpo": {"trainer": "dpo", "dataset": str(REPO / "tests/data/dpo.jsonl"),
                                                "lora": {"alpha": 8}, "prompt_format": "qa"},
                                        "full": {"trainer": "sft", "dataset": str(REPO / "tests/data/sft.jsonl"),
                                                 "lora": False}}}
    recipe = Recipe.from_mapping(raw, tmp_path / "r.yaml")
    assert (recipe.seed, recipe.prompt_format, recipe.output_dir) == (Recipe.seed, Recipe.prompt_format, "checkpoints/r")
    sft, dpo, full = recipe.stages.values()
    assert (sft.parent, dpo.parent, full.parent) == ("base", "sft", "dpo")      # `from`: the stage before
    assert sft.mode == "merge" and sft.args == {} and sft.prompt_format == "chat" and dpo.prompt_format == "qa"
    assert sft.lora == LoraSpec(r=4) and dpo.lora == LoraSpec(r=4, alpha=8) and full.lora is None
    assert LoraSpec().settings() == {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        sft.mode = "continue"
    recorded = recipe.to_dict()
    assert list(recorded) == ["name", "model", "lora", "stages", "seed", "prompt_format", "output_dir"]  # as written, then defaults
    assert recorded["stages"]["sft"] == {**raw["stages"]["sft"], "from": "base", "mode": "merge", "args": {}}
    assert raw["stages"]["sft"] == {"trainer": "sft", "dataset": str(REPO / "tests/data/sft.jsonl")}  # not mutated
    assert Recipe.from_mapping(recorded, tmp_path / "r.yaml") == recipe
    assert isinstance(recipe.stages["dpo"], StageSpec) and recipe.prompt_format_of("base") == "chat"
    q = Recipe.from_mapping({**raw, "model": {**raw["model"], "quantization": {"load_in_4bit": True}}}, tmp_path)
    assert q.model.quantization == Quantization() and Quantization().bnb_4bit_quant_type == "nf4"


def test_unknown_stage_names_the_stages():
    recipe = load_recipe(REPO / "recipes/tiny.yaml")
    with pytest.raises(UsageError, match=r"unknown stage 'dop' \(did you mean 'dpo'\?\); valid choices: dpo, sft"):
        recipe.stage("dop")


def test_stage_manifest_reads_todays_and_older_files(tmp_path):
    """stage.json -> StageManifest: typed fields, absent keys at their defaults, hashed exactly as written."""
    import hashlib
    from train.checkpoint import read_manifest
    content = {"name": "c", "stage": "dpo", "chain_index": 2, "output_dir": "/x", "trainer": "dpo", "parent": "sft",
               "parent_hash": "ab", "mode": "merge", "adapter": "/x/dpo/adapter", "train_metrics": {"global_step": 3},
               "recipe": {"name": "c"}, "extra_key": [1, 2]}
    (tmp_path / "stage.json").write_text(json.dumps(content, indent=2))
    m = read_manifest(tmp_path)
    assert (m.stage, m.parent, m.parent_hash, m.adapter, m.train_metrics["global_step"]) == ("dpo", "sft", "ab", "/x/dpo/adapter", 3)
    assert m.datasets == [] and m.adapter_base is None and m.external is False and m.recorded["extra_key"] == [1, 2]
    assert m.hash == hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    (tmp_path / "stage.json").write_text(json.dumps({"name": "old", "stage": "base"}))   # an older, sparser file
    old = read_manifest(tmp_path)
    assert old.parent is None and old.recipe == {} and old.trainer is None
    (tmp_path / "stage.json").write_text("[1]")
    with pytest.raises(UsageError, match=r"stage.json: a stage.json is a JSON object"):
        read_manifest(tmp_path)


def test_override_parser():
    assert parse_overrides(["a.b=1", "c=[x, y]", "d=true", "e=run1"]) == {"a.b": 1, "c": ["x", "y"], "d": True, "e": "run1"}
    with pytest.raises(UsageError, match="key=value"):
        parse_overrides(["--beta", "0.1"])


def _write_recipe(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())
    raw["output_dir"] = str(tmp_path / "out")
    for key in ("corpus",):
        raw["model"]["build"][key] = str(REPO / "tests/data/corpus.txt")
    raw["model"]["pretrain"]["dataset"] = str(REPO / "tests/data/corpus.txt")
    raw["stages"]["sft"]["dataset"] = str(REPO / "tests/data/sft.jsonl")
    raw["stages"]["dpo"]["dataset"] = str(REPO / "tests/data/dpo.jsonl")
    mutate(raw, tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _set(path: str, value):
    def mutate(raw, _tmp):
        node = raw
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return mutate


def _bad_sft_rows(raw, tmp):
    bad = tmp / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    raw["stages"]["sft"]["dataset"] = str(bad)


def _broken_json(raw, tmp):
    bad = tmp / "broken.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", \n')
    raw["stages"]["sft"]["dataset"] = str(bad)


def _wrong_format(raw, tmp):
    raw["stages"]["dpo"]["dataset"] = str(REPO / "tests/data/sft.jsonl")


BAD_CASES = {
    "unknown top key": (_set("stagez", {}), "unknown key 'stagez'.*did you mean 'stages'"),
    "unknown arg in args": (_set("stages.dpo.args.betta", 0.1), r"stages.dpo.args.betta: not a DPOConfig argument.*'beta'"),
    "wrong arg type": (_set("stages.dpo.args.beta", "high"), r"stages.dpo.args.beta: expected float"),
    "unknown trainer": (_set("stages.dpo.trainer", "dpoo"), r"stages.dpo.trainer: unknown trainer 'dpoo'.*valid choices"),
    "from unknown stage": (_set("stages.sft.from", "dpo"), r"stages.sft.from: 'dpo' is not an earlier stage"),
    "bad chaining mode": (_set("stages.dpo.mode", "stack"), r"stages.dpo.mode: unknown chaining mode 'stack'.*continue, merge"),
    "missing dataset file": (_set("stages.sft.dataset", "nope/missing.jsonl"), r"stages.sft.dataset.path: file not found"),
    "bad prompt format": (_set("prompt_format", "chatml"), r"prompt_format: unknown 'chatml'.*chat, hh, qa"),
    "unknown architecture": (_set("model.build.architecture", "gpt9"), r"architecture: unknown 'gpt9'.*llama"),
    "wrong lora type": (_set("lora.r", "eight"), r"lora.r: expected int"),
    "unknown measure key": (_set("measure", {"n_sample": 5}), r"measure: unknown key 'n_sample'.*n_samples"),
    "unknown benchmark": (_set("measure", {"benchmarks": ["truthfullqa"]}), r"unknown benchmark 'truthfullqa'"),
    "continue from base": (_set("stages.sft.mode", "continue"), r"stages.sft.mode: 'continue'.*LoRA"),
    "malformed dataset row": (_bad_sft_rows, r"bad.jsonl:2: missing field 'completion'"),
    "broken json line": (_broken_json, r"broken.jsonl:2: invalid JSON"),
    "wrong dataset format for trainer": (_wrong_format, r"a 'dpo' stage needs a dataset in format preference or hh"),
    "output_dir inside args": (_set("stages.sft.args.output_dir", "/tmp/x"), r"stages.sft.args.output_dir: set by the stage layout"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_recipe_exits_2_and_writes_nothing(case, tmp_path, capsys):
    mutate, pattern = BAD_CASES[case]
    path = _write_recipe(tmp_path, mutate)
    with pytest.raises(SystemExit) as exc:
        chain.main([f"recipe={path}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    import re
    assert re.search(pattern, err), err
    assert not (tmp_path / "out").exists()


def test_bad_override_and_missing_recipe(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        chain.main([f"recipe={tmp_path / 'missing.yaml'}"])
    assert exc.value.code == 2 and "recipe file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        chain.main(["recipe=recipes/tiny.yaml", "seed"])
    assert exc.value.code == 2 and "not of the form key=value" in capsys.readouterr().err
    path = _write_recipe(tmp_path, lambda raw, tmp: None)
    with pytest.raises(SystemExit) as exc:
        chain.main([f"recipe={path}", "lora.r.x=3"])
    assert exc.value.code == 2 and "'lora.r' is a int, not a mapping" in capsys.readouterr().err


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel: {path: [unclosed\n")
    with pytest.raises(SystemExit):
        chain.main([f"recipe={path}"])
    assert f"{path}:" in capsys.readouterr().err


def test_stage_script_cli_exit_code(tmp_path):
    """The real script entry point, as a user types it, exits 2 with the message on stderr."""
    path = _write_recipe(tmp_path, _set("stages.dpo.args.beta", "high"))
    proc = subprocess.run([sys.executable, str(REPO / "train" / "dpo.py"), f"recipe={path}"],
                          capture_output=True, text=True, cwd=tmp_path, env={**__import__("os").environ})
    assert proc.returncode == 2, proc.stderr
    assert "stages.dpo.args.beta: expected float" in proc.stderr
    assert not (tmp_path / "out").exists()
    json.dumps(proc.stderr)  # printable
