"""Mitigation grids (python -m train.sweep): a 2x2 DPO grid on the tiny recipe, reuse, a failing
variant, validation before anything runs, and the pure helpers (names, Pareto frontier, spec merging)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from measure.common.errors import UsageError
from train import checkpoint as ckpt
from train.sweep import flatten, main, sweep_spec, variant_name
from train.sweep_records import read_sweep, sweep_to_json
from train.sweep_report import pareto

REPO = Path(__file__).resolve().parents[1]
GRID = ["stage=dpo", "grid.stages.dpo.args.beta=[0.1,0.5]", "grid.stages.dpo.args.loss_type=[[sigmoid],[ipo]]"]
NAMES = ["beta=0.1,loss_type=sigmoid", "beta=0.1,loss_type=ipo", "beta=0.5,loss_type=sigmoid", "beta=0.5,loss_type=ipo"]
pytestmark = pytest.mark.slow


def _recipe_file(tmp: Path, out: Path) -> Path:
    """recipes/tiny.yaml, shorter, output in `out`, measured on 3 questions."""
    raw = yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())
    raw["output_dir"] = str(out)
    raw["model"]["build"]["corpus"] = raw["model"]["pretrain"]["dataset"] = str(REPO / "tests/data/corpus.txt")
    for stage, steps in (("sft", 2), ("dpo", 1)):
        raw["stages"][stage].update(dataset=str(REPO / "tests/data" / f"{stage}.jsonl"))
        raw["stages"][stage]["args"]["max_steps"] = steps
    raw["measure"].update(benchmarks=[{"name": "jsonl", "path": str(REPO / "tests/data/eval.jsonl"), "limit": 3}],
                          n_samples=3, max_new_tokens=4, clusterers=["exact", "jaccard"], bootstrap=50)
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def sweep(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as e:
        return int(e.code)
    return 0


# session-scoped: built once per test run (`make test` keeps each file on one worker); the tests only
# add to it, in order
@pytest.fixture(scope="session")
def swept(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, chain dir) after one 2x2 sweep, which also trained base and sft (the parent)."""
    tmp = tmp_path_factory.mktemp("sweep")
    path = _recipe_file(tmp, tmp / "tiny")
    assert sweep(f"recipe={path}", *GRID) == 0
    return path, tmp / "tiny"


