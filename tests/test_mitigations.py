"""Mitigation trainers (recipes/mitigations.yaml): DPO loss variants, KTO, ORPO, CPO/SimPO each train a
couple of LoRA steps on the tiny model from one shared SFT parent, are measured, and load in plain
transformers; KTO also runs through its script. Paired -> unpaired conversion for KTO is checked by hand.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from measure.common.errors import UsageError
from train import stages
from train.data import load_training_data, unpair_rows
from train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _recipe_file(tmp: Path) -> Path:
    """recipes/mitigations.yaml with absolute data paths, output in tmp, and a 2-question measurement."""
    raw = yaml.safe_load((REPO / "recipes" / "mitigations.yaml").read_text())
    raw["output_dir"] = str(tmp / "out")
    raw["model"]["build"]["corpus"] = raw["model"]["pretrain"]["dataset"] = str(REPO / "tests/data/corpus.txt")
    for spec in raw["stages"].values():
        spec["dataset"] = str(REPO / "tests/data" / Path(spec["dataset"]).name)
    raw["measure"].update(benchmarks=[{"name": "jsonl", "path": str(REPO / "tests/data/eval.jsonl"), "limit": 2}],
                          n_samples=2, max_new_tokens=4, bootstrap=20)
    path = tmp / "mitigations.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# session-scoped: built once per test run (`make test` keeps each file on one worker); the tests only
# add to it, in order
@pytest.fixture(scope="session")
def chain(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe path, output dir) with base and sft trained once, unmeasured; the tests add the other stages."""
    from train.pretrain import run_base
    path = _recipe_file(tmp_path_factory.mktemp("mitigations"))
    recipe = load_recipe(path)
    run_base(recipe, measure=False)
    stages.run_stage(recipe, "sft", measure=False)
    return path, Path(recipe.output_dir)


def _check_trained(out: Path, stage: str, parent: str = "sft") -> dict:
    """Only the LoRA targets moved, the merged model loads in transformers, parent + adapter == merged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    before, after = load_file(out / parent / "model.safetensors"), load_file(out / stage / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed), changed
    model = AutoModelForCausalLM.from_pretrained(out / stage)
    assert model.config.num_hidden_layers == 2
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out / parent),
                                       out / stage / "adapter").merge_and_unload().state_dict()
    # W + (B @ A) * scale recomputed: a rank-4 product (4-term sums) rounds to within ~8u |BA| + u |W| < 1e-6 here
    assert all(torch.allclose(merged[k], v, atol=1e-6) for k, v in after.items())
    manifest = json.loads((out / stage / "stage.json").read_text())
    losses = [e["loss"] for e in manifest["train_metrics"]["log_history"] if "loss" in e]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    report = json.loads((out / stage / "measure" / "jsonl" / "report.json").read_text())
    assert report["n_questions"] == 2 and set(report["scr"]) == {"exact", "jaccard"}
    return manifest


# (stage, recipe overrides, TRL config fields the stage must have trained with)
CASES = {
    "dpo_nll": ("dpo_nll", {}, {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}),
    "dpo_ipo": ("dpo", {"stages.dpo.args.loss_type": ["ipo"], "stages.dpo.args.beta": 0.5},
                {"loss_type": ["ipo"], "beta": 0.5}),
    "dpo_robust": ("dpo", {"stages.dpo.args.loss_type": ["robust"], "stages.dpo.args.label_smoothing": 0.1},
                   {"loss_type": ["robust"], "label_smoothing": 0.1}),
    "dpo_norm": ("dpo_norm", {}, {"loss_type": ["sigmoid_norm"]}),  # length-normalized DPO, with a reference
    "orpo": ("orpo", {}, {"beta": 0.1}),
    "simpo": ("simpo", {}, {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 0.5}),
    "cpo": ("cpo", {}, {"loss_type": "sigmoid", "cpo_alpha": 1.0}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trainer_trains_measures_and_loads(chain, case):
    path, out = chain
    stage, overrides, expected = CASES[case]
    recipe = load_recipe(path, overrides)
    trainer = recipe.stages[stage].trainer
    config = stages.build_config(trainer, recipe.stages[stage].args, out / "unused", 0)
    assert {k: getattr(config, k) for k in expected} == expected  # TRL received the args 1:1
    stages.run_stage(recipe, stage, measure=True, overwrite=True)  # two cases share the `dpo` stage
    manifest = _check_trained(out, stage)
    assert manifest["trainer"] == trainer and manifest["mode"] == "merge"
    assert manifest["recipe"]["stages"][stage]["args"] == recipe.stages[stage].args


def test_kto_script_trains_from_paired_data(chain):
    """`python train/kto.py recipe=...`: the paired DPO file becomes 16 unpaired rows."""
    path, out = chain
    proc = subprocess.run([sys.executable, str(REPO / "train" / "kto.py"), f"recipe={path}"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = _check_trained(out, "kto")
    data = manifest["datasets"][0]
    assert (data["format"], data["rows"], data["unpaired_rows"]) == ("preference", 8, 16)


def test_unpair_rows_alternates_labels_and_separates_pairs():
    rows = [{"prompt": p, "chosen": p + "+", "rejected": p + "-"} for p in ("a", "b", "c")]
    out = unpair_rows(rows)
    assert [(r["prompt"], r["completion"], r["label"]) for r in out] == [
        ("a", "a+", True), ("b", "b-", False), ("c", "c+", True),
        ("a", "a-", False), ("b", "b+", True), ("c", "c-", False)]


def test_kto_loads_hh_and_unpaired_rows(tmp_path):
    hh = tmp_path / "hh.jsonl"
    hh.write_text(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}) + "\n")
    ds, fps = load_training_data(str(hh), trainer="kto", prompt_format="chat", base_dir=tmp_path)
    assert ds.to_list() == [
        {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "hello"}], "label": True},
        {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "go"}], "label": False}]
    assert fps[0]["format"] == "hh" and fps[0]["unpaired_rows"] == 2
    unpaired = tmp_path / "kto.jsonl"
    unpaired.write_text(json.dumps({"prompt": "Q1", "completion": "A1", "label": False}) + "\n")
    ds, fps = load_training_data(str(unpaired), trainer="kto", prompt_format="qa", base_dir=tmp_path)
    assert ds.to_list() == [{"prompt": "Q: Q1\nA:", "completion": " A1\n", "label": False}]
    assert "unpaired_rows" not in fps[0]
    # DPO keeps the pairs
    ds, _ = load_training_data(str(hh), trainer="dpo", prompt_format="qa", base_dir=tmp_path)
    assert ds.to_list() == [{"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " hello", "rejected": " go"}]


def test_missing_trl_experimental_is_a_named_usage_error(monkeypatch, capsys):
    import trl
    monkeypatch.setitem(sys.modules, "trl.experimental.orpo", None)  # makes `import trl.experimental.orpo` fail
    with pytest.raises(UsageError, match=rf"ORPOConfig is not available in the installed TRL {trl.__version__}"):
        load_recipe(REPO / "recipes" / "mitigations.yaml")
    from train import orpo
    with pytest.raises(SystemExit) as e:
        orpo.main([f"recipe={REPO / 'recipes' / 'mitigations.yaml'}"])
    assert e.value.code == 2 and "trl.experimental.orpo" in capsys.readouterr().err
