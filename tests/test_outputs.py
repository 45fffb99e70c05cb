"""Issue 23, items 1-2: no command replaces its input or a file it did not write, and a bad output location
is refused before the work -- through the real CLIs (measure run|score|compare|cascade, train.chain, the stage
scripts, train.sweep, train.seeds): exit 2, the message naming both paths, and not one byte changed anywhere
under the test's folder (tests/conftest.py tree_contents hashes every file, inputs included)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from measure.cli import main as measure_main
from measure.common.errors import UsageError
from measure.common.io import write_json, write_jsonl
from measure.common.outputs import RECORD
from train import chain, seeds, sft, sweep

from conftest import tree_contents
from test_bad_inputs import tiny_recipe

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "tests" / "data" / "eval.jsonl"
SCORE = ["clusterers=[exact,jaccard]", "bootstrap=20"]


def refused(entry, argv: list[str], root: Path, capsys, *patterns: str) -> str:
    """Run a CLI main in-process: exit 2, an error (no traceback) matching every pattern, root unchanged."""
    before = tree_contents(root)
    with pytest.raises(SystemExit) as exc:
        entry([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert re.search(r"(^|\n)error: ", err) and "Traceback" not in err   # (after a model's loading bar, if any)
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)
    assert tree_contents(root) == before
    return err


def samples_file(path: Path) -> Path:
    """Three questions with gold answers (one answered wrong), four samples each: labels of both classes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [
        {"id": "q1", "question": "Capital of France?", "answers": ["Paris"], "greedy": {"text": "Paris"},
         "samples": ["Paris", "Paris", "Paris", "Paris"]},
        {"id": "q2", "question": "Capital of Peru?", "answers": ["Lima"], "greedy": {"text": "Quito"},
         "samples": ["Quito", "Lima", "Bogota", "Quito"]},
        {"id": "q3", "question": "2+2?", "answers": ["4"], "greedy": {"text": "4"}, "samples": ["4", "4", "four", "4"]}])
    return path


def scored(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    measure_main(["score", f"samples={samples_file(tmp_path / f'{name}-in' / 'samples.jsonl')}", f"out={out}", *SCORE])
    return out


# ---------------------------------------------------------------- inputs are sacred (every measure command)

def test_score_never_replaces_its_samples_file(tmp_path, capsys):
    d = tmp_path / "d"
    given = samples_file(d / "questions.jsonl")   # the case: samples named like the per-question records
    for extra in ([], ["overwrite=true"]):
        refused(measure_main, ["score", f"samples={given}", f"out={d}", *SCORE, *extra], tmp_path, capsys,
                re.escape(f"would write {given}, which is its input {given}"), "not even with overwrite=true")


def test_score_never_replaces_the_report_it_reads_beside_the_samples(tmp_path, capsys):
    run = scored(tmp_path, "run")
    samples_file(run / "samples.jsonl")
    refused(measure_main, ["score", f"samples={run / 'samples.jsonl'}", f"out={run}", "overwrite=true", *SCORE],
            tmp_path, capsys, re.escape(f"would write {run / 'report.json'}, which is its input"))


def test_inputs_are_compared_through_symbolic_and_hard_links(tmp_path, capsys):
    given = samples_file(tmp_path / "in" / "questions.jsonl")
    (tmp_path / "link").symlink_to(tmp_path / "in", target_is_directory=True)   # out= names the input's folder
    refused(measure_main, ["score", f"samples={given}", f"out={tmp_path / 'link'}", *SCORE], tmp_path, capsys,
            "which is its input")
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(given, hard / "report.md")   # the same inode under an output's name
    refused(measure_main, ["score", f"samples={given}", f"out={hard}", "overwrite=true", *SCORE], tmp_path, capsys,
            re.escape(f"would write {hard / 'report.md'}, which is its input {given}"))


def test_run_never_replaces_its_benchmark_file(tiny_model_dir, tmp_path, capsys):
    d = tmp_path / "d"
    bench = d / "samples.jsonl"
    bench.parent.mkdir()
    bench.write_bytes(EVAL.read_bytes())
    refused(measure_main, ["run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={bench}", f"out={d}",
                           "n_samples=2", "max_new_tokens=4"], tmp_path, capsys,
            re.escape(f"would write {bench}, which is its input {bench}"))


def test_compare_never_replaces_a_run_plot(tmp_path, capsys):
    a, b = scored(tmp_path, "a"), scored(tmp_path, "b")
    assert (a / "roc.png").exists()
    for extra in ([], ["overwrite=true"]):   # overwrite=true replaces only a comparison's own outputs
        refused(measure_main, ["compare", f"runs=[{a},{b}]", f"out={a}", *extra], tmp_path, capsys,
                re.escape(f"would replace {a / 'roc.png'}, but it belongs to a measurement"))
    measure_main(["compare", f"runs=[{a},{b}]", f"out={tmp_path / 'cmp'}"])   # its own folder: written
    assert json.loads((tmp_path / "cmp" / RECORD).read_text())["outputs"]["compare.json"] == "comparison"
    before = tree_contents(tmp_path / "cmp")
    refused(measure_main, ["compare", f"runs=[{a},{b}]", f"out={tmp_path / 'cmp'}"], tmp_path, capsys,
            "already holds comparison outputs", "overwrite=true")
    measure_main(["compare", f"runs=[{a},{b}]", f"out={tmp_path / 'cmp'}", "overwrite=true"])
    assert tree_contents(tmp_path / "cmp") != before


def test_cascade_into_its_measure_dir_names_the_report_plot_and_never_suggests_overwrite(tmp_path, capsys):
    a = scored(tmp_path, "a")
    for extra in ([], ["overwrite=true"]):
        err = refused(measure_main, ["cascade", str(a), f"out={a}", "signals=[n_clusters@exact]", *extra], tmp_path,
                      capsys, re.escape(f"would replace {a / 'risk_coverage.png'}, but it belongs to a measurement"))
        assert "pass overwrite=true" not in err


def test_an_existing_file_no_command_wrote_is_never_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    given = samples_file(tmp_path / "in" / "samples.jsonl")
    for extra in ([], ["overwrite=true"]):
        refused(measure_main, ["score", f"samples={given}", f"out={out}", *SCORE, *extra], tmp_path, capsys,
                re.escape(f"would replace {out / 'report.md'}, but it was not written by measure score"))


def test_overwrite_replaces_the_same_commands_outputs(tmp_path, capsys):
    given = samples_file(tmp_path / "in" / "samples.jsonl")
    out = tmp_path / "out"
    measure_main(["score", f"samples={given}", f"out={out}", *SCORE])
    refused(measure_main, ["score", f"samples={given}", f"out={out}", *SCORE], tmp_path, capsys,
            "already holds a finished measurement", "overwrite=true")
    measure_main(["score", f"samples={given}", f"out={out}", "bootstrap=20", "overwrite=true", "clusterers=[exact]"])
    assert list(json.loads((out / "report.json").read_text())["scr"]) == ["exact"]


# ---------------------------------------------------------------- the output location, before the work

def bad_locations(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "a_file").write_text("x\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return [(tmp_path / "a_file", "is a file, not a folder"),
            (tmp_path / "a_file" / "sub", "goes through .*a_file, which is a file"),
            (tmp_path / "dangling", "is a dangling symbolic link"),
            (tmp_path / "dangling" / "sub", "is a dangling symbolic link")]


def test_measure_commands_check_the_output_location_first(tiny_model_dir, tmp_path, capsys):
    given = samples_file(tmp_path / "in" / "samples.jsonl")
    a, b = scored(tmp_path, "a"), scored(tmp_path, "b")
    for out, pattern in bad_locations(tmp_path):
        for argv in (["score", f"samples={given}", f"out={out}", *SCORE],
                     ["run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={out}"],
                     ["compare", f"runs=[{a},{b}]", f"out={out}"],
                     ["cascade", str(a), f"out={out}"]):
            refused(measure_main, argv, tmp_path, capsys, re.escape(f"out={out}: ") + ".*" + pattern)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (a folder nobody may write, root included)")
def test_an_unwritable_output_folder_is_refused_before_scoring(tmp_path, capsys):
    given = samples_file(tmp_path / "in" / "samples.jsonl")
    refused(measure_main, ["score", f"samples={given}", "out=/proc/self/out", *SCORE], tmp_path, capsys,
            "out=/proc/self/out: cannot be created: /proc/self is not writable")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):
        return   # root writes anywhere: the /proc case above covers it
    refused(measure_main, ["score", f"samples={given}", f"out={locked}", *SCORE], tmp_path, capsys, "is not writable")


