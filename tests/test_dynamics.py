"""Homogenization during training (issue 21): measure.live's HomogenizationCallback, the recipe block
`measure.during_training`, `python -m train.dynamics` over saved checkpoints, the chain's dynamics.png, and
the README's example, on the tiny recipe. The central claim -- training with the callback is bitwise the
training without it -- is checked on two full tiny chains whose LoRA dropout and DPO dropout draw from the
random generators the sampler reseeds, and shown able to fail when the generators are not restored."""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from measure import ProbeRecord, read_probe_records
from measure.common.errors import UsageError
from measure.records.dynamics import append_probe_record, keep_through
from measure.records.records import QuestionRecord
from measure.scoring.probe import probe_measures
from train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
# LoRA dropout (SFT) and DPO's dropout left on: training draws from the generators the sampler reseeds
COMMON = {"lora.dropout": 0.1, "stages.dpo.args.disable_dropout": False, "stages.dpo.keep_checkpoints": True,
          "stages.dpo.args.save_steps": 1}
PROBE = {"measure.during_training": {"every": 1, "limit": 4}}
TIMING = ("train_runtime", "train_samples_per_second", "train_steps_per_second")


# ---------------------------------------------------------------- pure parts

def _record(i: int, a: list[int], b: list[int], label, entropy: float) -> QuestionRecord:
    return QuestionRecord(id=f"q{i}", n_clusters={"a": len(set(a)), "b": len(set(b))}, clusters={"a": a, "b": b},
                          signals={"greedy_entropy_mean": entropy, "n_clusters@a": float(len(set(a))),
                                   "semantic_entropy@b": float(i)},
                          label=label, judgement=None if label is None else ("correct" if label else "incorrect"))


def test_probe_measures_against_independent_computations():
    from statsmodels.stats.proportion import proportion_confint
    rows = [([0, 0, 0, 0], [0, 0, 1, 1], True, 0.5), ([0, 1, 2, 3], [0, 0, 0, 0], False, 1.5),
            ([0, 0, 1, 0], [0, 1, 0, 1], None, 2.0), ([0, 0, 0, 0], [0, 0, 0, 0], True, float("nan"))]
    records = [_record(i, *row) for i, row in enumerate(rows)]
    records[2] = dataclasses.replace(records[2], judgement="ambiguous")   # unlabelled because the judge could not say
    measures, intervals = probe_measures(records, ["a", "b"])
    # float64 sums of <= 4 terms in another order differ by <= 4 u sum|x| (u = 2**-53): rel 1e-12 is ample
    close = lambda v: pytest.approx(v, rel=1e-12, abs=1e-15)  # noqa: E731
    for label, col in (("a", 0), ("b", 1)):
        single = sum(len(set(r[col])) == 1 for r in rows)
        assert measures[f"scr/{label}"] == close(single / 4)
        assert intervals[f"scr/{label}"] == [close(v) for v in proportion_confint(single, 4, alpha=0.05, method="beta")]
        assert measures[f"mean_clusters/{label}"] == close(np.mean([len(set(r[col])) for r in rows]))
        pairs = [np.mean([x == y for x, y in itertools.combinations(r[col], 2)]) for r in rows]
        assert measures[f"pairwise_agreement/{label}"] == close(np.mean(pairs))
    assert measures["accuracy"] == close(2 / 3) and intervals["accuracy"] == [
        close(v) for v in proportion_confint(2, 3, alpha=0.05, method="beta")]
    assert measures["greedy_entropy_mean"] == close((0.5 + 1.5 + 2.0) / 3)   # the NaN question has no value
    assert measures["semantic_entropy/b"] == close(1.5) and "n_clusters/a" not in measures
    assert measures["n_labelled"] == 3 and measures["n_ambiguous"] == 1   # what the accuracy of 2 / 3 stands on
    assert not any(k.startswith(("n_single_cluster", "auroc", "n_correct")) for k in measures)   # other counts, AUROC: out


