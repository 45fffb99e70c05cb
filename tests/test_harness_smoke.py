"""`python -m harness.run` with tiny settings: the JSON it writes and the outcomes it measures
(forward passes, NLI pair counts, the demo table), plus its pure helpers on hand-computed inputs.
Timings are only checked to be positive, never against targets: they depend on the machine."""
from __future__ import annotations

import json

import pytest
import torch

from harness.clustering import pair_bounds
from harness.memory import sft_rows_from_pairs
from harness.run import main, parse_options
from harness.throughput import answer_lengths
from measure.common.errors import UsageError

pytestmark = pytest.mark.slow


# session-scoped: built once per test run (`make test` keeps each file on one worker); the tests only
# add to it, in order
@pytest.fixture(scope="session")
def smoke_report(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    demo = root / "demo"
    demo.mkdir()
    (demo / "chain_timings.json").write_text(json.dumps({"base": 1.5, "sft": 2.0, "dpo": 0.5}))
    out = root / "bench.json"
    main([f"model={tiny_model_dir}", "questions=tests/data/eval.jsonl", "only=[forward_passes,clustering,demo]",
          "limit=3", "n_samples=2", "max_new_tokens=4", f"out={out}", f"demo={demo}"])
    return json.loads(out.read_text())


def test_report_keys_and_provenance(smoke_report):
    assert {"provenance", "run", "options", "forward_passes", "clustering", "demo", "targets"} <= set(smoke_report)
    assert "throughput" not in smoke_report and "memory" not in smoke_report   # only= is honoured
    assert smoke_report["provenance"]["versions"]["torch"] and "git_commit" in smoke_report["provenance"]
    run = smoke_report["run"]
    assert run["n_questions"] == 3 and run["settings"]["n_samples"] == 2 and run["settings"]["max_new_tokens"] == 4


def test_no_extra_forward_passes(smoke_report):
    fp = smoke_report["forward_passes"]
    # 3 questions fit one decode call of the default rows budget: greedy + N rows per prompt together
    assert fp["generate_calls"] == 1
    # a random tiny model rarely emits EOS in 4 tokens: each call runs 1..4 steps; the count is what it is,
    # but every step must be exactly one forward pass, and the bare replay must do the same number
    assert 1 <= fp["decode_steps"] <= 4
    assert fp["extra_forward_calls"] == 0
    assert fp["forward_calls"] == fp["decode_steps"] == fp["floor_forward_calls"]
    assert fp["targets"]["extra_forward_calls"]["met"] is True
    assert {"part": "forward_passes", "measure": "extra_forward_calls", "value": 0, "target": "== 0",
            "met": True} in smoke_report["targets"]


def test_clustering_part(smoke_report):
    cl = smoke_report["clustering"]
    assert set(cl["clusterers"]) == {"exact", "numeric", "jaccard", "embedding", "nli"}
    assert cl["questions"] == 3 and cl["n_samples"] == 2
    for entry in cl["clusterers"].values():
        assert entry["seconds"] > 0 and entry["seconds_per_question"] == pytest.approx(entry["seconds"] / 3)
        assert 1 <= entry["mean_clusters"] <= 2
    nli = cl["clusterers"]["nli"]
    assert nli["naive_pairs_per_question"] == 4 and nli["naive_pairs_without_self"] == 2
    # N=2: a question with two distinct texts costs exactly 2 directed pairs whatever the verdict, one with
    # identical texts costs none; so all three counts equal 2 x (share of questions with distinct samples)
    distinct = cl["mean_distinct_texts"] - 1          # share of questions whose 2 samples differ
    for key in ("pairs_per_question", "pairs_per_question_all_equivalent", "pairs_per_question_none_equivalent"):
        assert nli[key] == pytest.approx(2 * distinct)
    assert "STAND-IN" in nli["model"]


def test_demo_part(smoke_report, tmp_path):
    demo = smoke_report["demo"]
    assert demo["found"] and demo["stages"] == {"base": 1.5, "sft": 2.0, "dpo": 0.5}
    assert demo["total_seconds"] == 4.0 and demo["targets"]["demo_total_seconds"]["met"] is True
    out = tmp_path / "b.json"
    report = main(["only=[demo]", f"demo={tmp_path / 'nowhere'}", f"out={out}"])
    assert report["demo"]["found"] is False and "make demo" in report["demo"]["message"]
    assert json.loads(out.read_text())["demo"]["found"] is False


def test_bad_options_are_usage_errors(capsys):
    with pytest.raises(UsageError, match="did you mean 'n_samples'"):
        parse_options(["n_sample=3"])
    with pytest.raises(UsageError, match="unknown part 'speed'"):
        parse_options(["only=[speed]"])
    with pytest.raises(UsageError, match="limit: expected an integer >= 1"):
        parse_options(["limit=0"])
    with pytest.raises(SystemExit) as exc:
        main(["repeats=two"])
    assert exc.value.code == 2 and "repeats" in capsys.readouterr().err


def test_answer_lengths_hand_computed():
    eos = [2]
    generated = torch.tensor([[5, 6, 2, 0], [5, 6, 7, 8], [5, 2, 9, 9], [5, 6, 7, 8]])
    # row 0: EOS at index 2 -> 3 tokens; row 1: runs to the end -> 4; row 2: EOS at 1 -> 2;
    # row 3: its stop string appeared after 2 tokens -> 2
    assert answer_lengths(generated, eos, {3: 2}) == [3, 4, 2, 2]


def test_pair_bounds_hand_computed():
    # U=3 distinct texts ("a", "b", "c"): all equivalent 2(U-1) = 4 pairs, none equivalent U(U-1) = 6;
    # a question whose samples are identical needs none
    assert pair_bounds([("q", ["a", "b", "a", "c"]), ("r", ["x", "x"])]) == {"all_equivalent": 4, "none_equivalent": 6}


def test_sft_rows_from_pairs():
    rows = [{"prompt": "p1", "chosen": "c1", "rejected": "r1"}, {"prompt": "p2", "chosen": "c2", "rejected": "r2"}]
    assert sft_rows_from_pairs(rows) == [{"prompt": "p1", "completion": "c1"}, {"prompt": "p1", "completion": "r1"},
                                         {"prompt": "p2", "completion": "c2"}, {"prompt": "p2", "completion": "r2"}]


def test_chain_stage_uses_its_recipe_settings_and_world(tiny_model_dir, tmp_path):
    """A model dir with a stage.json is sampled the way its chain measures it, on the chain's world questions."""
    import shutil
    stage = tmp_path / "chain" / "dpo"
    shutil.copytree(tiny_model_dir, stage)
    recipe = {"name": "t", "model": {"path": "org/base"}, "prompt_format": "chat",
              "stages": {"dpo": {"trainer": "dpo", "prompt_format": "qa"}},
              "measure": {"batch_size": 4, "stop": ["\n"], "fewshot": [], "temperature": 0.7}}
    (stage / "stage.json").write_text(json.dumps({"stage": "dpo", "recipe": recipe}))
    world = tmp_path / "chain" / "world"
    world.mkdir()
    (world / "eval.jsonl").write_text("".join(json.dumps({"id": f"w{i}", "question": f"Who is person {i}?"}) + "\n"
                                              for i in range(5)))
    main([f"model={stage}", "only=[forward_passes]", "limit=3", "n_samples=2", "max_new_tokens=3",
          f"out={tmp_path / 'b.json'}"])
    report = json.loads((tmp_path / "b.json").read_text())
    run = report["run"]
    assert run["questions"] == str(world / "eval.jsonl") and run["n_questions"] == 3
    assert run["settings"]["prompt_format"] == "qa"            # the stage's own format wins over the recipe's
    assert run["settings"]["stop"] == ["\n"] and run["settings"]["temperature"] == 0.7
    assert run["settings"]["batch_size"] == 4 and run["settings"]["fewshot"] == []
    fp = report["forward_passes"]
    # 3 questions in one batch of 4, one decode call (greedy + N together, default rows budget)
    assert fp["generate_calls"] == 1 and fp["extra_forward_calls"] == 0


def test_throughput_part_counts(tiny_model_dir, tmp_path):
    """The throughput part end to end with tiny settings: what it counts, not how fast it is."""
    report = main([f"model={tiny_model_dir}", "questions=tests/data/eval.jsonl", "only=[throughput]", "limit=2",
                   "n_samples=2", "max_new_tokens=3", "repeats=1", "loop_repeats=1", f"out={tmp_path / 'b.json'}"])
    t = report["throughput"]
    assert t["decoder"] == "compact" and t["questions"] == 2
    assert t["toolkit"]["generate_calls"] == t["floor"]["generate_calls"] == 1   # greedy + samples in one decode
    assert t["floor"]["answer_tokens"] == t["toolkit"]["answer_tokens"] > 0     # the floor is credited the same tokens
    assert t["loop"]["generate_calls"] == 2 * (1 + 2)                           # (greedy + N) calls per question
    assert 0 < t["loop"]["entropy_forward_passes"] <= 6
    for key in ("loop_over_toolkit", "toolkit_over_floor", "decoder_generate_over_toolkit"):
        assert t[key] > 0
    assert {m["measure"] for m in report["targets"]} >= {"loop_over_toolkit", "toolkit_over_floor"}


def test_forward_replay_runs_the_decoders_passes(tiny_model):
    """harness/schedule.py replays a compact decode with the same number of forward passes and the same
    batch sizes per step (the matched floor of the throughput benchmark)."""
    from harness.schedule import replay_forwards
    from measure.sampling import decode
    from measure.sampling.prompts import encode_left_padded, format_prompt
    from measure.sampling.sample import StopOnText
    model, tok = tiny_model
    ids, mask = encode_left_padded(tok, [format_prompt(tok, q, "chat") for q in ("Why?", "What is 2 plus 5?")],
                                   tok.pad_token_id)
    stop = StopOnText(tok, ("e",), ids.shape[1])
    torch.manual_seed(0)
    rows = {"decode": [], "replay": []}     # batch rows of every forward pass
    phase = ["decode"]
    hook = model.register_forward_hook(lambda m, a, kw, out: rows[phase[0]].append(kw["input_ids"].shape[0]),
                                       with_kwargs=True)
    try:
        decoded = decode.decode_compact(model, ids, mask, n=3, do_sample=True, temperature=1.0, top_p=1.0,
                                        max_new_tokens=12, eos_ids=[tok.eos_token_id], pad_id=tok.pad_token_id,
                                        have_stop=stop.have_stop)
        phase[0] = "replay"
        assert replay_forwards(model, ids, mask, 3, decoded.tokens, decoded.lengths) == decoded.tokens.shape[1]
    finally:
        hook.remove()
    assert rows["decode"] == rows["replay"] and len(set(rows["decode"][1:])) > 1   # same rows per pass; rows left


def test_real_model_options_and_greedy_agreement():
    """The real-model part's options, and the greedy-entropy comparison over identical greedy texts only."""
    from types import SimpleNamespace
    from harness.real_model import greedy_agreement, with_targets
    from harness.run import parse_options
    from measure.common.errors import UsageError
    opts = parse_options(["only=[real_model]", "peers=false", "real_limit=2"])
    assert opts["only"] == ["real_model"] and opts["peers"] == "false" and opts["real_limit"] == 2
    with pytest.raises(UsageError, match="peers: expected auto, true or false"):
        parse_options(["peers=maybe"])
    rows = [SimpleNamespace(greedy=SimpleNamespace(text="Paris", token_entropies=(1.0, 0.5))),
            SimpleNamespace(greedy=SimpleNamespace(text="Rome", token_entropies=(2.0,)))]
    peer = {"greedy_texts": [" Paris", "Milan"], "greedy_entropies": [[1.00002, 0.5, 0.1], [9.0]]}
    agreement = greedy_agreement(rows, peer)
    assert agreement["identical_greedy_texts"] == 1 and agreement["max_abs_diff"] == pytest.approx(2e-5)
    timing = lambda tps: {"tokens_per_s": tps, "cpu_seconds": 60.0 / tps, "answer_tokens": 60}  # noqa: E731
    result = with_targets({"toolkit": {**timing(30.0), "extra_forward_calls": 0}, "raw_generate": timing(20.0),
                           "loop": timing(1.0), "lm_polygraph": {**timing(10.0), "greedy_agreement": agreement}})
    assert result["cpu_ratios"]["loop_over_toolkit"] == pytest.approx(30.0)
    assert result["ratios"]["toolkit_over_polygraph"] == 3.0 and result["targets"]["loop_over_toolkit"]["met"] is True
    assert result["targets"]["toolkit_over_raw_generate"]["met"] is True   # 1.5 >= 1.3
    assert result["targets"]["greedy_entropy_max_abs_diff"]["met"] is True


def test_same_outputs_masks_the_clock_and_nothing_else(tmp_path, capsys):
    """harness.same_outputs: wall times / commits / cascade costs may differ between two runs; a result may not."""
    from harness.same_outputs import compare_dirs
    from harness.same_outputs import main as same
    for run, (seconds, commit, cost) in {"a": (1.5, "abc", 0.1), "b": (2.5, "def", 0.2)}.items():
        d = tmp_path / run / "dpo" / "measure" / "jsonl"
        (d / "cascade").mkdir(parents=True)
        pools = [{"internal_api": "openblas"}, {"internal_api": "openmp"}]   # a set: its order may vary by run
        (d / "report.json").write_text(json.dumps({"scr": {"exact": 0.25}, "timing": {"seconds_per_question": {"greedy": seconds}},
                                                   "provenance": {"git_commit": commit, "seed": 0, "machine": {
                                                       "numpy_blas": pools if run == "a" else pools[::-1]}}}))
        (d / "report.md").write_text(f'SCR 0.250\n"git_commit": "{commit}"\n')
        (d / "cascade" / "cascade.json").write_text(json.dumps({"costs": {"x": cost}, "cascade": {"accuracy": 0.7}}))
        (d / "samples.jsonl").write_text('{"id": "q1"}\n')
    result = compare_dirs(tmp_path / "a", tmp_path / "b")
    assert result["identical_bytes"] == ["dpo/measure/jsonl/samples.jsonl"] and result["differ"] == []
    assert result["identical_but_clock"] == ["dpo/measure/jsonl/report.json", "dpo/measure/jsonl/report.md"]
    assert result["identical_but_costs"] == ["dpo/measure/jsonl/cascade/cascade.json"]
    with pytest.raises(SystemExit) as same_exit:
        same([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}"])
    assert same_exit.value.code == 0
    (tmp_path / "b" / "dpo" / "measure" / "jsonl" / "report.json").write_text(json.dumps(
        {"scr": {"exact": 0.30}, "timing": {}, "provenance": {"git_commit": "def", "seed": 0}}))   # a result changed
    with pytest.raises(SystemExit) as same_exit:
        same([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}"])
    assert same_exit.value.code == 1 and "differ: dpo/measure/jsonl/report.json" in capsys.readouterr().out