def test_a_write_that_fails_names_the_path_and_leaves_nothing(tmp_path):
    target = tmp_path / "a_file" / "out.json"
    (tmp_path / "a_file").write_text("x\n")
    with pytest.raises(UsageError, match=re.escape(f"{target}: cannot write")):
        write_json(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


# ---------------------------------------------------------------- training entry points

def _recipe(tmp_path: Path, **edits) -> Path:
    path = tiny_recipe(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw.update(edits)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_training_entry_points_check_output_dir_first(tmp_path, capsys):
    for out, pattern in bad_locations(tmp_path):
        recipe = _recipe(tmp_path, output_dir=str(out))
        for entry, argv in ((chain.main, []), (sft.main, []), (sweep.main, ["stage=dpo", "grid.stages.dpo.args.beta=[0.1,0.2]"])):
            refused(entry, [f"recipe={recipe}", *argv], tmp_path, capsys, re.escape(f"output_dir={out}: ") + ".*" + pattern)
    # seeds: the chains go to <output_dir>-seeds/seed<k>; a file there stops it before the first seed trains
    (tmp_path / "x-seeds").write_text("x\n")
    refused(seeds.main, [f"recipe={_recipe(tmp_path, output_dir=str(tmp_path / 'x'))}", "seeds=[0,1]"], tmp_path, capsys,
            re.escape(f"output_dir={tmp_path / 'x-seeds'}: is a file"))


def test_a_chain_never_writes_over_its_inputs_or_foreign_folders(tmp_path, capsys):
    out = tmp_path / "out"
    data = out / "sft" / "data.jsonl"   # the sft stage's dataset inside the sft stage's folder
    data.parent.mkdir(parents=True)
    data.write_bytes((REPO / "tests" / "data" / "sft.jsonl").read_bytes())
    recipe = _recipe(tmp_path, output_dir=str(out))
    raw = yaml.safe_load(recipe.read_text())
    raw["stages"]["sft"]["dataset"] = str(data)
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    refused(chain.main, [f"recipe={recipe}", "overwrite=true"], tmp_path, capsys,
            re.escape(f"would write {out / 'sft'}, which holds its input {data}"))
    other = _recipe(tmp_path, output_dir=str(tmp_path / "mine"))   # a folder of the user's named like a stage
    (tmp_path / "mine" / "base").mkdir(parents=True)
    (tmp_path / "mine" / "base" / "notes.txt").write_text("mine\n")
    refused(chain.main, [f"recipe={other}"], tmp_path, capsys,
            re.escape(f"would replace {tmp_path / 'mine' / 'base'}, but it was not written by python -m train.chain"))
