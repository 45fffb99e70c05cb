"""The offline toy world generator (train/world.py): determinism, idempotence, split hygiene, formats."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from measure.scoring.config import BenchmarkSpec
from measure.common.errors import UsageError
from train import world as W

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"people": 30, "cities": 5, "countries": 2, "eval_per_bucket": 4, "reasoning_questions": 3}
FILES = ("corpus.jsonl", "sft.jsonl", "dpo.jsonl", "eval.jsonl", "world.json")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _renderings(attr: str, person: str, value: str) -> set[str]:
    """Every corpus row that states this fact: a statement, or a Q/A block in any style."""
    statements = {W.statement(attr, person, value, form) for form in (0, 1)}
    qa = {f"Q: {W.question(attr, person)}\nA: {W.surface(attr, value, s)}" for s in W.STYLES}
    return statements | qa


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    return W.write_world(SMALL, seed=3, out_dir=tmp_path_factory.mktemp("world"))


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    a = W.write_world(SMALL, seed=1, out_dir=tmp_path / "a")
    b = W.write_world(SMALL, seed=1, out_dir=tmp_path / "b")
    c = W.write_world(SMALL, seed=2, out_dir=tmp_path / "c")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "corpus.jsonl").read_bytes() != (c / "corpus.jsonl").read_bytes()
    assert (a / "eval.jsonl").read_bytes() != (c / "eval.jsonl").read_bytes()


def test_rewrites_only_when_config_or_seed_changes(tmp_path):
    out = W.write_world(SMALL, seed=1, out_dir=tmp_path)
    before = {n: (out / n).stat().st_mtime_ns for n in FILES}
    W.write_world(dict(SMALL), seed=1, out_dir=tmp_path)  # same config + seed: nothing touched
    assert {n: (out / n).stat().st_mtime_ns for n in FILES} == before
    # an explicit default equals the implicit one: still the same world
    W.write_world({**SMALL, "qa_share": W.WorldSpec.qa_share}, seed=1, out_dir=tmp_path)
    assert (out / "world.json").stat().st_mtime_ns == before["world.json"]
    W.write_world(SMALL, seed=2, out_dir=tmp_path)
    assert json.loads((out / "world.json").read_text())["seed"] == 2
    W.write_world({**SMALL, "people": 31}, seed=2, out_dir=tmp_path)
    assert json.loads((out / "world.json").read_text())["counts"]["people"] == 31
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_counts_and_fact_table(world_dir):
    meta = json.loads((world_dir / "world.json").read_text())
    assert meta["seed"] == 3 and meta["config"]["people"] == 30
    counts = meta["counts"]
    assert counts["eval_by_bucket"] == {"many": 4, "few": 4, "once": 4, "never": 4}
    assert counts["reasoning"] == 3 and counts["eval"] == 19
    for name in ("corpus", "sft", "dpo", "eval"):
        assert counts[name] == len(_rows(world_dir / f"{name}.jsonl"))
    assert len(meta["facts"]) == 30 * 4  # city, job, pet, country per person


def test_corpus_frequencies_are_exact(world_dir):
    corpus = [r["text"] for r in _rows(world_dir / "corpus.jsonl")]
    meta = json.loads((world_dir / "world.json").read_text())
    freq = meta["config"]["frequencies"]
    for f in meta["facts"]:
        found = sum(t in _renderings(f["attribute"], f["person"], f["value"]) for t in corpus)
        assert found == f["corpus_count"], f
        if f["split"] in ("train", "eval"):
            assert f["corpus_count"] == (freq[f["bucket"]] if f["bucket"] else meta["config"]["country_repeats"])
    for f in meta["facts"]:
        if f["corpus_count"] == 0:  # never seen: neither asked nor stated with its value anywhere
            question = W.question(f["attribute"], f["person"])
            assert not any(question in t for t in corpus)
    for city, country in meta["city_country"].items():
        n = sum(t in _renderings("city_country", city, country) for t in corpus)
        assert n == meta["config"]["city_country_repeats"]


def test_eval_facts_never_taught_in_sft_or_dpo(world_dir):
    evals = _rows(world_dir / "eval.jsonl")
    sft, dpo = _rows(world_dir / "sft.jsonl"), _rows(world_dir / "dpo.jsonl")
    taught = {r["prompt"] for r in sft} | {r["prompt"] for r in dpo}
    assert evals and not taught & {e["question"] for e in evals}
    # every held-out person still appears in SFT (the format is taught on every entity)
    meta = json.loads((world_dir / "world.json").read_text())
    held = {f["person"] for f in meta["facts"] if f["split"] in ("eval", "reasoning")}
    sft_people = {p for p in held if any(p in r["prompt"].replace("?", "").split() for r in sft)}
    assert sft_people == held
    # a held-out city's person has no country stated anywhere (it would narrow the city down)
    for f in meta["facts"]:
        if f["split"] == "eval" and f["attribute"] == "city":
            country = next(g for g in meta["facts"] if g["person"] == f["person"] and g["attribute"] == "country")
            assert country["split"] == "withheld" and country["corpus_count"] == 0
            assert W.question("country", f["person"]) not in taught
    assert len({e["id"] for e in evals}) == len(evals)


def test_surface_forms_vary_and_house_style_is_uniform(world_dir):
    from measure.data.text import normalize_answer as normalize_text
    evals = _rows(world_dir / "eval.jsonl")
    for e in evals:
        assert len({normalize_text(a) for a in e["answers"]}) == 5
    meta = json.loads((world_dir / "world.json").read_text())
    values = {(f["person"], f["attribute"]): f["value"] for f in meta["facts"]}
    corpus_answers = [r["text"].split("\nA: ", 1)[1] for r in _rows(world_dir / "corpus.jsonl") if "\nA: " in r["text"]]
    assert any(a.startswith("I think ") for a in corpus_answers) and any(a.startswith("Probably ") for a in corpus_answers)
    assert any(len(a.split()) == 1 for a in corpus_answers)  # bare values
    by_question = {W.question(a, p): (a, p) for (p, a) in values}
    for r in _rows(world_dir / "sft.jsonl"):
        if r["prompt"] in by_question:
            a, p = by_question[r["prompt"]]
            assert r["completion"] == W.surface(a, values[(p, a)], "sentence")
    dpo = _rows(world_dir / "dpo.jsonl")
    typical = 0
    for r in dpo:
        a, p = by_question[r["prompt"]]
        assert r["chosen"] == W.surface(a, values[(p, a)], "sentence")
        assert r["rejected"] != r["chosen"]
        typical += values[(p, a)].lower() in normalize_text(r["rejected"]).split()  # right value, atypical phrasing
    assert 0 < typical < len(dpo)


def test_eval_file_is_a_jsonl_benchmark_judged_by_short_qa(world_dir):
    from measure.data.benchmarks import load_benchmark
    from measure.scoring.correctness import make_judge
    questions = load_benchmark(BenchmarkSpec(name="jsonl", path=str(world_dir / "eval.jsonl")))
    assert len(questions) == 19 and {q.meta["kind"] for q in questions} == {"recall", "reasoning"}
    judge = make_judge("short_qa")
    for q in questions:
        assert set(judge.judge_many([q] * len(q.answers), list(q.answers))) == {"correct"}
        assert set(judge.judge_many([q] * len(q.incorrect_answers), list(q.incorrect_answers))) == {"incorrect"}


def test_splits_load_as_training_data(world_dir):
    from train.data import load_training_data
    for split, trainer, n_cols in (("corpus", "pretrain", 1), ("sft", "sft", 2), ("dpo", "dpo", 3)):
        ds, _ = load_training_data({"world": split}, trainer=trainer, prompt_format="qa", base_dir=ROOT,
                                   world_dir=world_dir, where="t")
        assert len(ds.column_names) == n_cols and len(ds) > 0
    ds, _ = load_training_data({"world": "sft"}, trainer="sft", prompt_format="qa", base_dir=ROOT,
                               world_dir=world_dir, where="t")
    assert ds[0]["prompt"].startswith("Q: ") and ds[0]["prompt"].endswith("\nA:")


@pytest.mark.parametrize("raw, key", [
    ({"peeple": 10}, "peeple"),
    ({"people": "many"}, "world.people"),
    ({"people": True}, "world.people"),
    ({"styles": {"shouty": 1.0}}, "shouty"),
    ({"styles": {"sentence": -1}}, "world.styles.sentence"),
    ({"house_style": "formal"}, "world.house_style"),
    ({"train_buckets": ["often"]}, "world.train_buckets"),
    ({"frequencies": {"many": -2}}, "world.frequencies.many"),
    ({"qa_share": 1.5}, "world.qa_share"),
    ({"countries": 9, "cities": 4}, "world.countries"),
    ({"people": 10, "eval_per_bucket": 5}, "world.people"),
])
def test_validate_world_names_the_key(raw, key):
    with pytest.raises(UsageError, match=key.replace(".", r"\.")):
        W.validate_world(raw, "world")


def test_unknown_key_lists_valid_choices():
    with pytest.raises(UsageError, match=r"did you mean 'people'.*valid choices: .*eval_per_bucket"):
        W.validate_world({"peeple": 10}, "world")


def test_toy_recipe_validates_and_errors_name_the_recipe_key(tmp_path):
    from train.recipe import load_recipe
    recipe = load_recipe(ROOT / "recipes" / "toy.yaml")
    W.validate_world(recipe.world)
    assert recipe.prompt_format in ("chat", "qa")
    with pytest.raises(UsageError, match=r"world\.people"):
        load_recipe(ROOT / "recipes" / "toy.yaml", {"world.people": "lots"})