def test_grid_trains_measures_and_reports_every_variant(swept):
    path, out = swept
    root = out / "sweeps" / "dpo"
    report = json.loads((root / "sweep.json").read_text())
    assert [r["name"] for r in report["variants"]] == NAMES
    assert report["counts"] == {"trained": 4, "reused": 0, "failed": 0}
    assert not (out / "dpo").exists()  # only the parents of the swept stage ran in the main chain
    ref = report["references"][0]
    assert ref["stage"] == "sft" and ref["reports"]["jsonl"]["n_questions"] == 3
    assert set(ref["reports"]["jsonl"]["scr"]) == {"exact", "jaccard"}
    weights = []
    for row in report["variants"]:
        d = root / row["name"]
        assert (d / "sft").is_symlink() and (d / "sft").resolve() == (out / "sft").resolve()
        manifest = ckpt.read_manifest(d / "dpo")
        args = manifest.recipe["stages"]["dpo"]["args"]
        assert {"beta": args["beta"], "loss_type": args["loss_type"]} == {
            "beta": row["values"]["stages.dpo.args.beta"], "loss_type": row["values"]["stages.dpo.args.loss_type"]}
        assert manifest.parent_hash == ckpt.manifest_hash(out / "sft")
        assert row["reports"]["jsonl"]["n_questions"] == 3 and (d / "dpo/measure/jsonl/report.json").exists()
        weights.append(load_file(d / "dpo" / "model.safetensors"))
    for i in range(4):  # each variant trained its own model
        for j in range(i):
            assert any(not torch.equal(weights[i][k], weights[j][k]) for k in weights[i])
    assert (root / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (root / "sweep.md").read_text()
    assert all(f"| {name} | trained |" in md for name in NAMES) and "| P | parent: sft | reference |" in md
    assert "Intervals: accuracy: 95% CI, Clopper-Pearson exact; AUROC: 95% CI, percentile bootstrap" in md
    typed = read_sweep(root)   # the one reader; the one writer gives the file back
    assert sweep_to_json(typed) == report and [r.name for r in typed.variants] == NAMES
    assert typed.references[0].reports["jsonl"].n_questions == 3 and typed.variants[0].values == report["variants"][0]["values"]
    assert (root / "sweep.json").read_text() == json.dumps(sweep_to_json(typed), indent=2) + "\n"


def test_rerun_reuses_finished_variants(swept):
    path, out = swept
    root = out / "sweeps" / "dpo"
    stamps = {n: (root / n / "dpo" / "stage.json").stat().st_mtime_ns for n in NAMES}
    assert sweep(f"recipe={path}", *GRID) == 0
    report = json.loads((root / "sweep.json").read_text())
    assert report["counts"] == {"trained": 0, "reused": 4, "failed": 0}
    assert stamps == {n: (root / n / "dpo" / "stage.json").stat().st_mtime_ns for n in NAMES}
    assert all(r["reports"]["jsonl"]["scr"] for r in report["variants"])


def test_changed_recipe_does_not_reuse_stale_variants(swept, capsys):
    """A finished variant trained with other settings is refused before anything runs (was: 'failed', exit 1)."""
    from conftest import tree_snapshot
    path, out = swept
    before = tree_snapshot(out)
    assert sweep(f"recipe={path}", *GRID, "stages.dpo.args.learning_rate=0.5") == 2
    err = capsys.readouterr().err
    assert f"grid variant {NAMES[0]}: stage 'dpo'" in err and "args.learning_rate: 0.01 -> 0.5" in err
    assert "overwrite=true" in err and tree_snapshot(out) == before


def test_failed_variant_is_reported_and_the_others_finish(swept, tmp_path):
    """loss_weights of the wrong length: DPOConfig rejects it when that variant starts; the other trains."""
    path, out = swept
    copy = tmp_path / "tiny"
    for stage in ("base", "sft"):
        shutil.copytree(out / stage, copy / stage)
    code = sweep(f"recipe={path}", f"output_dir={copy}", "stage=dpo", "grid.stages.dpo.args.loss_type=[[sigmoid,sft]]",
                 "grid.stages.dpo.args.loss_weights=[[1.0],[1.0,0.5]]")
    assert code == 1  # a variant failed: the report is written, the exit code says so
    report = json.loads((copy / "sweeps" / "dpo" / "sweep.json").read_text())
    bad, good = report["variants"]
    assert bad["name"] == "loss_type=sigmoid+sft,loss_weights=1.0" and bad["status"] == "failed"
    assert "loss_weights" in bad["error"] and bad["reports"] == {}
    assert good["status"] == "trained" and good["reports"]["jsonl"]["n_questions"] == 3
    assert "## Failed variants" in (copy / "sweeps" / "dpo" / "sweep.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["stage=dpo", "grid.stages.dpo.args.betta=[0.1,0.5]"], "stages.dpo.args.betta: not a DPOConfig argument"),
    (["stage=dpo", "grid.stages.sft.args.learning_rate=[0.1]"], "only keys under stages.dpo."),  # changes the parent
    (["stage=dpo", "grid.stages.dpo.args.loss_type=[sigmoid,ipo]"], "loss_type: expected list"),  # needs [[..],[..]]
    (["stage=dpo", "grid.stages.dpo.args.beta=0.1"], "expected a non-empty list"),
    (["stage=dpo", "grid.stages.dpo.args.beta=[0.1,0.1]"], "listed twice"),
    (["stage=dpo", "grid.stages.dpo.args.beta=[0.1]", "signal=entropy"], "signal: unknown 'entropy'"),
    (["stage=dpoo", "grid.stages.dpoo.args.beta=[0.1]"], "did you mean 'dpo'"),
    (["grid.stages.dpo.args.beta=[0.1]"], "no stage to sweep"),
    (["stage=dpo"], "no grid"),
])
def test_bad_grid_exits_2_before_anything_runs(tmp_path, capsys, args, message):
    path = _recipe_file(tmp_path, tmp_path / "out")
    assert sweep(f"recipe={path}", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_variant_names_are_short_distinct_and_safe():
    assert variant_name({"stages.dpo.args.beta": 0.01, "stages.dpo.args.loss_type": ["ipo"]}) == "beta=0.01,loss_type=ipo"
    assert variant_name({"stages.dpo.args.r": 4, "stages.dpo.lora.r": 8}) == "args.r=4,lora.r=8"
    assert variant_name({"stages.dpo.args.loss_type": ["sigmoid", "sft"], "stages.dpo.mode": "a/b c"}) == \
        "loss_type=sigmoid+sft,mode=a-b-c"
    assert variant_name({"stages.dpo.args.use_weighting": True, "stages.dpo.args.ld_alpha": None}) == \
        "use_weighting=true,ld_alpha=null"


def test_pareto_frontier_by_hand():
    # (name, accuracy, scr): b dominates a (more accurate, less homogenized); c and b trade off; d == b ties
    pts = [("a", 0.5, 0.6), ("b", 0.6, 0.4), ("c", 0.7, 0.8), ("d", 0.6, 0.4)]
    assert pareto(pts) == {"b", "c", "d"}


def test_sweep_section_and_cli_merge():
    section = {"stage": "dpo", "grid": {"stages": {"dpo": {"args": {"beta": [0.1, 0.5]}}},
                                        "stages.dpo.args.loss_type": [["sigmoid"]]}}
    assert flatten(section["grid"]) == {"stages.dpo.args.beta": [0.1, 0.5], "stages.dpo.args.loss_type": [["sigmoid"]]}
    stage, grid, signal = sweep_spec(section, {"grid": {"stages.dpo.args.beta": [1.0]}, "stage": None, "signal": None})
    assert (stage, grid, signal) == ("dpo", {"stages.dpo.args.beta": [1.0], "stages.dpo.args.loss_type": [["sigmoid"]]},
                                     "greedy_entropy_mean")
    with pytest.raises(UsageError, match="sweep.grids: unknown key"):
        sweep_spec({"grids": {}}, {"grid": {}, "stage": None, "signal": None})


def test_shipped_sweep_sections_plan(monkeypatch):
    """Every recipe's `sweep:` section names a stage and a grid whose variants all validate."""
    from train.recipe import load_recipe
    from train.sweep import plan
    monkeypatch.chdir(REPO)
    shipped = [p for p in sorted((REPO / "recipes").glob("*.yaml")) if yaml.safe_load(p.read_text()).get("sweep")]
    assert shipped, "no recipe ships a sweep section"
    for path in shipped:
        stage, grid, _ = sweep_spec(load_recipe(path).sweep, {"grid": {}, "stage": None, "signal": None})
        _, variants = plan(str(path), {}, stage, grid)
        assert len(variants) >= 4 and len({v.name for v in variants}) == len(variants)
