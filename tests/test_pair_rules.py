"""Self-generated pairs without a model: the three rules on hand-made clusters (train/pair_rules.py), the pair
rows and quality (train/self_pairs.py), the disjointness check, and the recipe keys' validation."""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml

from measure import Question, QuestionSamples, format_prompt
from measure.common.errors import UsageError
from measure.records.records import Generation
from train.pair_rules import NO_CONTRAST, NO_MODE, pick_pair, quality_pools
from train.recipe import load_recipe
from train.self_pairs import answer_quality, check_disjoint, check_recipe, make_pairs, pairs_spec

REPO = Path(__file__).resolve().parents[1]


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


def test_modal_prefers_the_largest_cluster_over_the_smallest():
    assert pick_pair("modal", [0, 0, 0, 1, 1, 2], rng=rng()) == (0, 5)
    # largest clusters tied (0 and 1): either may be chosen, the smallest other cluster (2) is rejected
    chosen = {pick_pair("modal", [0, 0, 1, 1, 2], rng=rng(s))[0] for s in range(20)}
    assert chosen == {0, 2} and {pick_pair("modal", [0, 0, 1, 1, 2], rng=rng(s))[1] for s in range(20)} == {4}
    assert pick_pair("modal", [3, 3, 3, 3], rng=rng()) == NO_CONTRAST
    # no mode: every cluster of one size, so no answer is more common than another
    assert pick_pair("modal", [0, 1, 2, 3], rng=rng()) == pick_pair("modal", [0, 0, 1, 1], rng=rng()) == NO_MODE


def test_divpo_rarest_above_the_threshold_over_most_common_below():
    clusters = [0, 0, 0, 1, 2, 2]
    quality = [-1.0, -2.0, -3.0, -1.5, -0.5, -4.0]
    # range [-4, -0.5], rho 0.5: threshold -2.25; above {0, 1, 3, 4}, below {2, 5}
    assert quality_pools(quality, False, 0.5) == ([0, 1, 3, 4], [2, 5])
    # rarest above: index 3 (cluster 1, size 1); most common below: index 2 (cluster 0, size 3)
    assert pick_pair("divpo", clusters, quality, rng=rng(), rho=0.5) == (3, 2)
    # judged quality: above = correct, below = incorrect, ambiguous (None) in neither
    assert pick_pair("divpo", [0, 0, 1, 2, 2], [1.0, 0.0, 1.0, 0.0, None], rng=rng(), judged=True) == (2, 1)
    assert pick_pair("divpo", [0, 1, 1], [0.0, 0.0, 0.0], rng=rng(), judged=True) == \
        "no answer above the quality threshold"
    assert quality_pools([-1.0, -1.0], False, 0.5) == ([0, 1], [])          # no spread: nothing is below
    # the rarest good and the most common bad answer in one cluster: no DivPO contrast
    assert pick_pair("divpo", [0, 0, 0, 1], [-1.0, -3.0, -3.0, -2.0], rng=rng(), rho=0.1) == \
        "the rarest good and the most common bad answer are one cluster"


def test_random_is_symmetric_in_cluster_size():
    """The placebo must not prefer the common answer: with clusters of 5 and 1, chosen from the big one half the
    time. Drawing "chosen" uniformly first would give 5/6; 2000 draws put 0.5 within 6 sd = 0.067."""
    clusters = [0, 0, 0, 0, 0, 1]
    picks = [pick_pair("random", clusters, rng=rng(s)) for s in range(2000)]
    assert all(clusters[c] != clusters[r] for c, r in picks)
    share = sum(clusters[c] == 0 for c, _ in picks) / len(picks)
    assert abs(share - 0.5) < 6 * math.sqrt(0.25 / len(picks))
    assert pick_pair("random", [1, 1], rng=rng()) == NO_CONTRAST


def _rows(texts_per_question, answers=()):
    return [QuestionSamples(Question(f"q{i}", f"Question {i}?", tuple(answers)), None,
                            tuple(Generation(t, (-0.5 * (j + 1),) * 2) for j, t in enumerate(texts)))
            for i, texts in enumerate(texts_per_question)]


