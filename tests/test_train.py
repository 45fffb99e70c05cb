"""End-to-end training through the real entry points: `accelerate launch train/*.py`, `python -m train.chain`.

The tiny recipe (recipes/tiny.yaml) builds a 2-layer llama with a locally trained tokenizer, pretrains
it, then runs LoRA SFT and LoRA DPO, each for a few steps on CPU.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tree_snapshot
from train import checkpoint as ckpt
from train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
pytestmark = pytest.mark.slow


def launch(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*ACCELERATE, str(REPO / "train" / script), *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


# session-scoped: built once per test run (`make test` keeps each file on one worker); the tests only
# add to it, in order
@pytest.fixture(scope="session")
def chain_dir(tmp_path_factory) -> Path:
    """pretrain -> sft -> dpo, each through `accelerate launch` as a user runs it."""
    out = tmp_path_factory.mktemp("chain") / "tiny"
    for script in ("pretrain.py", "sft.py", "dpo.py"):
        launch(script, "recipe=recipes/tiny.yaml", f"output_dir={out}")
    return out


def test_chain_produces_loadable_checkpoints(chain_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    for stage in ("base", "sft", "dpo"):
        d = chain_dir / stage
        model = AutoModelForCausalLM.from_pretrained(d)  # plain transformers, no PEFT needed
        tok = AutoTokenizer.from_pretrained(d)
        assert model.config.num_hidden_layers == 2 and tok.chat_template
        assert not (d / "trainer").exists()  # resume state is removed once the stage is finished
    for stage, parent in (("sft", "base"), ("dpo", "sft")):
        base = AutoModelForCausalLM.from_pretrained(chain_dir / parent)
        peft_model = PeftModel.from_pretrained(base, chain_dir / stage / "adapter")
        merged = peft_model.merge_and_unload().state_dict()
        saved = weights(chain_dir / stage)
        for name, tensor in saved.items():  # parent + adapter == the saved merged model
            # W + (B @ A) * scale recomputed: 4-term sums round to within ~8u |BA| + u |W| < 1e-6 for |W| < 1
            assert torch.allclose(merged[name], tensor, atol=1e-6), name


def test_training_changed_trainable_and_kept_frozen_parameters(chain_dir):
    from safetensors.torch import load_file as load
    for stage, parent in (("sft", "base"), ("dpo", "sft")):
        before, after = weights(chain_dir / parent), weights(chain_dir / stage)
        adapter = load(chain_dir / stage / "adapter" / "adapter_model.safetensors")
        lora_b = [v for k, v in adapter.items() if "lora_B" in k]
        assert lora_b and any(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero and must have trained"
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        # only the LoRA target modules (q_proj, v_proj) moved; every other base weight is untouched
        assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed), changed
    init_vs_base = json.loads((chain_dir / "base" / "stage.json").read_text())["train_metrics"]
    assert init_vs_base["parameters"]["trainable"] == init_vs_base["parameters"]["total"]  # full pretraining


def test_manifests_complete(chain_dir):
    for index, stage in enumerate(("base", "sft", "dpo")):
        m = json.loads((chain_dir / stage / "stage.json").read_text())
        for key in ("name", "stage", "chain_index", "parent", "parent_hash", "recipe", "seed", "git_commit",
                    "versions", "wall_time_s"):
            assert key in m, (stage, key)
        assert m["chain_index"] == index and m["seed"] == 0
        assert m["versions"]["trl"] and m["versions"]["torch"]
        if stage != "base":
            assert m["parent"] == ("base" if stage == "sft" else "sft")
            assert m["parent_hash"] == ckpt.manifest_hash(chain_dir / m["parent"])
            assert m["mode"] == "merge" and m["adapter"] and m["lora"]["r"] == 4
            assert m["datasets"][0]["sha256"] and m["datasets"][0]["rows"] == 8
            assert m["train_metrics"]["global_step"] == 3 and m["train_metrics"]["step"] == 3  # max_steps: 3
    assert json.loads((chain_dir / "base" / "stage.json").read_text())["recipe"]["stages"]["dpo"]["args"]["beta"] == 0.1


def test_overwrite_refused(chain_dir):
    stamp = (chain_dir / "dpo" / "stage.json").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, str(REPO / "train" / "dpo.py"), "recipe=recipes/tiny.yaml",
                           f"output_dir={chain_dir}"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "already finished" in proc.stderr and "overwrite=true" in proc.stderr
    # under `accelerate launch` the launcher reports the failure with its own exit code (1), message intact
    proc = subprocess.run([*ACCELERATE, str(REPO / "train" / "dpo.py"), "recipe=recipes/tiny.yaml",
                           f"output_dir={chain_dir}"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "already finished" in proc.stderr
    assert (chain_dir / "dpo" / "stage.json").stat().st_mtime_ns == stamp


def test_dpo_continue_mode_trains_the_parent_adapter(chain_dir, tmp_path):
    out = tmp_path / "tiny"
    shutil.copytree(chain_dir, out)
    launch("dpo.py", "recipe=recipes/tiny.yaml", f"output_dir={out}", "stages.dpo.mode=continue", "overwrite=true")
    m = json.loads((out / "dpo" / "stage.json").read_text())
    assert m["mode"] == "continue"
    assert Path(m["adapter_base"]).resolve() == (chain_dir / "base").resolve()  # the SFT adapter's own base
    from safetensors.torch import load_file as load
    sft_adapter = load(chain_dir / "sft" / "adapter" / "adapter_model.safetensors")
    dpo_adapter = load(out / "dpo" / "adapter" / "adapter_model.safetensors")
    assert sft_adapter.keys() == dpo_adapter.keys()
    assert any(not torch.equal(sft_adapter[k], dpo_adapter[k]) for k in sft_adapter)  # continued, not fresh
    base = weights(chain_dir / "base")
    merged = weights(out / "dpo")
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)


def test_chain_reuses_finished_stages(chain_dir):
    recipe = load_recipe(REPO / "recipes/tiny.yaml", {"output_dir": str(chain_dir)})
    stamps = {s: (chain_dir / s / "stage.json").stat().st_mtime_ns for s in ("base", "sft", "dpo")}
    proc = subprocess.run([sys.executable, "-m", "train.chain", "recipe=recipes/tiny.yaml", f"output_dir={chain_dir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("finished, reusing") == 3
    assert stamps == {s: (chain_dir / s / "stage.json").stat().st_mtime_ns for s in ("base", "sft", "dpo")}
    assert json.loads((chain_dir / "chain.json").read_text())["stages"] == ["base", "sft", "dpo"]
    assert recipe.name == "tiny"
    effect = json.loads((chain_dir / "dpo_effect.json").read_text())   # written after the chain, beside chain.json
    assert list(effect["stages"]) == ["dpo"] and "heldout" not in effect["stages"]["dpo"]  # tiny names no heldout
    assert "[dpo effect] dpo:" in proc.stdout


def test_dpo_effect_reports_margins_weights_and_heldout_logprobs(chain_dir):
    from measure.common.jsonrecords import record_to_json as effect_to_json_part
    from train.dpo_effect import dpo_effect, margin_trajectory, summary, weight_difference
    from train.effect_records import effect_from_json, effect_to_json, read_effect

    def dumped(obj) -> str:
        return json.dumps(obj, indent=2, allow_nan=False) + "\n"
    recipe = load_recipe(REPO / "recipes/tiny.yaml", {"output_dir": str(chain_dir),
                                                      "stages.dpo.heldout": {"path": "tests/data/dpo.jsonl"}})
    report = dpo_effect(recipe)
    assert list(report.stages) == ["dpo"]
    r = report.stages["dpo"]
    margins = r.margins
    log = json.loads((chain_dir / "dpo" / "stage.json").read_text())["train_metrics"]["log_history"]
    assert margins.n_logged == 3 == len([e for e in log if "rewards/margins" in e])
    # step 1 is logged before any update: the fresh adapter (B = 0) is the reference, so the margin is 0
    assert abs(margins.first["rewards/margins"]) < 1e-6 and margins.first["step"] == 1
    assert margins.last["rewards/margins"] != 0 and margins.last["step"] == 3
    assert margins.moved == (margins.late_mean_margin > max(margins.early_mean_margin, 0))
    weights = r.weights
    assert 0 < weights.tensors_changed < weights.tensors and weights.max_abs > 0
    assert all(("q_proj" in t.tensor or "v_proj" in t.tensor) for t in weights.most_changed)
    assert r.acted == margins.moved
    same = weight_difference(chain_dir / "sft", chain_dir / "sft")
    assert same.tensors_changed == 0 and same.max_abs == 0 and same.relative_frobenius == 0
    assert weights.relative_frobenius_changed > weights.relative_frobenius > 0
    heldout = r.heldout
    assert heldout.pairs + heldout.skipped == 8 and heldout.pairs > 0 and heldout.beta == 0.1
    assert heldout.mean_abs_delta_logp > 0 and 0 <= heldout.margin_accuracy <= 1
    assert heldout.mean_margin == pytest.approx(0.1 * (heldout.mean_delta_logp_chosen - heldout.mean_delta_logp_rejected))
    assert "[dpo effect] dpo:" in summary(report) and "held-out (" in summary(report)
    none = margin_trajectory([{"loss": 1.0}])
    assert none.n_logged == 0 and effect_to_json_part(none) == {"n_logged": 0, "note": none.note}
    # one reader, one writer: the chain's dpo_effect.json (no heldout) and this report round-trip byte-identically
    text = (chain_dir / "dpo_effect.json").read_text()
    assert dumped(effect_to_json(read_effect(chain_dir))) == text and read_effect(chain_dir).stages["dpo"].heldout is None
    assert dumped(effect_to_json(effect_from_json(json.loads(dumped(effect_to_json(report)))))) == dumped(effect_to_json(report))
    assert list(effect_to_json(report)["stages"]["dpo"]) == ["stage", "parent", "margins", "weights", "heldout", "acted",
                                                             "inputs"]


def test_chat_stage_without_a_chat_template_is_a_named_error(tmp_path):
    from types import SimpleNamespace
    from measure.common.errors import UsageError
    from train.recipe import resolved_args
    from train.stages import check_chat_template
    recipe = load_recipe(REPO / "recipes/tiny.yaml", {"output_dir": str(tmp_path)})
    bare = SimpleNamespace(chat_template=None)   # a pretrained base tokenizer (google/gemma-3-270m has none)
    with pytest.raises(UsageError, match=r"stage 'sft': prompt_format 'chat' needs a chat template.*"
                                         r"stages.sft.args.chat_template_path"):
        check_chat_template(recipe, "sft", bare, {})
    with pytest.raises(UsageError, match=r"stage 'dpo'.*give an earlier SFT stage a chat template"):
        check_chat_template(recipe, "dpo", bare, {})   # DPOConfig has no chat_template_path
    check_chat_template(recipe, "sft", bare, {"chat_template_path": "recipes/chat_templates/gemma3.jinja"})
    check_chat_template(recipe, "sft", SimpleNamespace(chat_template="{{ x }}"), {})
    qa = load_recipe(REPO / "recipes/tiny.yaml", {"output_dir": str(tmp_path), "stages.sft.prompt_format": "qa"})
    check_chat_template(qa, "sft", bare, {})
    # the template file is found like a dataset path (TRL alone looks only in the current directory)
    args = resolved_args({"chat_template_path": "chat_templates/gemma3.jinja", "max_steps": 1}, REPO / "recipes")
    assert Path(args["chat_template_path"]) == REPO / "recipes" / "chat_templates" / "gemma3.jinja" and args["max_steps"] == 1
    assert resolved_args({"chat_template_path": "org/model"}, REPO)["chat_template_path"] == "org/model"


def test_interrupted_stage_resumes_from_last_checkpoint(chain_dir, tmp_path, monkeypatch):
    """Kill SFT after step 2 (checkpoint saved each step), re-run: it resumes, it does not restart."""
    from transformers import TrainerCallback
    from train import stages, trainers

    out = tmp_path / "tiny"
    shutil.copytree(chain_dir / "base", out / "base")
    overrides = {"output_dir": str(out), "stages.sft.args.max_steps": 4, "stages.sft.args.save_steps": 1}
    recipe = load_recipe(REPO / "recipes/tiny.yaml", overrides)

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated kill")

    class CountSteps(TrainerCallback):
        ran: list[int] = []

        def on_step_end(self, args, state, control, **kw):
            self.ran.append(state.global_step)

    real = trainers.TRAINER_SPECS["sft"].trainer_class

    def spec_with(callback):
        class Spec(trainers.TrainerSpec):
            def trainer_class(self):
                base = real()

                def init(trainer, *a, **k):
                    base.__init__(trainer, *a, **k)
                    trainer.add_callback(callback)
                return type("SFTWithCallback", (base,), {"__init__": init})
        return Spec("trl", "SFTConfig", "SFTTrainer", False)

    monkeypatch.setitem(trainers.TRAINER_SPECS, "sft", spec_with(Crash()))
    with pytest.raises(KeyboardInterrupt):
        stages.run_stage(recipe, "sft", measure=False)
    assert not (out / "sft" / "stage.json").exists()
    assert (out / "sft" / "trainer" / "checkpoint-2").exists()
    # a kill between transformers' writes: the newest checkpoint has no trainer_state.json yet
    (out / "sft" / "trainer" / "checkpoint-2" / "trainer_state.json").unlink()
    monkeypatch.setitem(trainers.TRAINER_SPECS, "sft", spec_with(CountSteps()))
    manifest = stages.run_stage(load_recipe(REPO / "recipes/tiny.yaml", overrides), "sft", measure=False)
    assert manifest.train_metrics["resumed_from"].endswith("checkpoint-1")  # the newest complete one
    assert CountSteps.ran == [2, 3, 4]  # only the steps after it ran
    assert [e["step"] for e in manifest.train_metrics["log_history"] if "loss" in e] == [1, 2, 3, 4]


def test_measure_run_accepts_an_adapter_dir(chain_dir, tmp_path):
    """`measure run model=<stage>/adapter` merges the adapter onto its recorded base: same answers as the merged dir."""
    common = ["benchmark=jsonl", f"benchmark_path={REPO / 'tests/data/eval.jsonl'}", "n_samples=2", "max_new_tokens=5",
              "bootstrap=10", "clusterers=[exact]"]
    outs = {}
    for name, model in (("adapter", chain_dir / "dpo" / "adapter"), ("merged", chain_dir / "dpo")):
        proc = subprocess.run([sys.executable, "-m", "measure", "run", f"model={model}", f"out={tmp_path / name}", *common],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[name] = [json.loads(line) for line in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
    # merging rounds W + BA once more: another computation of one greedy decode, compared within
    # tests/numerics.py's bounds on the rows without a near-tie (the trained weights differ across CPUs)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from measure.sampling.prompts import format_prompt
    from numerics import assert_same_greedy_rows, tie_free_greedy
    model, tok = AutoModelForCausalLM.from_pretrained(chain_dir / "dpo").eval(), AutoTokenizer.from_pretrained(chain_dir / "dpo")
    prompts = [format_prompt(tok, r["question"], "chat") for r in outs["merged"]]
    tie_free = tie_free_greedy(model, tok, prompts, temperature=1.0, top_p=1.0, max_new_tokens=5, stop=(), seed=0)
    assert_same_greedy_rows(outs["adapter"], outs["merged"], tie_free, model.config.vocab_size)


def test_newest_complete_trainer_checkpoint_is_chosen(tmp_path, capsys):
    trainer = tmp_path / "trainer"
    assert ckpt.trainer_checkpoint(tmp_path) is None
    for step, state in ((1, {"global_step": 1}), (2, {"global_step": 2}), (3, None), (4, "torn {")):
        (trainer / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (trainer / f"checkpoint-{step}" / "trainer_state.json").write_text(
                state if isinstance(state, str) else json.dumps(state))
    (trainer / "checkpoint-x").mkdir()
    assert ckpt.trainer_checkpoint(tmp_path) == str(trainer / "checkpoint-2")
    err = capsys.readouterr().err
    assert "checkpoint-4" in err and "checkpoint-3" in err and "skipping the incomplete" in err
    for step in (1, 2):
        (trainer / f"checkpoint-{step}" / "trainer_state.json").unlink()
    assert ckpt.trainer_checkpoint(tmp_path) is None  # none complete: train from the start


def _chain_refused(chain_dir: Path, *args: str, capsys) -> str:
    from train import chain
    before = tree_snapshot(chain_dir)
    with pytest.raises(SystemExit) as exc:
        chain.main(["recipe=recipes/tiny.yaml", f"output_dir={chain_dir}", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert tree_snapshot(chain_dir) == before  # chain.json included: nothing is recorded for a refused run
    return err


def test_changed_recipe_does_not_reuse_a_stale_stage(chain_dir, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    err = _chain_refused(chain_dir, "stages.dpo.args.beta=0.5", capsys=capsys)
    assert "stage 'dpo'" in err and "args.beta: 0.1 -> 0.5" in err
    assert "overwrite=true" in err and "name=" in err
    err = _chain_refused(chain_dir, "lora.r=8", capsys=capsys)  # every LoRA stage; the first one is named
    assert "stage 'sft'" in err and "lora.r: 4 -> 8" in err
    err = _chain_refused(chain_dir, "seed=1", capsys=capsys)
    assert "stage 'base'" in err and "seed: 0 -> 1" in err


def test_retrained_parent_is_not_built_upon_silently(chain_dir, tmp_path, capsys, monkeypatch):
    """sft retrained (a new sft/stage.json) after dpo was trained on it: dpo's parent_hash no longer matches."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "tiny"
    shutil.copytree(chain_dir, out, symlinks=True)
    manifest = json.loads((out / "sft" / "stage.json").read_text())
    (out / "sft" / "stage.json").write_text(json.dumps({**manifest, "wall_time_s": manifest["wall_time_s"] + 1}))
    err = _chain_refused(out, capsys=capsys)
    assert "stage 'dpo'" in err and "parent_hash: 'sft' was retrained" in err
    # the stage script refuses to train on a parent whose own parent changed, before touching anything
    base = json.loads((out / "base" / "stage.json").read_text())
    (out / "base" / "stage.json").write_text(json.dumps({**base, "wall_time_s": base["wall_time_s"] + 1}))
    before = tree_snapshot(out)
    proc = subprocess.run([sys.executable, str(REPO / "train" / "dpo.py"), "recipe=recipes/tiny.yaml", f"output_dir={out}",
                           "overwrite=true"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "stage 'sft'" in proc.stderr and "parent_hash" in proc.stderr, proc.stderr
    assert tree_snapshot(out) == before


def test_stale_measurement_report_is_not_reused(chain_dir, capsys, monkeypatch):
    from train.measure_stage import main as measure_main
    monkeypatch.chdir(REPO)
    before = tree_snapshot(chain_dir)
    with pytest.raises(SystemExit) as exc:
        measure_main(["recipe=recipes/tiny.yaml", f"output_dir={chain_dir}", "stage=sft", "measure.n_samples=3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "sft/measure/jsonl/report.json was measured on other measurement settings" in err
    assert "overwrite=true" in err and tree_snapshot(chain_dir) == before


def test_trl_configs_get_cpu_safe_defaults_without_deprecated_names(tmp_path):
    """Checkpointing is off by default under the name the installed transformers has (no FutureWarning for the
    deprecated alias), and a recipe that sets it under either name keeps its choice."""
    import warnings
    from train.stages import build_config
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
        config = build_config("sft", {}, tmp_path, 0)
        assert config.gradient_checkpointing is False and config.report_to in ([], "none", ["none"])
    assert getattr(config, "activation_checkpointing", False) is False and config.seed == config.data_seed == 0
    for name in ("gradient_checkpointing", "activation_checkpointing"):
        if hasattr(config, name):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)   # the recipe chose the old name itself
                assert getattr(build_config("dpo", {name: True}, tmp_path, 0), "gradient_checkpointing") is True
