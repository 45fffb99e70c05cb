"""Public stage chains (recipes/zephyr.yaml, tulu3.yaml, olmo2.yaml; the laptop-sized pythia-hh.yaml and
olmo2-1b.yaml): measure-only stages by hub id.

The shipped recipes are validated as written; the chain itself runs on the Zephyr recipe with local
copies of the session's tiny model standing in for the three hub ids (same code path: a hub id and a
local dir both go through model_source -> from_pretrained), with a tiny measure section, and on the Pythia
HH recipe with tiny GPT-NeoX stand-ins shipped as Pythia's are (a float16 base; .bin-only SFT and DPO).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from measure.common.errors import UsageError
from measure.data.benchmarks import BenchmarkSpec, load_benchmark
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


LAPTOP = {
    "pythia-hh": (["EleutherAI/pythia-160m", "lomahony/eleuther-pythia160m-hh-sft", "lomahony/eleuther-pythia160m-hh-dpo",
                   "usvsnsp/pythia-160m-ppo"], ["base", "base", "sft", "sft"], ["hh"] * 4, ["hh_rlhf", "truthfulqa"]),
    "olmo2-1b": (["allenai/OLMo-2-0425-1B", "allenai/OLMo-2-0425-1B-SFT", "allenai/OLMo-2-0425-1B-DPO",
                  "allenai/OLMo-2-0425-1B-Instruct"], ["base", "base", "sft", "dpo"], ["qa", "chat", "chat", "chat"],
                 ["truthfulqa", "nq_open"]),
}
BASIS_MS, BASIS_MACS = 5.6, 134.5   # SmolLM2-135M-Instruct: ms per answer token (docs/speed.md), MACs per token


@pytest.mark.parametrize("name", sorted(LAPTOP))
def test_laptop_recipe_is_a_measure_only_chain_with_its_cost(name, monkeypatch):
    """The laptop-sized chains validate offline as written: hub ids in lineage order, measure-only, each
    stage's parent and prompt format, seeded benchmark subsets at the paper's protocol; the header's cost
    estimate is arithmetic on its stated basis (MACs per token = non-embedding + hidden x vocabulary, time
    per token proportional to them), checked here."""
    models, parents, formats, benchmarks = LAPTOP[name]
    monkeypatch.chdir(REPO)
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")
    assert [recipe.model.path, *(s.model for s in recipe.stages.values())] == models
    assert all(s.trainer == "measure" for s in recipe.stages.values()) and recipe.model.pretrain is None
    assert [None, *(s.parent for s in recipe.stages.values())] == [None, *parents[1:]]
    assert [recipe.prompt_format_of(s) for s in recipe.stage_names] == formats
    m = recipe.to_dict()["measure"]
    assert [b["name"] for b in m["benchmarks"]] == benchmarks and all(b["limit"] for b in m["benchmarks"])
    assert (m["n_samples"], m["temperature"], m["max_new_tokens"]) == (10, 1.0, 40)
    header = [line for line in (REPO / "recipes" / f"{name}.yaml").read_text().splitlines() if line.startswith("#")]
    assert header[1].strip() == f"#   python -m train.chain recipe=recipes/{name}.yaml"
    text = "\n".join(header)
    assert "Expected wall time on a laptop CPU, ESTIMATED" in text and f"{BASIS_MS} ms per answer token" in text
    sums = re.findall(r"([\d.]+)M \+ (\d+) x (\d+) = ([\d.]+)M", text)
    assert len(sums) >= 3 and f"{BASIS_MACS}M" in text
    for nonembedding, hidden, vocab, total in sums:
        assert float(nonembedding) + int(hidden) * int(vocab) / 1e6 == pytest.approx(float(total), abs=0.5)
    ms = float(re.search(r"so ([\d.]+) ms per token", text).group(1))
    own = float(sums[1][3])   # the first line after the basis is this chain's model
    assert ms == pytest.approx(BASIS_MS * own / BASIS_MACS, rel=0.03)


def test_stage_prompt_format_is_validated(tmp_path):
    with pytest.raises(UsageError, match=r"stages\.sft\.prompt_format: unknown 'chatml'.*chat, hh, qa"):
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


def test_pythia_hh_chain_on_gpt_neox_stand_ins(tiny_neox_model_dir, shared_data, tmp_path):
    """recipes/pythia-hh.yaml end to end, tiny GPT-NeoX stand-ins shipped as the hub's checkpoints are: the base
    in float16 safetensors (EleutherAI/pythia-160m), SFT and DPO as pytorch_model.bin only (lomahony/*), PPO in
    safetensors. Every stage is prompted in hh and loaded in float32; stage.json and every report record which
    weights file was loaded and how; the HH requests are unlabelled; the comparison covers the four stages."""
    import torch
    from transformers import AutoModelForCausalLM
    from measure.sampling.model_source import WEIGHTS_ONLY
    from train.chain import run_chain
    dirs = {stage: tmp_path / stage for stage in ("base", "sft", "dpo", "ppo")}
    shutil.copytree(tiny_neox_model_dir, dirs["base"])
    AutoModelForCausalLM.from_pretrained(tiny_neox_model_dir, dtype=torch.float16).save_pretrained(dirs["base"])
    weights = AutoModelForCausalLM.from_pretrained(tiny_neox_model_dir).state_dict()
    for stage in ("sft", "dpo"):
        shutil.copytree(tiny_neox_model_dir, dirs[stage], ignore=shutil.ignore_patterns("*.safetensors"))
        torch.save(weights, dirs[stage] / "pytorch_model.bin")
    shutil.copytree(tiny_neox_model_dir, dirs["ppo"])
    benchmarks = [{"name": "hh_rlhf", "path": str(shared_data / "hh-rlhf"), "limit": 4}]
    recipe = load_recipe(REPO / "recipes/pythia-hh.yaml", {
        "model.path": str(dirs["base"]), **{f"stages.{s}.model": str(dirs[s]) for s in ("sft", "dpo", "ppo")},
        "output_dir": str(tmp_path / "out"), "measure": {**TINY_MEASURE, "benchmarks": benchmarks}})
    run_chain(recipe)
    out = Path(recipe.output_dir)
    pickle = {"file": "pytorch_model.bin", "format": "pickle", "loaded_with": WEIGHTS_ONLY}
    safe = {"file": "model.safetensors", "format": "safetensors"}
    expected = {"base": safe, "sft": pickle, "dpo": pickle, "ppo": safe}
    for stage, record in expected.items():
        assert json.loads((out / stage / "stage.json").read_text())["model_files"]["weights"] == record
        report = json.loads((out / stage / "measure" / "hh_rlhf" / "report.json").read_text())
        s = report["settings"]
        assert (s["prompt_format"], s["model_dtype"], s["model_files"]["weights"]) == ("hh", "float32", record)
        assert report["n_questions"] == 4
    rows = [json.loads(line) for line in (out / "sft" / "measure" / "hh_rlhf" / "questions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.id for q in load_benchmark(BenchmarkSpec(**benchmarks[0]))]
    assert all(r["judgement"] is None and r["label"] is None for r in rows)   # HH requests: no gold answers
    assert json.loads((out / "compare" / "compare.json").read_text())["stages"] == ["base", "sft", "dpo", "ppo"]