def test_pairs_rows_keep_the_sampled_prompt_and_their_samples():
    spec = pairs_spec({"from": "base", "rule": "modal", "questions": {"name": "jsonl"}, "n": 3, "pairs": 1})
    rows = _rows([["Paris.", "Paris.", "Lyon."], ["x", "x", "x"], ["Rome.", "Rome.", "Milan."]])
    clusters = [[0, 0, 1], [0, 0, 0], [0, 0, 1]]
    shots = (("What is 2+2?", "4."),)
    pairs, samples, skipped = make_pairs(rows, clusters, [("none", [None] * 3)] * 3, spec, seed=0, prompt_format="qa",
                                         fewshot=shots)
    assert len(pairs) == 1 and pairs[0]["prompt"] == format_prompt(None, "Question 0?", "qa", shots)
    assert (pairs[0]["chosen"], pairs[0]["rejected"]) == (" Paris.\n", " Lyon.\n")
    assert (pairs[0]["chosen_cluster_size"], pairs[0]["rejected_cluster_size"]) == (2, 1)
    assert skipped == {NO_CONTRAST: 1, "beyond the pairs asked for": 1}
    assert [s.get("skipped") for s in samples] == [None, NO_CONTRAST, "beyond the pairs asked for"]
    assert samples[0]["pair"] == {"chosen": 0, "rejected": 2} and len(samples[0]["samples"]) == 3
    chat, _, _ = make_pairs(rows[:1], clusters[:1], [("none", [None] * 3)], spec, seed=0, prompt_format="chat",
                            fewshot=None)
    assert chat[0]["prompt"] == [{"role": "user", "content": "Question 0?"}]
    assert chat[0]["chosen"] == [{"role": "assistant", "content": "Paris."}]


def test_quality_is_the_judge_where_gold_answers_exist_else_the_mean_log_probability():
    spec = pairs_spec({"from": "base", "rule": "divpo", "questions": {"name": "nq_open"}})
    judged = answer_quality("nq_open", _rows([["Paris", "the city of Lyon"]], answers=("Paris",)), spec, None)
    assert judged == [("judge", [1.0, 0.0])]
    unlabelled = answer_quality("jsonl", _rows([["a", "b"]]), spec, None)
    assert unlabelled == [("logprob", [-0.5, -1.0])]                    # mean of (-0.5, -0.5) and (-1, -1)
    forced = pairs_spec({"from": "base", "rule": "divpo", "questions": {"name": "nq_open"}, "quality": "logprob"})
    assert answer_quality("nq_open", _rows([["Paris", "Lyon"]], answers=("Paris",)), forced, None)[0][0] == "logprob"


def test_prompts_must_not_be_evaluation_questions():
    evals = [("measure.benchmarks[0] (nq_open)", "nq_open", Question("nq_open-7", "who wrote hamlet"))]
    check_disjoint([Question("nq_open-8", "who wrote macbeth")], "nq_open", evals, "stages.modal.dataset.self_pairs")
    with pytest.raises(UsageError, match=r"1 prompt\(s\) are evaluation questions, e.g. prompt 'nq_open-7'.*question "
                                         r"'nq_open-7' \('who wrote hamlet'\) of measure.benchmarks\[0\] \(nq_open\)"):
        check_disjoint([Question("nq_open-7", "other text")], "nq_open", evals, "stages.modal.dataset.self_pairs")
    with pytest.raises(UsageError, match=r"prompt 'wq-1' \('Who wrote Hamlet\?'\) is question 'nq_open-7'"):
        check_disjoint([Question("wq-1", "Who wrote Hamlet?")], "webquestions", evals, "w")   # same text
    check_disjoint([Question("nq_open-7", "x")], "webquestions", evals, "w")       # an id of another benchmark


