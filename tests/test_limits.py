"""Issue 23, items 3-5: bounded reads and sizes, no meaningless number, and named errors for the last
tracebacks -- through the real CLIs where a user meets them: exit 2, the message naming the file/key/limit,
and nothing changed on disk (tests/conftest.py tree_contents)."""
from __future__ import annotations

import gzip
import json
import math
import os
import re
from pathlib import Path

import pytest
import yaml

from measure.cli import main as measure_main
from measure.common.errors import UsageError
from measure.common.io import write_jsonl
from measure.data.benchmarks import load_benchmark
from measure.data.text import answer_number, numbers, parse_number
from measure.records.records import Question
from measure.scoring.config import BenchmarkSpec
from measure.scoring.correctness import make_judge
from measure.scoring.signals import ALL_PAIRS_UP_TO, SAMPLED_PAIRS, mean_pairwise_dissimilarity, sample_pairs
from train import chain

from test_bad_inputs import tiny_recipe
from test_outputs import refused, samples_file

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "tests" / "data" / "eval.jsonl"


# ---------------------------------------------------------------- bounded reads

@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_special_files_are_refused_before_a_byte_is_read(tmp_path, capsys):
    refused(measure_main, ["score", "samples=/dev/zero", f"out={tmp_path / 'out'}"], tmp_path, capsys,
            r"/dev/zero: not a regular file \(a character device\)")
    refused(chain.main, ["recipe=/dev/zero"], tmp_path, capsys, r"/dev/zero: not a regular file")
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)   # a reader of a FIFO without a writer would wait forever
    refused(measure_main, ["score", f"samples={fifo}", f"out={tmp_path / 'out'}"], tmp_path, capsys,
            r"pipe.jsonl: not a regular file \(a FIFO")


def test_line_and_size_limits_are_named_with_how_to_raise_them(tmp_path, capsys, monkeypatch):
    given = samples_file(tmp_path / "in" / "samples.jsonl")
    with open(given, "a") as f:   # a 2 MB line on line 4
        f.write(json.dumps({"id": "big", "question": "x" * (2 << 20), "samples": ["a", "b"]}) + "\n")
    monkeypatch.setenv("ALIGNMENT_TAX_MAX_LINE_MB", "1")
    refused(measure_main, ["score", f"samples={given}", f"out={tmp_path / 'out'}"], tmp_path, capsys,
            r"samples.jsonl: line 4 is over the limit of 1 MB on one line of a JSONL file.*ALIGNMENT_TAX_MAX_LINE_MB=<MB>")
    monkeypatch.setenv("ALIGNMENT_TAX_MAX_LINE_MB", "4")
    monkeypatch.setenv("ALIGNMENT_TAX_MAX_FILE_MB", "1")
    refused(measure_main, ["score", f"samples={given}", f"out={tmp_path / 'out'}"], tmp_path, capsys,
            r"samples.jsonl: its size, 2 MB, is over the limit of 1 MB.*ALIGNMENT_TAX_MAX_FILE_MB=<MB>")
    recipe = tiny_recipe(tmp_path, lambda text: text + "#" + "x" * (2 << 20) + "\n")
    monkeypatch.setenv("ALIGNMENT_TAX_MAX_YAML_MB", "1")
    refused(chain.main, [f"recipe={recipe}"], tmp_path, capsys, r"recipe.yaml: .*over the limit of 1 MB on the size of a YAML recipe")


def test_a_gzip_bomb_stops_at_the_limit(tmp_path, capsys, monkeypatch):
    bomb = tmp_path / "bench.jsonl.gz"
    with gzip.open(bomb, "wb") as f:   # 3 MB of zeros, a few KB on disk: one endless line once decompressed
        f.write(b"0" * (3 << 20))
    monkeypatch.setenv("ALIGNMENT_TAX_MAX_LINE_MB", "1")
    with pytest.raises(UsageError, match=r"bench.jsonl.gz: line 1 is over the limit of 1 MB"):
        load_benchmark(BenchmarkSpec("jsonl", str(bomb)))


def test_samples_per_question_are_bounded(tmp_path, capsys):
    out = f"out={tmp_path / 'out'}"
    refused(measure_main, ["run", "model=x", "benchmark=jsonl", f"benchmark_path={EVAL}", out, "n_samples=1000000"],
            tmp_path, capsys, r"run.n_samples: 1000000 is over max_samples=1000 .*pass max_samples=1000000 too")
    big = tmp_path / "big.jsonl"
    write_jsonl(big, [{"id": "a", "question": "?", "samples": ["y"] * 1001}])
    refused(measure_main, ["score", f"samples={big}", out], tmp_path, capsys,
            r"big.jsonl:1: question 'a' has 1001 samples, over max_samples=1000.*pass max_samples=1001")
    refused(measure_main, ["score", f"samples={big}", out, "max_samples=1"], tmp_path, capsys,
            r"score.max_samples: must be >= 2")


