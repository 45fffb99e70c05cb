"""Self-generated pairs end to end on the tiny model (recipes/tiny-control.yaml): an untrained base, three DPO
branches on pairs sampled from it (modal, divpo, random), measured and compared each against base. Checks the
pairs files and their samples, one shared sampling, the stage.json fingerprints, reuse on a rerun, a changed
rule refused for a finished stage and rebuilt for an interrupted one, and the disjointness check."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import tree_snapshot
from measure.common.errors import UsageError
from measure.common.io import sha256_file
from train import checkpoint as ckpt
from train import dpo_effect, self_pairs
from train.chain import run_chain
from train.recipe import load_recipe
from train.reuse import dataset_digests, recorded_digests

REPO = Path(__file__).resolve().parents[1]
BRANCHES = ("modal", "divpo", "random")
pytestmark = pytest.mark.slow


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _recipe_file(tmp: Path, prompts: str = "tests/data/prompts.jsonl") -> Path:
    raw = yaml.safe_load((REPO / "recipes" / "tiny-control.yaml").read_text())
    raw["output_dir"] = str(tmp / "out")
    raw["model"]["build"]["corpus"] = raw["model"]["pretrain"]["dataset"] = str(REPO / "tests/data/corpus.txt")
    raw["measure"]["benchmarks"][0]["path"] = str(REPO / "tests/data/eval.jsonl")
    for stage in BRANCHES:
        for field in ("dataset", "heldout"):
            raw["stages"][stage][field]["self_pairs"]["questions"]["path"] = str(REPO / prompts)
    path = tmp / "tiny-control.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def control(tmp_path_factory) -> tuple[Path, Path]:
    path = _recipe_file(tmp_path_factory.mktemp("control"))
    recipe = load_recipe(path)
    run_chain(recipe)
    return path, Path(recipe.output_dir)


def test_pairs_files_samples_and_fingerprints(control):
    _, out = control
    caches = list((out / "base" / "self_samples").glob("*.jsonl"))
    # three branches, one sampling of base for the training prompts (10) and one for the held-out ones (6)
    assert sorted(len(_jsonl(c)) for c in caches) == [6, 10]
    base_hash = ckpt.manifest_hash(out / "base")
    for rule in BRANCHES:
        folder = out / rule / "self_pairs"
        pairs, samples = _jsonl(folder / "pairs.jsonl"), _jsonl(folder / "samples.jsonl")
        assert len(pairs) == 3 and len(samples) == 10                      # the first 3 pairs of 10 prompts
        by_id = {s["id"]: s for s in samples}
        for p in pairs:
            row = by_id[p["id"]]
            chosen, rejected = (row["samples"][row["pair"][k]] for k in ("chosen", "rejected"))
            assert (p["chosen_text"], p["rejected_text"]) == (chosen["text"], rejected["text"])
            assert chosen["cluster"] != rejected["cluster"] and len(row["samples"]) == 6
            assert p["prompt"] == [{"role": "user", "content": row["question"]}]
            assert p["chosen"] == [{"role": "assistant", "content": chosen["text"]}]
            if rule == "modal":   # the most common answer over a rarer one
                assert p["chosen_cluster_size"] == max(s["cluster_size"] for s in row["samples"])
                assert p["chosen_cluster_size"] > p["rejected_cluster_size"]
            if rule == "divpo":   # no gold answers in the prompts: quality = mean token log-probability
                assert row["quality"] == "logprob" and chosen["quality"] == chosen["mean_logprob"]
                assert chosen["quality"] > rejected["quality"]
        fingerprint = ckpt.read_manifest(out / rule).datasets[0]
        assert fingerprint["self_pairs"]["rule"] == rule and fingerprint["source_hash"] == base_hash
        assert fingerprint["sha256"] == sha256_file(folder / "pairs.jsonl") and fingerprint["rows"] == 3
        assert json.loads((folder / "self_pairs.json").read_text())["fingerprint"]["key"] == fingerprint["key"]
        if rule == "modal":   # a prompt without a mode gets no modal pair
            assert all(len({s["cluster_size"] for s in row["samples"]}) == 1 for row in samples
                       if row.get("skipped") == "no answer more common than another")
        held = _jsonl(out / rule / "self_pairs-heldout" / "pairs.jsonl")
        assert held and not {p["id"] for p in held} & {p["id"] for p in pairs}
    assert ckpt.read_manifest(out / "divpo").train_metrics["global_step"] == 2


def test_each_branch_is_compared_with_its_parent(control):
    _, out = control
    listed = json.loads((out / "runs.json").read_text())["runs"]["jsonl"]
    assert [r.get("vs") for r in listed] == [None, "base", "base", "base"]
    compare = json.loads((out / "compare" / "compare.json").read_text())
    assert compare["settings"]["pairs"] == [["base", b] for b in BRANCHES]
    # 3 pairs x 2 clusterers x 2 tests, and each continuous measure's test of each pair
    measures = compare["measure_transitions"]
    assert measures and compare["holm"]["family_size"] == 3 * 2 * 2 + len(measures)
    for rows in (compare["transitions"], measures):
        assert {(t["from"], t["to"]) for t in rows} == {("base", b) for b in BRANCHES}
    assert compare["verdict"]["text"].startswith("Per pair") and all(f"base -> {b}:" in compare["verdict"]["text"]
                                                                   for b in BRANCHES)
    effect = json.loads((out / "dpo_effect.json").read_text())
    assert {s: e["parent"] for s, e in effect["stages"].items()} == {b: "base" for b in BRANCHES}
    assert all(e["heldout"]["pairs"] == len(_jsonl(out / s / "self_pairs-heldout" / "pairs.jsonl"))
               for s, e in effect["stages"].items())


def test_rerun_reuses_and_a_changed_rule_is_refused(control):
    path, out = control
    stamps = {p: p.stat().st_mtime_ns for p in [*out.glob("*/stage.json"), *out.glob("*/self_pairs/*"),
                                                 *out.glob("base/self_samples/*")]}
    effect = (out / "dpo_effect.json").read_text()
    with pytest.MonkeyPatch.context() as m:   # the DPO effect of unchanged stages is reused, not recomputed
        m.setattr(dpo_effect, "stage_effect", lambda *a, **k: pytest.fail("an unchanged stage's effect was recomputed"))
        run_chain(load_recipe(path), compare=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and (out / "dpo_effect.json").read_text() == effect
    changed = load_recipe(path, {"stages.modal.heldout.self_pairs.questions.limit": 3})   # other held-out pairs
    assert dpo_effect.effect_inputs(changed, "modal", heldout=True) != json.loads(effect)["stages"]["modal"]["inputs"]
    with pytest.raises(UsageError, match=r"stage 'divpo'.*dataset.self_pairs.rule: \"divpo\" -> \"modal\""):
        run_chain(load_recipe(path, {"stages.divpo.dataset.self_pairs.rule": "modal"}))
    # a finished stage's pairs are checked against the stage.json of the stage they were sampled from
    recipe = load_recipe(path)
    assert dataset_digests(recipe, "modal") == recorded_digests(ckpt.read_manifest(out / "modal")) \
        == [ckpt.manifest_hash(out / "base")]


def test_an_interrupted_stage_reuses_its_pairs_and_new_pairs_drop_its_checkpoints(control, tmp_path, monkeypatch):
    path, out = control
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "modal" / "stage.json").unlink()                          # interrupted: not finished
    (copy / "modal" / "trainer" / "checkpoint-1").mkdir(parents=True)
    before = sha256_file(copy / "modal" / "self_pairs" / "pairs.jsonl")
    with monkeypatch.context() as m:
        m.setattr(self_pairs, "sample_source", lambda *a, **k: pytest.fail("reused pairs must not sample"))
        built = self_pairs.prepare(load_recipe(path, {"output_dir": str(copy)}), "modal")
    assert built[0][1]["sha256"] == before and (copy / "modal" / "trainer").exists()
    cache = next((copy / "base" / "self_samples").glob("*.jsonl"))
    cached = cache.read_bytes()
    recipe = load_recipe(path, {"output_dir": str(copy), "stages.modal.dataset.self_pairs.rule": "random"})
    built = self_pairs.prepare(recipe, "modal")
    assert built[0][1]["self_pairs"]["rule"] == "random" and not (copy / "modal" / "trainer").exists()
    assert cache.read_bytes() == cached                                  # the same answers, from the cache


def test_prompts_that_are_evaluation_questions_stop_the_chain_first(tmp_path):
    path = _recipe_file(tmp_path, prompts="tests/data/eval.jsonl")
    recipe = load_recipe(path)                                           # the keys are fine
    before = tree_snapshot(tmp_path)
    with pytest.raises(UsageError, match=r"stages.modal.dataset.self_pairs.questions: \d prompt\(s\) are evaluation "
                                         r"questions, e.g. prompt 'cap-\d+' .* is question 'cap-\d+'"):
        run_chain(recipe)
    assert tree_snapshot(tmp_path) == before and not (tmp_path / "out").exists()