def test_dynamics_file_appends_drops_a_torn_tail_and_keeps_through_a_step(tmp_path):
    path = tmp_path / "dynamics.jsonl"
    for step in (0, 2, 4):
        append_probe_record(path, ProbeRecord(step=step, epoch=step / 4, measures={"scr/exact": step / 10}))
    with open(path, "a") as f:
        f.write('{"step": 6, "meas')                     # a kill mid-append
    assert [r.step for r in read_probe_records(path)] == [0, 2, 4]
    append_probe_record(path, ProbeRecord(step=6, epoch=1.5, measures={}))   # the torn tail is cut first
    assert [r.step for r in read_probe_records(path)] == [0, 2, 4, 6]
    assert [r.step for r in keep_through(path, 3)] == [0, 2] and [r.step for r in read_probe_records(path)] == [0, 2]
    path.write_text('{"step": 0, "measures": {}}\nnot json\n{"step": 1, "measures": {}}\n')
    with pytest.raises(UsageError, match=r"dynamics.jsonl:2: not a dynamics record"):
        read_probe_records(path)


def test_untouched_training_state_restores_generators_and_modes():
    import random
    from measure.sampling.preserve import untouched_training_state
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    model.train()
    model[0].eval()                                          # a mixed state must come back as it was
    draws = lambda: (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: E731
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    expected = draws()
    random.setstate(state[0]), np.random.set_state(state[1]), torch.set_rng_state(state[2])
    with untouched_training_state(model):
        assert not model.training and not torch.is_grad_enabled()
        torch.manual_seed(123), random.seed(1), np.random.seed(2)   # what the sampler does
        draws()
    assert draws() == expected
    assert [m.training for m in model.modules()] == [True, False, True] and torch.is_grad_enabled()


def test_recipe_block_is_validated_like_every_key():
    tiny = REPO / "recipes" / "tiny.yaml"
    recipe = load_recipe(tiny, {"measure.during_training": {"evaluations": 8, "limit": 5, "stages": ["dpo"]}})
    assert recipe.during_training.evaluations == 8 and recipe.during_training.every is None
    assert recipe.measure.n_samples == 4 and recipe.during_training.at_start is True   # the measure section as before
    assert recipe.during_training.stop_when is None
    for block, message in (({"every": 2, "evaluations": 3}, "exactly one of 'every'"),
                           ({"limit": 3}, "exactly one of 'every'"),
                           ({"every": 0}, r"during_training.every: 0 is out of range"),
                           ({"every": 1, "stages": ["sweeps"]}, r"'sweeps' is not a stage this recipe trains"),
                           ({"every": 1, "benchmark": {"name": "jsonl", "lim": 3}}, r"during_training.benchmark: unknown key 'lim'"),
                           ({"every": 1, "n_sample": 3}, r"unknown key 'n_sample' \(did you mean 'n_samples'\?\)"),
                           ({"every": 1, "stop_when": {"scr/exact": "> 0.5"}},
                            r"during_training\.stop_when\.scr/exact: expected a rule '>= <number>'")):
        with pytest.raises(UsageError, match=message):
            load_recipe(tiny, {"measure.during_training": block})
    with pytest.raises(UsageError, match="lists no benchmarks"):
        load_recipe(tiny, {"measure.during_training": {"every": 1}, "measure.benchmarks": []})


def test_callback_arguments_and_the_processes_that_wait(tmp_path):
    from measure import HomogenizationCallback
    waits = []
    trainer = SimpleNamespace(args=SimpleNamespace(output_dir=str(tmp_path)), processing_class=None,
                              accelerator=SimpleNamespace(wait_for_everyone=lambda: waits.append(1)))
    probe = {"name": "jsonl", "path": str(REPO / "tests/data/eval.jsonl"), "limit": 3}
    with pytest.raises(UsageError, match="exactly one of every"):
        HomogenizationCallback(trainer, probe, every=2, evaluations=3)
    with pytest.raises(UsageError, match="every must be an integer >= 1"):
        HomogenizationCallback(trainer, probe, every=0)
    with pytest.raises(UsageError, match="FSDP"):
        HomogenizationCallback(SimpleNamespace(**vars(trainer), is_fsdp_enabled=True), probe, every=1)
    callback = HomogenizationCallback(trainer, probe, evaluations=4)
    assert len(callback.questions) == 3 and callback.judge == "short_qa"
    assert callback.interval(SimpleNamespace(max_steps=10)) == 3   # ceil(10 / 4)
    # a process other than the main one measures nothing, writes nothing, and meets the others at the barrier
    other = SimpleNamespace(global_step=3, max_steps=10, epoch=1.0, is_world_process_zero=False, log_history=[])
    callback.on_train_begin(None, SimpleNamespace(**{**vars(other), "global_step": 0}), SimpleNamespace())
    callback.on_step_end(None, other, SimpleNamespace(should_log=True))
    assert waits == [1, 1] and not (tmp_path / "dynamics.jsonl").exists()


# ---------------------------------------------------------------- the tiny chain, with and without the callback

def _chain(out: Path, overrides: dict):
    from train.chain import run_chain
    recipe = load_recipe(REPO / "recipes/tiny.yaml", {"output_dir": str(out), **COMMON, **overrides})
    measure = bool(overrides)
    run_chain(recipe, measure=measure, compare=measure, effect=False)
    return recipe


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    root = tmp_path_factory.mktemp("dynamics")
    _chain(root / "plain", {})
    probed = _chain(root / "probed", PROBE)
    return root / "plain", root / "probed", probed


def _logs(stage_dir: Path) -> list[dict]:
    log = json.loads((stage_dir / "stage.json").read_text())["train_metrics"]["log_history"]
    return [{k: v for k, v in e.items() if k not in TIMING} for e in log]


@pytest.mark.slow
def test_training_is_bitwise_unaffected_by_the_callback(chains):
    plain, probed, _ = chains
    for stage in ("base", "sft", "dpo"):
        assert (probed / stage / "dynamics.jsonl").exists()   # the callback really ran in every training stage
        assert (plain / stage / "model.safetensors").read_bytes() == (probed / stage / "model.safetensors").read_bytes()
        assert _logs(plain / stage) == _logs(probed / stage), stage
    for stage in ("sft", "dpo"):
        adapter = Path(stage) / "adapter" / "adapter_model.safetensors"
        assert (plain / adapter).read_bytes() == (probed / adapter).read_bytes()
    assert not (plain / "sft" / "dynamics.jsonl").exists()


@pytest.mark.slow
def test_measure_false_skips_the_probe_too(chains, tmp_path):
    from train.stages import run_stage
    plain, probed, _ = chains
    out = tmp_path / "tiny"
    for stage in ("base", "sft"):
        shutil.copytree(plain / stage, out / stage)
    run_stage(load_recipe(REPO / "recipes/tiny.yaml", {"output_dir": str(out), **COMMON, **PROBE}), "dpo", measure=False)
    assert not (out / "dpo" / "dynamics.jsonl").exists() and not (out / "dpo" / "measure").exists()
    assert (out / "dpo" / "model.safetensors").read_bytes() == (probed / "dpo" / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_the_comparison_fails_when_the_generators_are_not_restored(chains, tmp_path, monkeypatch):
    from measure.sampling import preserve
    from train.stages import run_stage
    plain, _, _ = chains
    monkeypatch.setattr(preserve, "preserved_random_state", contextlib.nullcontext)
    out = tmp_path / "broken"
    shutil.copytree(plain / "base", out / "base")
    run_stage(load_recipe(REPO / "recipes/tiny.yaml", {"output_dir": str(out), **COMMON, **PROBE}), "sft")
    assert (plain / "sft" / "model.safetensors").read_bytes() != (out / "sft" / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_records_carry_the_step_log_and_the_measures(chains):
    _, probed, recipe = chains
    for stage, steps in (("base", 4), ("sft", 3), ("dpo", 3)):
        records = read_probe_records(probed / stage / "dynamics.jsonl")
        assert [r.step for r in records] == list(range(steps + 1))       # before the first step, then every step
        assert records[0].train == {} and all(r.n_questions == 4 and r.source == "training" for r in records)
        log = {e["step"]: e for e in json.loads((probed / stage / "stage.json").read_text())["train_metrics"]["log_history"]
               if "loss" in e}
        for r in records[1:]:   # logging_steps 1: each record holds exactly the Trainer's log of its step
            assert r.train == {k: v for k, v in log[r.step].items() if k != "step"} and r.epoch == log[r.step]["epoch"]
        for key in ("scr/exact", "mean_clusters/jaccard", "pairwise_agreement/numeric", "greedy_entropy_mean", "accuracy"):
            assert all(key in r.measures for r in records), key
        assert set(records[-1].intervals) == {"scr/exact", "scr/numeric", "scr/jaccard", "accuracy"}
    assert all("rewards/margins" in r.train for r in read_probe_records(probed / "dpo" / "dynamics.jsonl")[1:])


@pytest.mark.slow
def test_chain_picture_and_its_compare_section(chains):
    from train.dynamics_plot import MARKER, chain_spans, write_chain_picture
    _, probed, recipe = chains
    assert (probed / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spans = chain_spans(recipe)
    assert [(s.stage, s.start, s.steps) for s in spans] == [("base", 0, 4), ("sft", 4, 3), ("dpo", 7, 3)]
    assert [s for s, _ in spans[2].margins] == [1, 2, 3] and spans[1].end.scr["exact"] is not None
    write_chain_picture(recipe)   # a second run replaces its section, never adds one
    page = (probed / "compare" / "compare.html").read_text()
    assert page.count(MARKER[0]) == 1 and "Homogenization during training" in page and page.endswith("</html>\n")
    assert json.loads((probed / "chain_timings.json").read_text())["dynamics"] > 0
    # a stage its stop_when rule ended: a red dashed line at that global step on every panel, and in the legend
    from train.dynamics_plot import draw
    stopped = [spans[0], dataclasses.replace(spans[1], records=[
        *spans[1].records[:2], dataclasses.replace(spans[1].records[2], stopped="scr/exact 0.5 >= 0.5")])]
    fig = draw(stopped)
    red = [[line for line in ax.get_lines() if line.get_color() == "red"] for ax in fig.axes if ax.get_ylabel() != "reward margin"]
    assert red and all(len(lines) == 1 and lines[0].get_xdata()[0] == 4 + 2 for lines in red)
    assert "stopped by a stop_when rule" in [t.get_text() for t in fig.legends[0].get_texts()]


@pytest.mark.slow
def test_saved_checkpoints_are_measured_like_the_live_model(chains, tmp_path, capsys):
    from train.dynamics import main
    _, probed, _ = chains
    args = ["recipe=recipes/tiny.yaml", f"output_dir={probed}", "stage=dpo", "measure.during_training={every: 1, limit: 4}"]
    main([*args, f"out={tmp_path / 'after.jsonl'}"])
    after = {r.step: r for r in read_probe_records(tmp_path / "after.jsonl")}
    live = {r.step: r for r in read_probe_records(probed / "dpo" / "dynamics.jsonl")}
    assert sorted(after) == [2, 3]   # save_total_limit 2 keeps the last two checkpoints
    for step, record in after.items():   # the same weights, sampler and seeds: the same numbers
        assert record.measures == live[step].measures and record.train == live[step].train
        assert record.source == f"checkpoint-{step}" and record.epoch == live[step].epoch
    before = (probed / "dpo" / "dynamics.jsonl").read_bytes()
    main(args)   # every checkpoint step is already in the stage's file: nothing measured, nothing changed
    assert "already in" in capsys.readouterr().out and (probed / "dpo" / "dynamics.jsonl").read_bytes() == before
    with pytest.raises(SystemExit) as exc:
        main([*args[:-2], "stage=sft", "measure.during_training={every: 1, limit: 4}"])
    assert exc.value.code == 2 and "no complete checkpoint-*" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args[:-1])
    assert "measures nothing during training" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_continues_the_file_without_duplicate_or_lost_steps(chains, tmp_path, monkeypatch):
    from transformers import TrainerCallback
    from train import stages, trainers
    plain, _, _ = chains
    out = tmp_path / "tiny"
    shutil.copytree(plain / "base", out / "base")
    overrides = {"output_dir": str(out), **COMMON, **PROBE, "stages.sft.args.max_steps": 4, "stages.sft.args.save_steps": 1}

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated kill")

    real = trainers.TRAINER_SPECS["sft"]

    class Spec(trainers.TrainerSpec):   # SFT's trainer with Crash added (as tests/test_train.py does)
        def trainer_class(self):
            base = real.trainer_class()

            def init(trainer, *a, **k):
                base.__init__(trainer, *a, **k)
                trainer.add_callback(Crash())
            return type("Crashing", (base,), {"__init__": init})

    monkeypatch.setitem(trainers.TRAINER_SPECS, "sft", Spec("trl", "SFTConfig", "SFTTrainer", False))
    with pytest.raises(KeyboardInterrupt):
        stages.run_stage(load_recipe(REPO / "recipes/tiny.yaml", overrides), "sft")
    first = read_probe_records(out / "sft" / "dynamics.jsonl")
    assert [r.step for r in first] == [0, 1, 2]   # step 2's record is written before its checkpoint
    shutil.rmtree(out / "sft" / "trainer" / "checkpoint-2")   # killed before checkpoint 2 was complete
    monkeypatch.setitem(trainers.TRAINER_SPECS, "sft", real)
    manifest = stages.run_stage(load_recipe(REPO / "recipes/tiny.yaml", overrides), "sft")
    assert manifest.train_metrics["resumed_from"].endswith("checkpoint-1")
    records = read_probe_records(out / "sft" / "dynamics.jsonl")
    assert [r.step for r in records] == [0, 1, 2, 3, 4]   # step 2 measured again, once; none lost
    assert records[:2] == first[:2] and [r.seconds for r in records[:2]] == [r.seconds for r in first[:2]]


@pytest.mark.slow
def test_two_processes_measure_on_the_main_one_and_stop_together(chains, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 train/sft.py` on CPU (2 gloo ranks, DDP) with the probe
    and a stop rule every measurement meets: the main process measures the whole probe (not sharded) while the
    other waits, rank 1 writes nothing (no duplicate steps), and both stop after the first step -- were the
    decision not sent to rank 1, it would enter step 2's gradient all-reduce alone and hang (timeout). The
    records carry the two-rank run's own step log: 8 rows in global batches of 2 x 4 make one step an epoch,
    where one process takes two."""
    import os
    import subprocess
    import sys
    plain, probed, _ = chains
    out = tmp_path / "tiny"
    shutil.copytree(plain / "base", out / "base")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    probe = {"every": 1, "limit": 4, "stop_when": {"scr/exact": ">= 0"}}
    overrides = [f"{k}={json.dumps(v)}" for k, v in
                 {"output_dir": str(out), **COMMON, "measure.during_training": probe}.items()]
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", "29519", str(REPO / "train" / "sft.py"), "recipe=recipes/tiny.yaml",
                           *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "step 1: scr/exact" in proc.stderr and "training stops" in proc.stderr
    records = read_probe_records(out / "sft" / "dynamics.jsonl")
    assert [r.step for r in records] == [0, 1] and {r.n_questions for r in records} == {4}
    assert records[0].stopped is None and records[1].stopped.startswith("scr/exact ")   # not on the start one
    assert records[1].epoch == 1.0 and read_probe_records(probed / "sft" / "dynamics.jsonl")[1].epoch == 0.5
    assert "loss" in records[1].train
    metrics = json.loads((out / "sft" / "stage.json").read_text())["train_metrics"]
    assert metrics["global_step"] == 1   # max_steps 3
    assert not any(k.startswith("homogenization/") for e in metrics["log_history"] for k in e)


def test_stop_rules_parse_and_meet():
    from measure.scoring.probe import met_rule, parse_stop_rules
    rules = parse_stop_rules({"scr/exact": ">= 0.5", "mean_clusters/exact": "<=2", "accuracy": " >= -1e-3 "})
    assert rules == {"scr/exact": (">=", 0.5), "mean_clusters/exact": ("<=", 2.0), "accuracy": (">=", -0.001)}
    assert parse_stop_rules(None) == {}
    measures = {"scr/exact": 0.25, "mean_clusters/exact": 2.0, "accuracy": None}
    assert met_rule(measures, {"scr/exact": (">=", 0.5)}) is None
    assert met_rule(measures, {"scr/exact": (">=", 0.25)}) == "scr/exact 0.25 >= 0.25"   # the boundary meets
    assert met_rule(measures, rules) == "mean_clusters/exact 2 <= 2"
    assert met_rule(measures, {"accuracy": (">=", -1.0)}) is None   # no value meets nothing
    with pytest.raises(UsageError, match=r"scr/jaccard is not a measure of this probe; its measures: accuracy, "):
        met_rule(measures, {"scr/jaccard": (">=", 0.5)})
    for bad in ("> 0.5", "0.5", ">= half", 0.5):
        with pytest.raises(UsageError, match=r"stop_when\.scr/exact: expected a rule '>= <number>' or '<= <number>'"):
            parse_stop_rules({"scr/exact": bad})
    with pytest.raises(UsageError, match="expected a mapping"):
        parse_stop_rules([">= 0.5"])


# ---------------------------------------------------------------- the README's example, as written

def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Homogenization during training", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_example_runs_as_written(tiny_model_dir, tmp_path, monkeypatch):
    import datasets
    import transformers.trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig

    seen: list[dict] = []

    class Reporter(TrainerCallback):   # where report_to's integrations (TensorBoard, W&B) receive the logs
        def on_log(self, args, state, control, logs=None, **kw):
            seen.append(dict(logs))

    monkeypatch.setattr(transformers.trainer, "DEFAULT_CALLBACKS", [*transformers.trainer.DEFAULT_CALLBACKS, Reporter])
    shutil.copy(REPO / "tests" / "data" / "eval.jsonl", tmp_path / "eval.jsonl")
    monkeypatch.chdir(tmp_path)
    namespace = {"model": AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                 "tokenizer": AutoTokenizer.from_pretrained(tiny_model_dir),
                 "pairs": datasets.load_dataset("json", data_files=str(REPO / "tests/data/dpo.jsonl"), split="train"),
                 "config": DPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4,
                                     max_length=64, logging_steps=1, save_strategy="no", report_to="none",
                                     use_cpu=True)}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    records = read_probe_records(tmp_path / "out" / "dynamics.jsonl")
    assert [r.step for r in records] == [0, 2] and records[0].n_questions == 12   # start and end; 12 < limit 32
    assert {"scr/exact", "scr/embedding", "pairwise_agreement/embedding"} <= set(records[-1].measures)
    probe_logs = [e for e in seen if any(k.startswith("homogenization/") for k in e)]
    assert len(probe_logs) == 2 and probe_logs[-1]["homogenization/scr/exact"] == records[-1].measures["scr/exact"]
    history = namespace["trainer"].state.log_history   # never through Trainer.log: the log history is untouched
    assert not any(k.startswith("homogenization/") for e in history for k in e)


@pytest.mark.slow
def test_speed_harness_reports_the_callback_cost(chains, tiny_model_dir, tmp_path):
    from harness.dynamics import every_for
    from harness.run import main
    _, probed, _ = chains
    out = tmp_path / "bench.json"
    report = main([f"model={tiny_model_dir}", "questions=tests/data/eval.jsonl", "only=[dynamics]", "n_samples=2",
                   "max_new_tokens=4", "dynamics_steps=2", "dynamics_every=1", "dynamics_limit=3",
                   f"dynamics_chains=[{probed},{tmp_path / 'nowhere'}]", f"out={out}"])["dynamics"]
    live = report["live"]
    assert live["measurements"] == 3 and live["weights_bitwise_equal"] is True and 0 < live["callback_share"] < 1
    assert live["callback_seconds"] == pytest.approx(live["seconds_per_measurement"] * 3)
    chain, missing = report["chains"]
    assert set(chain["stages"]) == {"base", "sft", "dpo"} and chain["stages"]["dpo"]["measurements"] == 4
    assert missing["found"] is False and "live callback_share" in report["targets"]
    # share E / (E + k T) at the returned k is <= 15% and above it at k - 1
    assert every_for(2.0, 0.1) == 114 and 2.0 / (2.0 + 114 * 0.1) <= 0.15 < 2.0 / (2.0 + 113 * 0.1)
    assert json.loads(out.read_text())["dynamics"]["live"]["measurements"] == 3