def test_decode_memory_is_estimated_before_the_prefill(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """n_samples x rows against the device's memory (here a 64 MB 'machine'): refused after the model loads,
    before any row is decoded or any output written."""
    from measure.sampling import batching, sample
    monkeypatch.setattr(batching, "device_memory", lambda model: (64 << 20, "this test's RAM"))
    monkeypatch.setattr(sample, "_sample_batch", lambda *a, **k: pytest.fail("sampled despite the estimate"))
    err = refused(measure_main, ["run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={EVAL}",
                                 f"out={tmp_path / 'out'}", "n_samples=5000", "max_samples=5000", "max_new_tokens=8"],
                  tmp_path, capsys, r"n_samples=5000: one decode call would hold 5001 rows \(1 prompt\(s\) x 5001 answers\)",
                  r"more than the 0\.\d GB this test's RAM has besides the weights; lower n_samples")
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    per_row = batching.row_bytes(model, 8)
    assert f"({per_row} bytes per row" in err and per_row * 5001 > (64 << 20) - sum(p.numel() * p.element_size()
                                                                                        for p in model.parameters())


def test_decode_memory_on_a_gpu_counts_its_total_memory_less_the_weights(monkeypatch):
    """The CUDA branch without a GPU (the shapes of SmolLM2-135M on an 80 GB card, as in test_sample.py)."""
    import torch
    from types import SimpleNamespace
    from measure.sampling.batching import decode_plan
    from measure.scoring.config import parse_measure_settings
    config = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576,
                             vocab_size=49152)
    gpu = SimpleNamespace(device=torch.device("cuda", 0), config=config,
                          parameters=lambda: [torch.zeros(1000, dtype=torch.bfloat16)])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * 2**30))
    per_row = 2 * 30 * 3 * 64 * 2 * (256 + 40) + 16 * 49152   # KV cache of 296 tokens + 4 float32 vocab rows
    fits = (80 * 2**30 - 2000) // per_row - 1                 # answers per prompt that still fit in one call
    settings = lambda n: parse_measure_settings({"n_samples": n, "max_samples": 10**6, "max_new_tokens": 40})  # noqa: E731
    assert decode_plan(settings(fits - 1), gpu, fits).prompts_per_call == 1
    with pytest.raises(UsageError, match=rf"n_samples={fits + 1}: one decode call would hold {fits + 2} rows.*"
                                         r"than the 80\.0 GB the GPU \(cuda:0\) has besides the weights"):
        decode_plan(settings(fits + 1), gpu, fits + 2)


def test_lexical_dissimilarity_is_bounded_and_says_how(tmp_path):
    assert sum(1 for _ in sample_pairs(ALL_PAIRS_UP_TO)) == ALL_PAIRS_UP_TO * (ALL_PAIRS_UP_TO - 1) // 2
    pairs = list(sample_pairs(10**6))   # a million samples: SAMPLED_PAIRS pairs, none of a sample with itself
    assert len(pairs) == SAMPLED_PAIRS and all(i != j for i, j in pairs)
    # 300 samples in two groups (180 'a b c', 120 'x y z'): all-pairs similarity is the share of same-group pairs
    texts = ["a b c"] * 180 + ["x y z"] * 120
    exact = (180 * 179 + 120 * 119) / (300 * 299)
    got = 1 - mean_pairwise_dissimilarity(texts)
    drawn = [texts[i] == texts[j] for i, j in sample_pairs(300)]   # the same pairs, counted independently
    assert got == pytest.approx(sum(drawn) / len(drawn), abs=1e-12)
    assert abs(got - exact) < 5 * math.sqrt(exact * (1 - exact) / SAMPLED_PAIRS)   # 5 standard errors
    given = samples_file(tmp_path / "in" / "samples.jsonl")
    measure_main(["score", f"samples={given}", f"out={tmp_path / 'out'}", "clusterers=[exact]", "bootstrap=0"])
    rules = json.loads((tmp_path / "out" / "report.json").read_text())["settings"]["signal_rules"]
    assert f"over {SAMPLED_PAIRS} pairs" in rules["lexical_dissimilarity"]
    assert "signal_rules" in (tmp_path / "out" / "report.md").read_text()


# ---------------------------------------------------------------- no meaningless number

def test_one_sample_per_question_never_prints_an_scr(tmp_path, capsys):
    one = tmp_path / "one.jsonl"
    write_jsonl(one, [{"id": "a", "question": "?", "answers": ["y"], "samples": ["y", "y"]},
                      {"id": "b", "question": "?", "answers": ["y"], "samples": ["y"]}])
    refused(measure_main, ["score", f"samples={one}", f"out={tmp_path / 'out'}"], tmp_path, capsys,
            r"one.jsonl:2: question 'b' has 1 sample; SCR and every cluster measure need at least 2")
    refused(measure_main, ["run", "model=x", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={tmp_path / 'out'}",
                           "n_samples=1"], tmp_path, capsys, r"run.n_samples: 1 sample per question is always one cluster")
    recipe = tiny_recipe(tmp_path)
    refused(chain.main, [f"recipe={recipe}", "measure.n_samples=1"], tmp_path, capsys,
            r"measure.n_samples: 1 sample per question is always one cluster")


