"""Bad input refused before anything is written, through the real CLIs: exit 2, an error naming the key or
file:line, and not one file created or changed. Everything here fails before training or sampling starts."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from measure.cli import main as measure_main
from measure.common.io import write_jsonl
from train import chain, sweep

from conftest import tree_snapshot as snapshot

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny.yaml"


def refused(entry, argv: list[str], root: Path, capsys) -> str:
    """Run a CLI main in-process; assert exit 2, nothing under root changed; return stderr."""
    before = snapshot(root)
    with pytest.raises(SystemExit) as exc:
        entry(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert snapshot(root) == before
    return err


def tiny_recipe(tmp_path: Path, text_edit=None) -> Path:
    """recipes/tiny.yaml with absolute data paths and output_dir under tmp_path (its YAML text, optionally edited)."""
    raw = yaml.safe_load(TINY.read_text())
    raw["output_dir"] = str(tmp_path / "out")
    raw["model"]["build"]["corpus"] = raw["model"]["pretrain"]["dataset"] = str(REPO / "tests/data/corpus.txt")
    for stage in ("sft", "dpo"):
        raw["stages"][stage]["dataset"] = str(REPO / "tests/data" / f"{stage}.jsonl")
    raw["measure"]["benchmarks"] = [{"name": "jsonl", "path": str(REPO / "tests/data/eval.jsonl")}]
    text = yaml.safe_dump(raw, sort_keys=False)
    path = tmp_path / "recipe.yaml"
    path.write_text(text_edit(text) if text_edit else text)
    return path


@pytest.mark.parametrize("argv, pattern", [
    (["overwrite=flase"], r"overwrite: expected true or false, got 'flase'; valid choices: true, false"),
    (["overwrite=yes"], r"overwrite: expected true or false, got 'yes'"),
    (["measure=nope"], r"measure: expected true or false, got 'nope'"),
    (["compare=1"], r"compare: expected true or false, got 1"),
    (["seed=100000000000000000000000000"], r"seed: 100000000000000000000000000 is out of range; valid: 0 \.\. 4294967295"),
    (["seed=-1"], r"seed: -1 is out of range"),
    (["stages.dpo.args.learning_rate=.nan"], r"stages.dpo.args.learning_rate: nan is not a finite number"),
    (["stages.dpo.args.learning_rate=-.inf"], r"stages.dpo.args.learning_rate: -inf is not a finite number"),
    (["stages.dpo.args.beta=.inf"], r"stages.dpo.args.beta: inf is not a finite number"),
    (["stages.dpo.args.max_steps=100000000000000000000000"], r"stages.dpo.args.max_steps: .* out of range"),
    (["stages.dpo.args.max_steps=10000000000"], r"stages.dpo.args.max_steps: 10000000000 is out of range; valid: -1 \.\. 1000000000"),
    (["stages.sft.args.learning_rate=-0.1"], r"stages.sft.args.learning_rate: -0.1 is out of range"),
    (["measure.temperature=.nan"], r"measure.temperature: nan is not a finite number"),
    (["name=../../escaped_tiny"], r"name: '../../escaped_tiny' is not a plain name.*set output_dir"),
    (["name=a/b"], r"name: 'a/b' is not a plain name"),
    (["name=.."], r"name: '..' is not a plain name"),
    (["stages.sft.lora=on"], r"stages.sft.lora: expected bool or dict, got str 'on'"),  # YAML 1.1 'on' is no boolean here
])
def test_chain_refuses_bad_values(argv, pattern, tmp_path, capsys):
    path = tiny_recipe(tmp_path)
    err = refused(chain.main, [f"recipe={path}", *argv], tmp_path, capsys)
    assert re.search(pattern, err), err


def _bomb(text: str) -> str:
    """An alias bomb inside a valid key: a few lines that expand to 10**6 list items."""
    levels = "".join(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7))
    return text.replace("target_modules:\n  - q_proj\n  - v_proj\n",
                        "target_modules:\n  - &l0 [q_proj, v_proj]\n" + levels)


@pytest.mark.parametrize("edit, pattern", [
    (lambda t: t.replace("seed: 0\n", "seed: 0\nseed: 7\n"), r"recipe.yaml:3: invalid YAML \(duplicate key 'seed' \(first given on line 2\)\)"),
    (lambda t: t.replace("  sft:\n    trainer: sft\n", "  sft:\n    trainer: sft\n    trainer: dpo\n"), r"recipe.yaml:\d+: invalid YAML \(duplicate key 'trainer'"),
    (_bomb, r"recipe.yaml:\d+: invalid YAML \(this value expands to more than 100000 values through aliases"),
    (lambda t: t.replace("name: tiny\n", "name: &n [*n]\n"), r"recipe.yaml:1: invalid YAML \(an alias refers to the node that contains it"),
    (lambda t: t.replace("name: tiny\n", "name: ../../escaped_tiny\n"), r"name: '../../escaped_tiny' is not a plain name"),
    (lambda t: t.replace("seed: 0\n", "seed: 100000000000000000000000000\n"), r"seed: .* out of range; valid: 0 \.\. 4294967295"),
])
def test_recipe_text_refused(edit, pattern, tmp_path, capsys):
    path = tiny_recipe(tmp_path, edit)
    err = refused(chain.main, [f"recipe={path}"], tmp_path, capsys)
    assert re.search(pattern, err), err


def test_aliases_are_copies_not_shared(tmp_path):
    """An override of one alias copy leaves the other alone (PyYAML shares one object between them)."""
    from train.recipe import load_recipe
    path = tiny_recipe(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["stages"]["dpo"]["args"] = raw["stages"]["sft"]["args"]   # the dumper writes &id001 ... *id001
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "*id001" in path.read_text()
    recipe = load_recipe(path, {"stages.sft.args.max_steps": 2})
    assert recipe.stages["sft"].args["max_steps"] == 2 and recipe.stages["dpo"].args["max_steps"] == 3


def test_non_utf8_recipe_and_directory_via_the_real_cli(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: tiny\n# caf\xe9\nseed: 0\n".encode("latin-1"))
    before = snapshot(tmp_path)
    for arg, pattern in ((bad, r"latin1.yaml:2: not UTF-8 text"), (tmp_path, r"is a directory; expected a recipe file")):
        proc = subprocess.run([sys.executable, "-m", "train.chain", f"recipe={arg}"], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
        assert proc.returncode == 2 and re.search(pattern, proc.stderr), proc.stderr
        assert "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before


def test_sweep_refuses_a_boolean_typo(tmp_path, capsys):
    path = tiny_recipe(tmp_path)
    err = refused(sweep.main, [f"recipe={path}", "stage=dpo", "grid.stages.dpo.args.beta=[0.1]", "overwrite=flase"],
                  tmp_path, capsys)
    assert "overwrite: expected true or false" in err


# ---------------------------------------------------------------- python -m measure

def _samples(path: Path, entropies: str = "[0.1, 0.2]") -> None:
    path.write_text('{"id": "a", "question": "x?", "answers": ["y"], "samples": ["y", "y"], '
                    '"greedy": {"text": "y", "token_entropies": [0.5]}}\n'
                    f'{{"id": "b", "question": "z?", "answers": ["w"], "samples": ["w"], '
                    f'"greedy": {{"text": "w", "token_entropies": {entropies}, "token_logprobs": [-0.1, -0.2]}}}}\n')


@pytest.mark.parametrize("entropies, key", [("[0.1, NaN]", "token_entropies[1] is NaN"),
                                            ("[Infinity, 0.2]", "token_entropies[0] is Infinity")])
def test_score_refuses_non_finite_token_statistics(entropies, key, tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    _samples(samples, entropies)
    err = refused(measure_main, ["score", f"samples={samples}", f"out={tmp_path / 'out'}"], tmp_path, capsys)
    assert f"samples.jsonl:2 (greedy): {key}" in err


def test_score_refuses_logprob_infinity(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"id": "a", "question": "x?", "samples": [{"text": "y", "token_logprobs": [-Infinity]}]}\n')
    err = refused(measure_main, ["score", f"samples={samples}", f"out={tmp_path / 'out'}"], tmp_path, capsys)
    assert "samples.jsonl:1 (samples[0]): token_logprobs[0] is -Infinity" in err


def test_measure_cli_bad_inputs(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    _samples(samples)
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(samples.read_bytes() + '{"id": "c", "question": "caf\xe9", "samples": ["y"]}\n'.encode("latin-1"))
    mdir = tmp_path / "m"
    mdir.mkdir()
    write_jsonl(mdir / "questions.jsonl", [{"id": "a", "n_clusters": {}, "clusters": {}, "signals": {}, "label": True}])
    out = f"out={tmp_path / 'out'}"
    cases = [
        (["score", f"samples={samples}", out, "overwrite=nope"], r"overwrite: expected true or false, got 'nope'"),
        (["score", f"samples={tmp_path}", out], r"is a directory; expected a file"),
        (["score", f"samples={latin}", out], r"latin1.jsonl:3: not UTF-8 text"),
        (["score", f"samples={samples}", out, "seed=1.5"], r"score.seed: expected int"),
        (["score", f"samples={samples}", out, "judge_margin=.nan"], r"score.judge_margin: nan is not a finite number"),
        (["cascade", str(mdir), "seed=abc"], r"seed: expected an integer, got str 'abc'"),
        (["cascade", str(mdir), "seed=100000000000"], r"seed: 100000000000 is out of range; valid: 0 \.\. 4294967295"),
        (["cascade", str(mdir), "cv_folds=five"], r"cv_folds: expected an integer"),
        (["cascade", str(mdir), "calib_fraction=.nan"], r"calib_fraction: nan is not a finite number"),
        (["compare", str(mdir), "overwrite=maybe"], r"overwrite: expected true or false"),
        (["run", "model=x", "benchmark=jsonl", f"benchmark_path={REPO / 'tests/data/eval.jsonl'}", out, "temperature=.nan"],
         r"run.temperature: nan is not a finite number"),
        (["run", "model=x", "benchmark=jsonl", f"benchmark_path={REPO / 'tests/data/eval.jsonl'}", out, "max_new_tokens=1e999"],
         r"max_new_tokens: expected int"),
    ]
    for argv, pattern in cases:
        err = refused(measure_main, argv, tmp_path, capsys)
        assert re.search(pattern, err), (argv, err)
    assert not (tmp_path / "out").exists()


def test_measure_run_nan_temperature_via_the_real_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "measure", "run", "model=x", "benchmark=jsonl",
                           f"benchmark_path={REPO / 'tests/data/eval.jsonl'}", f"out={tmp_path / 'out'}", "temperature=.nan"],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 2 and "run.temperature: nan is not a finite number" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
    json.dumps(proc.stderr)


def test_accelerate_launch_quiet_keeps_the_message_without_a_traceback(tmp_path):
    """The launcher turns the script's exit 2 into its own exit 1 (README); with -q it adds no traceback."""
    path = tiny_recipe(tmp_path)
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "-q", "--num_processes", "1", "--cpu",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           str(REPO / "train" / "dpo.py"), f"recipe={path}", "overwrite=flase"],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 1 and "error: overwrite: expected true or false" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and snapshot(tmp_path) == before
