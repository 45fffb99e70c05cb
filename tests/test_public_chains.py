"""Public stage chains (recipes/zephyr.yaml, tulu3.yaml, olmo2.yaml): measure-only stages by hub id.

The shipped recipes are validated as written; the chain itself runs on the Zephyr recipe with local
copies of the session's tiny model standing in for the three hub ids (same code path: a hub id and a
local dir both go through model_source -> from_pretrained), with a tiny measure section.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from measure.common.errors import UsageError
from train import checkpoint as ckpt
from train.recipe import load_recipe

pytestmark = pytest.mark.slow  # end-to-end runs through the real entry points (make test runs them)

REPO = Path(__file__).resolve().parents[1]
CHAINS = {
    "zephyr": ["mistralai/Mistral-7B-v0.1", "HuggingFaceH4/mistral-7b-sft-beta", "HuggingFaceH4/zephyr-7b-beta"],
    "tulu3": ["meta-llama/Llama-3.1-8B", "allenai/Llama-3.1-Tulu-3-8B-SFT", "allenai/Llama-3.1-Tulu-3-8B-DPO",
              "allenai/Llama-3.1-Tulu-3-8B"],
    "olmo2": ["allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-7B-SFT", "allenai/OLMo-2-1124-7B-DPO",
              "allenai/OLMo-2-1124-7B-Instruct"],
}
TINY_MEASURE = {"benchmarks": [{"name": "jsonl", "path": str(REPO / "tests/data/eval.jsonl")}], "n_samples": 3,
                "max_new_tokens": 6, "batch_size": 12, "clusterers": ["exact", "jaccard"], "bootstrap": 50}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_public_recipe_is_a_measure_only_chain(name, monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")
    assert [recipe.model.path, *(s.model for s in recipe.stages.values())] == CHAINS[name]
    assert all(s.trainer == "measure" for s in recipe.stages.values())
    assert [s.parent for s in recipe.stages.values()] == ["base", *list(recipe.stages)[:-1]]
    # hub ids, not local paths: the base is measured where it is, nothing is pretrained
    assert ckpt.model_source(recipe, "base") == CHAINS[name][0] and recipe.model.pretrain is None
    assert [recipe.prompt_format_of(s) for s in recipe.stage_names] == ["qa"] + ["chat"] * len(recipe.stages)
    m = recipe.to_dict()["measure"]
    assert m["benchmarks"] == ["truthfulqa", "gsm8k"] and (m["n_samples"], m["temperature"], m["max_new_tokens"]) == (10, 1.0, 40)
    assert m["clusterers"] == ["exact", "jaccard", "embedding", "nli"]
    header = (REPO / "recipes" / f"{name}.yaml").read_text().splitlines()[1]
    assert header.strip() == f"#   python -m train.chain recipe=recipes/{name}.yaml"


def test_stage_prompt_format_is_validated(tmp_path):
    with pytest.raises(UsageError, match=r"stages\.sft\.prompt_format: unknown 'chatml'.*chat, qa"):
        load_recipe(REPO / "recipes/zephyr.yaml", {"stages.sft.prompt_format": "chatml"})


# session-scoped: built once per test run (`make test` keeps each file on one worker); the tests only
# add to it, in order
@pytest.fixture(scope="session")
def local_chain(tiny_model_dir, tmp_path_factory):
    """The Zephyr recipe with three local copies of the tiny model in place of the hub ids, run by run_chain."""
    from train.chain import run_chain
    root = tmp_path_factory.mktemp("public")
    dirs = [root / name for name in ("base_model", "sft_model", "dpo_model")]
    for d in dirs:
        shutil.copytree(tiny_model_dir, d)
    overrides = {"model.path": str(dirs[0]), "stages.sft.model": str(dirs[1]), "stages.dpo.model": str(dirs[2]),
                 "output_dir": str(root / "out"), "measure": TINY_MEASURE}
    recipe = load_recipe(REPO / "recipes/zephyr.yaml", overrides)
    run_chain(recipe)
    return recipe, dirs


def test_chain_measures_every_stage_and_compares(local_chain):
    recipe, dirs = local_chain
    out = Path(recipe.output_dir)
    base = json.loads((out / "base" / "stage.json").read_text())
    assert base["external"] is True and base["merged_model"] == str(dirs[0]) and base["parent"] is None
    for stage, model_dir, fmt in (("base", dirs[0], "qa"), ("sft", dirs[1], "chat"), ("dpo", dirs[2], "chat")):
        manifest = json.loads((out / stage / "stage.json").read_text())
        if stage != "base":
            assert manifest["mode"] == "measure-only" and manifest["merged_model"] == str(model_dir)
            assert manifest["parent_hash"] == ckpt.manifest_hash(out / manifest["parent"])
        report = json.loads((out / stage / "measure" / "jsonl" / "report.json").read_text())
        assert report["n_questions"] == 12 and report["settings"]["model"] == str(model_dir)
        assert report["settings"]["prompt_format"] == fmt and report["settings"]["stage"] == stage
        assert report["settings"]["entropy"] == "exact full-vocabulary" and report["settings"]["backend"] == "hf"
        assert not (out / stage / "adapter").exists() and not (out / stage / "model.safetensors").exists()
    compare = json.loads((out / "compare" / "compare.json").read_text())
    assert compare["stages"] == ["base", "sft", "dpo"] and compare["benchmark"] == "jsonl"
    assert (out / "dpo" / "measure" / "jsonl" / "cascade").is_dir()
    # qa prompts carry the few-shot block, chat prompts the template: the two formats really differ
    base_samples = (out / "base" / "measure" / "jsonl" / "samples.jsonl").read_text()
    sft_samples = (out / "sft" / "measure" / "jsonl" / "samples.jsonl").read_text()
    assert base_samples != sft_samples


def test_measure_only_stages_are_finished_guarded_and_reused(local_chain, capsys):
    from train.chain import run_chain
    from train.stages import run_stage
    recipe, _ = local_chain
    out = Path(recipe.output_dir)
    assert all(ckpt.is_finished(recipe, s) for s in ("base", "sft", "dpo"))
    with pytest.raises(UsageError, match=r"stage 'sft', which is already finished.*overwrite=true"):
        ckpt.guard_overwrite(recipe, "sft", False)
    with pytest.raises(UsageError, match="already finished"):
        run_stage(recipe, "dpo")
    reports = {s: out / s / "measure" / "jsonl" / "report.json" for s in ("base", "sft", "dpo")}
    stamps = {s: p.stat().st_mtime_ns for s, p in reports.items()}
    capsys.readouterr()
    run_chain(recipe, compare=False)
    assert capsys.readouterr().out.count("finished, reusing") == 3
    assert stamps == {s: p.stat().st_mtime_ns for s, p in reports.items()}
    run_stage(recipe, "dpo", overwrite=True)  # clears the stage dir, registers and measures again
    assert reports["dpo"].stat().st_mtime_ns != stamps["dpo"] and ckpt.is_finished(recipe, "dpo")
    assert reports["sft"].stat().st_mtime_ns == stamps["sft"]


def test_measure_only_stage_needs_its_parent(tiny_model_dir, tmp_path):
    from train.stages import run_stage
    recipe = load_recipe(REPO / "recipes/zephyr.yaml", {
        "model.path": str(tiny_model_dir), "stages.sft.model": str(tiny_model_dir),
        "stages.dpo.model": str(tiny_model_dir), "output_dir": str(tmp_path / "out"), "measure": None})
    with pytest.raises(UsageError, match=r"starts from 'base', which is not finished"):
        run_stage(recipe, "sft", measure=False)
    assert not (tmp_path / "out" / "sft" / "stage.json").exists()
