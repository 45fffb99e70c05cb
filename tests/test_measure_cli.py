"""`python -m measure run|score` as users call them: a tiny local model end to end, a handmade samples file,
resume, overwrite refusal and bad input (exit 2, named error, nothing half-written)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from measure.cli import main
from measure.common.io import write_jsonl
from measure.sampling.prompts import format_prompt
from numerics import assert_same_greedy_rows, tie_free_greedy

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "tests" / "data" / "eval.jsonl"
FAST = ["n_samples=3", "max_new_tokens=6", "bootstrap=50", "clusterers=[exact,numeric,jaccard]"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "measure", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)


def test_measure_run_on_a_tiny_local_model(tiny_model_dir, tiny_model, tmp_path):
    out = tmp_path / "m"
    proc = run_cli("run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={out}", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SCR[jaccard]" in proc.stdout
    for name in ("samples.jsonl", "questions.jsonl", "report.json", "report.md", "cluster_hist.png"):
        assert (out / name).exists(), name
    assert not (out / "samples.partial.jsonl").exists()  # the resume cache is gone once sampling finished
    report = json.loads((out / "report.json").read_text())
    assert report["n_questions"] == 12 and report["n_samples"] == 36
    s = report["settings"]
    assert (s["N"], s["T"], s["max_new_tokens"]) == (3, 1.0, 6) and set(s["clusterers"]) == {"exact", "numeric", "jaccard"}
    assert s["decoder"] == "compact"
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    greedy = rows[0]["greedy"]
    assert len(greedy["token_entropies"]) == len(greedy["token_logprobs"]) > 0
    vocab = json.loads((Path(tiny_model_dir) / "config.json").read_text())["vocab_size"]
    assert all(0 <= h <= math.log(vocab) + 1e-6 for h in greedy["token_entropies"])
    questions = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert {q["id"] for q in questions} == {f"cap-{i}" for i in range(12)}
    for q in questions:  # SCR in the report is exactly the share of questions with one cluster
        assert q["n_clusters"]["exact"] == len(set(q["clusters"]["exact"]))
    assert report["scr"]["exact"] == sum(q["n_clusters"]["exact"] == 1 for q in questions) / 12
    assert report["provenance"]["versions"]["torch"] and "git_commit" in report["provenance"]
    machine = report["provenance"]["machine"]   # what bit-identity depends on (measure/common/machine.py)
    assert machine["cpu"] and machine["cores"] >= 1 and machine["torch"]["num_threads"] >= 1
    assert machine["torch"]["cpu_capability"] and machine["torch"]["blas"]
    timing = report["timing"]["seconds_per_question"]
    assert timing["greedy"] > 0 and timing["sampling"] > 0
    # re-scoring the run's samples with other clusterers keeps its sampling settings and judge
    rescored = run_cli("score", f"samples={out / 'samples.jsonl'}", f"out={tmp_path / 'rescored'}",
                       "clusterers=[jaccard@0.3]", "bootstrap=20")
    assert rescored.returncode == 0, rescored.stderr[-2000:]
    r2 = json.loads((tmp_path / "rescored" / "report.json").read_text())["settings"]
    assert (r2["N"], r2["T"], r2["max_new_tokens"], r2["judge"]["name"]) == (3, 1.0, 6, "short_qa")
    # finished reports are never overwritten without overwrite=true
    again = run_cli("run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={out}", *FAST)
    assert again.returncode == 2 and "overwrite=true" in again.stderr
    # decoder=generate (model.generate): the same greedy answers and token statistics, and the report says so;
    # judge= replaces the benchmark's own judge (here the paper's word-overlap judge instead of short_qa)
    other = tmp_path / "with_generate"
    proc = run_cli("run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={other}", *FAST,
                   "decoder=generate", "judge=truthfulqa_overlap")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s2 = json.loads((other / "report.json").read_text())["settings"]
    assert s2["decoder"] == "generate" and s2["judge"]["name"] == "truthfulqa_overlap"
    assert s2["benchmark"]["judge"] == "truthfulqa_overlap"
    # (another computation of the same greedy decode: compared within tests/numerics.py's bounds, tie-free rows)
    model, tok = tiny_model
    prompts = [format_prompt(tok, r["question"], s["prompt_format"]) for r in rows]
    tie_free = tie_free_greedy(model, tok, prompts, temperature=1.0, top_p=1.0, max_new_tokens=6, stop=(), seed=0)
    other_rows = [json.loads(line) for line in (other / "samples.jsonl").read_text().splitlines()]
    assert_same_greedy_rows(rows, other_rows, tie_free, vocab)


def _handmade_samples(path: Path) -> None:
    write_jsonl(path, [
        {"id": "q1", "question": "Capital of France?", "answers": ["Paris"],
         "greedy": {"text": "Paris", "token_entropies": [0.1, 0.3], "token_logprobs": [-0.1, -0.2]},
         "samples": ["Paris", "Paris", "Paris", "Paris"]},
        {"id": "q2", "question": "Capital of Peru?", "answers": ["Lima"],
         "greedy": {"text": "Quito", "token_entropies": [1.5, 2.5], "token_logprobs": [-1.0, -2.0]},
         "samples": ["Quito", "Lima", "Bogota", "Quito"]},
        {"id": "q3", "question": "2+2?", "answers": ["4"], "label": False,  # external label wins over the judge
         "greedy": {"text": "4", "token_entropies": [0.2], "token_logprobs": [-0.05]},
         "samples": [{"text": "4", "token_logprobs": [-0.1]}, {"text": "4", "token_logprobs": [-0.1]},
                     {"text": "four", "token_logprobs": [-2.0]}, {"text": "4", "token_logprobs": [-0.1]}]},
    ])


def test_measure_score_on_a_handmade_samples_file(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    _handmade_samples(samples)
    main(["score", f"samples={samples}", f"out={tmp_path / 'out'}", "clusterers=[exact,jaccard]", "bootstrap=20"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    questions = {q["id"]: q for q in map(json.loads, (tmp_path / "out" / "questions.jsonl").read_text().splitlines())}
    assert questions["q1"]["n_clusters"] == {"exact": 1, "jaccard": 1}
    assert questions["q2"]["n_clusters"]["exact"] == 3 and questions["q3"]["n_clusters"]["exact"] == 2
    assert report["scr"]["exact"] == pytest.approx(1 / 3)
    assert [questions[q]["label"] for q in ("q1", "q2", "q3")] == [True, False, False]
    assert questions["q3"]["judgement"] == "correct"  # the judge's view is kept next to the external label
    # discrete semantic entropy of q2: clusters {Quito x2, Lima, Bogota} -> -(.5 ln .5 + 2 * .25 ln .25)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert questions["q2"]["signals"]["semantic_entropy@exact"] == pytest.approx(expected)
    assert questions["q1"]["signals"]["greedy_entropy_mean"] == pytest.approx(0.2)
    # AUROC (positive = incorrect) by hand: incorrect {q2: 2.0, q3: 0.2} vs correct {q1: 0.2}:
    # pair (2.0 > 0.2) counts 1, the tie (0.2 = 0.2) counts 1/2 -> 1.5 / 2 pairs = 0.75
    assert report["auroc"]["greedy_entropy_mean"] == pytest.approx(0.75)
    assert "semantic_entropy_lw@exact" in report["skipped_signals"] or questions["q3"]["signals"]["semantic_entropy_lw@exact"] is not None
    assert "SCR[exact] = 0.333" in capsys.readouterr().out
    s = report["settings"]  # N is what the file holds; how it was sampled is unknown here, and says so
    assert (s["N"], s["T"], s["max_new_tokens"], s["judge"]["name"]) == (4, None, None, "short_qa")


def test_measure_score_with_the_papers_protocols(tmp_path, capsys):
    """The seed's single-linkage Jaccard (exp26) next to its leader one (exp27), and its word-overlap judge."""
    chain = ["a b c d e", "a b c d f g", "c d f g h"]   # x1~x2, x2~x3 (1/2 each), x1 vs x3 1/7
    refs = {"answers": ["The seeds pass through your digestive system"],
            "incorrect_answers": ["You grow watermelons in your stomach"]}
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, [
        {"id": "t1", "question": "Watermelon seeds?", **refs, "greedy": "The seeds pass through.", "samples": chain},
        {"id": "t2", "question": "Watermelon seeds?", **refs, "greedy": "Watermelons grow in your stomach.",
         "samples": chain[::-1]},
        {"id": "t3", "question": "Watermelon seeds?", **refs, "greedy": "Nothing happens.", "samples": chain}])
    main(["score", f"samples={samples}", f"out={tmp_path / 'out'}", "clusterers=[jaccard,jaccard-single]",
          "judge=truthfulqa_overlap", "bootstrap=20"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    questions = [json.loads(line) for line in (tmp_path / "out" / "questions.jsonl").read_text().splitlines()]
    assert [q["n_clusters"] for q in questions] == [{"jaccard": 2, "jaccard-single": 1}] * 3
    assert report["scr"] == {"jaccard": 0.0, "jaccard-single": 1.0}
    assert report["settings"]["clusterers"]["jaccard-single"]["linkage"] == "single"
    # {seeds, pass} vs {seeds, pass, digestive, system}: 1/2 -> correct; {watermelons, grow, stomach} is the
    # incorrect reference's set -> incorrect; {nothing, happens} shares nothing -> no_match -> unlabelled
    assert [q["judgement"] for q in questions] == ["correct", "incorrect", None]
    assert report["judgements"] == {"correct": 1, "incorrect": 1, "ambiguous": 0, "unlabelled": 1}
    assert report["settings"]["judge"]["name"] == "truthfulqa_overlap"


BAD_SCORE_INPUTS = {
    "malformed line": ('{"id": "a", "question": "x", "samples": ["y"]}\n{"id": "b", "question": \n', r"samples.jsonl:2: invalid JSON"),
    "empty samples list": ('{"id": "a", "question": "x", "samples": []}\n', r"samples.jsonl:1: 'samples' must be a non-empty list"),
    "missing question": ('{"id": "a", "samples": ["y"]}\n', r"samples.jsonl:1: missing required key 'question'"),
    "duplicate id": ('{"id": "a", "question": "x", "samples": ["y"]}\n{"id": "a", "question": "x", "samples": ["y"]}\n', r"duplicate question id 'a'"),
}


@pytest.mark.parametrize("case", list(BAD_SCORE_INPUTS))
def test_score_bad_samples_file(case, tmp_path, capsys):
    content, pattern = BAD_SCORE_INPUTS[case]
    (tmp_path / "samples.jsonl").write_text(content)
    with pytest.raises(SystemExit) as exc:
        main(["score", f"samples={tmp_path / 'samples.jsonl'}", f"out={tmp_path / 'out'}"])
    assert exc.value.code == 2
    import re
    assert re.search(pattern, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, pattern", [
    (["score", "samples={s}", "out={o}", "clusterers=[jacard]"], r"unknown clusterer.*jaccard"),
    (["score", "samples={s}", "out={o}", "signals=[entropy]"], r"unknown signal 'entropy'"),
    (["score", "samples={s}", "out={o}", "judge=exactmatch"], r"judge: unknown 'exactmatch'"),
    (["score", "samples={o}/missing.jsonl", "out={o}"], r"missing.jsonl: file not found"),
    (["run", "model=x", "benchmark=gsm9k", "out={o}"], r"unknown benchmark 'gsm9k'.*gsm8k"),
    (["run", "model=x", "benchmark=truthfulqa", "judge=overlap", "out={o}"],
     r"benchmarks\[0\]\.judge: unknown judge 'overlap'.*truthfulqa_overlap"),
    (["score", "samples={s}", "out={o}", "clusterers=[{{name: jaccard, linkage: complete}}]"],
     r"clusterers\[0\]\.linkage: unknown jaccard linkage 'complete'; valid choices: leader, single"),
    (["rn", "model=x"], r"unknown command 'rn'.*run"),
    (["run", "model={o}/no/such/model", "benchmark=jsonl", "benchmark_path={s}", "out={o}"], r"no/such/model': no such file or directory"),
    (["score", "samples={s}", "out={o}", "n_samples=many"], r"n_samples: expected int"),
    (["run", "model=x", "benchmark=gsm8k", "out={o}", "decoder=beam"], r"decoder: unknown 'beam'.*compact, generate"),
    (["run", "model=x", "benchmark=gsm8k", "out={o}", "prompt_format=hhh"], r"prompt_format: unknown 'hhh'.*chat, hh, qa"),
    (["run", "recipe=recipes/tiny.yaml", "stage=sft"], r"is `python -m train.measure_stage recipe=\.\.\. stage=\.\.\.`"),
])
def test_cli_bad_arguments(args, pattern, tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    _handmade_samples(samples)
    with pytest.raises(SystemExit) as exc:
        main([a.format(s=samples, o=tmp_path / "out") for a in args])
    assert exc.value.code == 2
    import re
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert not (tmp_path / "out").exists()


def test_interrupted_sampling_resumes(tiny_model_dir, tmp_path, monkeypatch):
    """A run killed after its first batch keeps that batch; the re-run samples only the rest."""
    from measure.sampling import ranks, sample
    calls: list[int] = []
    killed: list[bool] = []
    real = sample._sample_batch

    def flaky(model, tokenizer, batch, *args, **kwargs):
        calls.append(len(batch))
        if len(calls) == 2 and not killed:
            killed.append(True)
            raise KeyboardInterrupt("simulated kill")
        return real(model, tokenizer, batch, *args, **kwargs)

    monkeypatch.setattr(sample, "_sample_batch", flaky)
    args = ["run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={tmp_path}",
            "batch_size=4", *FAST]
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert (tmp_path / ranks.CACHE).exists() and not (tmp_path / "report.json").exists()
    calls.clear()
    main(args)
    assert calls == [4, 4]  # 12 questions in batches of 4: the first batch came from the cache
    first = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    monkeypatch.setattr(sample, "_sample_batch", real)
    main([*args[:4], f"out={tmp_path / 'fresh'}", *args[5:]])
    fresh = [json.loads(line) for line in (tmp_path / "fresh" / "samples.jsonl").read_text().splitlines()]
    assert first == fresh  # resuming gives exactly the uninterrupted samples


def test_a_cache_of_another_model_is_never_resumed(tmp_path):
    """The resume cache is tied to one model (<cache>.model.json); another model's rows are an error."""
    from measure.common.errors import UsageError
    from measure.records.records import RunIdentity
    from measure.sampling.sample_cache import cache_files, claim_cache, model_identity
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"one")
    cache, settings, marker = cache_files(tmp_path / "samples.partial.jsonl")
    claim_cache(cache, model_identity(str(model), None))
    cache.write_text('{"id": "a"}\n')  # a row sampled from that model
    claim_cache(cache, model_identity(str(model), None))  # same model: resumes
    (model / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(UsageError, match="made with another model"):
        claim_cache(cache, model_identity(str(model), None))
    with pytest.raises(UsageError, match="made with another model"):
        claim_cache(cache, model_identity(str(model), RunIdentity(model_key="abc")))
    assert json.loads(marker.read_text())["model"] == str(model)


def test_a_benchmarks_judge_is_a_measure_setting():
    """A recipe's (or `measure run`'s) benchmark may name its judge; unset, what a stage's report depends on
    is recorded as before the key existed, so reports measured earlier stay reusable."""
    from measure.pipeline import measured_with
    from measure.scoring.config import parse_measure_settings
    settings = parse_measure_settings({"benchmarks": ["truthfulqa", {"name": "truthfulqa", "judge": "truthfulqa_overlap"}]})
    own, overlap = settings.benchmarks
    assert own.judge is None and overlap.judge == "truthfulqa_overlap"
    assert "judge" not in measured_with(settings, own, "chat")["benchmark"]
    assert measured_with(settings, overlap, "chat")["benchmark"]["judge"] == "truthfulqa_overlap"