def _recipe(tmp_path: Path, **pairs) -> Path:
    raw = yaml.safe_load((REPO / "recipes" / "tiny-control.yaml").read_text())
    raw["stages"]["modal"]["dataset"]["self_pairs"].update(pairs)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("pairs, message", [
    ({"rule": "mode"}, r"self_pairs.rule: unknown pair rule 'mode'.*modal"),
    ({"from": "random"}, r"self_pairs.from: 'random' is not an earlier stage"),
    ({"clusterer": "exactly"}, r"self_pairs.clusterer: unknown clusterer 'exactly'"),
    ({"questions": {"name": "nq"}}, r"self_pairs.questions.name: unknown benchmark 'nq'"),
    ({"questions": {"name": "jsonl", "path": "nowhere.jsonl"}}, r"self_pairs.questions.path: file not found"),
    ({"n": 1}, r"self_pairs.n: 1 is out of range"),
    ({"quality": "judge"}, r"self_pairs.quality: unknown 'judge'"),
])
def test_bad_self_pairs_keys_are_named(tmp_path, pairs, message):
    with pytest.raises(UsageError, match=message):
        load_recipe(_recipe(tmp_path, **pairs))


def test_self_pairs_are_a_stage_dataset_only(tmp_path):
    raw = yaml.safe_load((REPO / "recipes" / "tiny-control.yaml").read_text())
    raw["stages"]["modal"]["dataset"]["limit"] = 3
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match=r"'self_pairs' takes no other dataset keys \(limit\)"):
        load_recipe(tmp_path / "a.yaml")
    raw["stages"]["modal"]["dataset"].pop("limit")
    raw["model"]["pretrain"] = {"dataset": dict(raw["stages"]["modal"]["dataset"])}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match=r"model.pretrain.dataset.self_pairs: self-generated pairs are a stage's "
                                         r"training \(or held-out\) pairs only"):
        load_recipe(tmp_path / "b.yaml")


def test_held_out_pairs_must_not_share_prompts_with_the_training_pairs(tmp_path):
    raw = yaml.safe_load((REPO / "recipes" / "tiny-control.yaml").read_text())
    pairs = raw["stages"]["modal"]["dataset"]["self_pairs"]
    pairs["questions"]["limit"] = 5
    raw["stages"]["modal"]["heldout"] = {"self_pairs": {**pairs, "questions": {**pairs["questions"], "offset": 5}}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(raw))
    check_recipe(load_recipe(tmp_path / "ok.yaml"))                      # prompts 5.. are not prompts 0-4
    raw["stages"]["modal"]["heldout"]["self_pairs"]["questions"]["offset"] = 4
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match=r"stages.modal.heldout.self_pairs.questions: 1 prompt\(s\) .* prompt "
                                         r"'prompt-4' .* of the training pairs of stage 'modal'"):
        check_recipe(load_recipe(tmp_path / "bad.yaml"))


def test_the_control_recipe_validates_offline_with_branches_that_differ_only_in_the_rule(shared_data, monkeypatch):
    """recipes/smollm2-control.yaml: its keys, its prompts (WebQuestions) disjoint from its evaluation questions
    (NQ-open) and from its held-out prompts, and three branches from one parent, equal but for the pair rule."""
    monkeypatch.chdir(REPO)
    recipe = load_recipe("recipes/smollm2-control.yaml")
    check_recipe(recipe)
    branches = {name: spec for name, spec in recipe.stages.items()}
    assert set(branches) == {"modal", "divpo", "random"} and {s.parent for s in branches.values()} == {"base"}
    rules = {name: spec.dataset["self_pairs"].pop("rule") for name, spec in branches.items()}
    assert rules == {"modal": "modal", "divpo": "divpo", "random": "random"}
    for field in ("dataset", "args", "lora", "mode", "prompt_format"):
        assert len({repr(getattr(s, field)) for s in branches.values()}) == 1, field
    assert recipe.measure.benchmarks[0].name == "nq_open" and recipe.measure.stop == ("\n",)


def test_the_prompts_file_is_an_input_of_the_chain(monkeypatch):
    """Inputs are sacred (train/outputs.py): the self-generated pairs' benchmark file is one of the recipe's inputs."""
    from train.outputs import recipe_inputs
    monkeypatch.chdir(REPO)
    inputs = {p.resolve() for p in recipe_inputs(load_recipe("recipes/tiny-control.yaml"))}
    assert (REPO / "tests/data/prompts.jsonl").resolve() in inputs