def test_compare_refuses_runs_scored_from_one_sample(tmp_path, capsys):
    from test_compare import write_stage
    a, b = write_stage(tmp_path / "a", 5, n_samples=1), write_stage(tmp_path / "b", 5, n_samples=1)
    refused(measure_main, ["compare", f"runs=[{a},{b}]", f"out={tmp_path / 'cmp'}"], tmp_path, capsys,
            re.escape(f"{a / 'questions.jsonl'}: question 'q0' has 1 sample(s) under 'exact'; SCR needs at least 2"))


def test_bootstrap_below_zero_is_refused_and_zero_claims_no_interval(tmp_path, capsys):
    given = samples_file(tmp_path / "in" / "samples.jsonl")
    refused(measure_main, ["score", f"samples={given}", f"out={tmp_path / 'out'}", "bootstrap=-1"], tmp_path, capsys,
            r"score.bootstrap: must be >= 0, got -1")
    measure_main(["score", f"samples={given}", f"out={tmp_path / 'out'}", "bootstrap=0", "clusterers=[exact]"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all(v is None for v in report["auroc_ci"].values()) and report["auroc_ci_method"] == "none (bootstrap=0)"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| AUROC [no interval: bootstrap=0] |" in md
    assert "percentile bootstrap" not in md.split("## Settings")[0]   # no table claims a bootstrap CI


def test_fraction_golds_and_answers_read_by_one_rule(tmp_path):
    bench = tmp_path / "gsm8k.jsonl"
    write_jsonl(bench, [{"question": "Half of 3/2?", "answer": "3/2 / 2 = 3/4\n#### 3/4"},
                        {"question": "How many?", "answer": "#### 1/2/2024"}])
    qs = load_benchmark(BenchmarkSpec("gsm8k", str(bench)))
    assert [q.answers for q in qs] == [("0.75",), ("1",)]   # a date is three numbers; the first after #### counts
    assert numbers("3/4 and -1/2") == [0.75, -0.5] and numbers("3/0") == [3.0, 0.0]
    assert answer_number("so it is 3/4") == parse_number("3/4") == 0.75
    judge = make_judge("gsm8k")
    gold = Question("q", "?", qs[0].answers)
    assert judge.judge_many([gold] * 4, ["3/4", "The answer is 0.75.", "#### 3/4", "3"]) == \
        ["correct", "correct", "correct", "incorrect"]


# ---------------------------------------------------------------- named errors for the last tracebacks

def test_a_truncated_gzip_benchmark_is_named(tiny_model_dir, tmp_path, capsys):
    bench = tmp_path / "bench.jsonl.gz"
    rows = "".join(json.dumps({"id": f"q{i}", "question": f"What is {i} times {i * 7 % 13}?"}) + "\n" for i in range(400))
    bench.write_bytes(gzip.compress(rows.encode())[:-200])   # cut: no gzip trailer, the last block torn
    refused(measure_main, ["run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={bench}",
                           f"out={tmp_path / 'out'}"], tmp_path, capsys,
            r"bench.jsonl.gz: truncated or corrupt gzip data after line \d+")


def test_a_checkpoint_without_weights_is_named(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    refused(measure_main, ["run", f"model={model}", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={tmp_path / 'o'}"],
            tmp_path, capsys, rf"model={re.escape(str(model))}: the directory has config.json but no weights and no "
                              "tokenizer files")
    recipe = tiny_recipe(tmp_path)
    raw = yaml.safe_load(recipe.read_text())
    raw["model"] = {"path": str(model)}
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    refused(chain.main, [f"recipe={recipe}"], tmp_path, capsys, r"model.path=.*config.json but no weights")


def test_cascade_on_a_run_without_labels_names_the_run_and_the_cause(tmp_path, capsys):
    unlabelled = tmp_path / "s.jsonl"
    write_jsonl(unlabelled, [{"id": f"q{i}", "question": "?", "samples": ["a", "b"], "greedy": {"text": "a"}}
                             for i in range(6)])
    measure_main(["score", f"samples={unlabelled}", f"out={tmp_path / 'run'}", "clusterers=[exact]", "bootstrap=0"])
    refused(measure_main, ["cascade", str(tmp_path / "run"), "signals=[n_clusters@exact]"], tmp_path, capsys,
            re.escape(f"cascade on {tmp_path / 'run'}: no usable question: none of its 6 questions is labelled"))
