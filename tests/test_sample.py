"""measure/sampling/sample.py on the session's tiny model: token statistics, stops, seeding, forward passes, resume."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import measure.sampling.sample as sample
from measure.scoring.config import MeasureSettings
from measure.common.errors import UsageError
from measure.records.records import Question
from measure.sampling.prompts import encode_prompt, format_prompt, stop_strings
from measure.sampling.sample import count_forward_calls, generate, sample_questions, token_statistics
from numerics import (LOGIT_ATOL, assert_same_greedy, assert_same_greedy_rows, entropy_atol, logprob_atol,
                      rows_with_tokens, spy_rows, tie_free_greedy, torch_threads)

GEN = dict(temperature=1.0, top_p=1.0, max_new_tokens=8, stop=(), seed=0)


def _prompts(tok):
    return [format_prompt(tok, "What is 2 plus 5?", "chat"), format_prompt(tok, "What colour is grass?", "qa")]


# ---------------------------------------------------------------- prompts

def test_format_prompt(tiny_model):
    _, tok = tiny_model
    assert format_prompt(tok, "Why?", "chat") == "<|bos|><|user|>\nWhy?<|end|>\n<|assistant|>\n"
    assert format_prompt(tok, "Why?", "qa", fewshot=[("A?", "b."), ("C?", "d.")]) == "Q: A?\nA: b.\n\nQ: C?\nA: d.\n\nQ: Why?\nA:"
    assert format_prompt(tok, "Why?", "qa", fewshot=[]) == "Q: Why?\nA:"
    default = format_prompt(tok, "Why?", "qa")
    assert default.count("Q: ") == 4 and default.startswith("Q: What is the capital of France?\nA: Paris.\n\n")
    with pytest.raises(UsageError, match=r"unknown prompt_format 'cht'.*valid choices: chat, hh, qa"):
        format_prompt(tok, "Why?", "cht")
    assert stop_strings(["###"], "qa") == ("###", "\nQ:") and stop_strings(["###"], "chat") == ("###",)


def test_hh_format_and_its_stop(tiny_model):
    """prompt_format=hh: Anthropic HH turns, zero-shot unless shots are given (then earlier turns); the next
    human turn is always a stop, as an HH-tuned model that does not end with EOS goes on with it."""
    _, tok = tiny_model
    assert format_prompt(tok, "Why?", "hh") == "\n\nHuman: Why?\n\nAssistant:"
    assert format_prompt(tok, "Why?", "hh", fewshot=[("A?", "b.")]) == \
        "\n\nHuman: A?\n\nAssistant: b.\n\nHuman: Why?\n\nAssistant:"
    assert stop_strings([], "hh") == ("\n\nHuman:",) and stop_strings(["\n\nHuman:"], "hh") == ("\n\nHuman:",)
    assert stop_strings(["###"], "hh") == ("###", "\n\nHuman:")
    # a continuation into the next turn is cut before it, the delimiter's tokens out of the statistics
    answer, tail = tok(" Sure, ab c.")["input_ids"], tok("\n\nHuman: and then?")["input_ids"]
    assert tok(" Sure, ab c.\n\nHuman: and then?")["input_ids"] == answer + tail
    values = [float(-i) for i in range(len(answer + tail))]
    g = sample._cut(tok, answer + tail, values, values, [tok.eos_token_id], stop_strings([], "hh"))
    assert g.text == "Sure, ab c." and g.token_logprobs == tuple(values[:len(answer)])
    # only the next HUMAN turn ends an answer: "Human" inside it does not
    g = sample._cut(tok, tok(" Human: rights.")["input_ids"], values, values, [tok.eos_token_id], stop_strings([], "hh"))
    assert g.text == "Human: rights."


def test_sample_questions_uses_the_formats_stop(tiny_model, monkeypatch):
    """sample_questions in hh renders HH prompts and passes the HH stop to every decode call, in addition to
    the configured stops."""
    model, tok = tiny_model
    seen = []
    real = sample.generate
    monkeypatch.setattr(sample, "generate", lambda m, t, prompts, **kw: seen.append((prompts, kw["stop"]))
                        or real(m, t, prompts, **kw))
    settings = dataclasses.replace(SETTINGS, stop=("###",))
    rows = sample_questions(model, tok, QUESTIONS[:2], settings, "hh")
    assert [r.question.id for r in rows] == ["q0", "q1"] and seen
    assert all(stop == ("###", "\n\nHuman:") for _, stop in seen)
    assert seen[0][0][0] == "\n\nHuman: What is 1 plus 3?\n\nAssistant:"


# ---------------------------------------------------------------- token statistics

def test_token_statistics_hand_computed():
    # step 0: logits (0, ln 3) -> p = (1/4, 3/4); step 1: one -inf logit -> p = (1, 0), entropy exactly 0
    logits = [torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, float("-inf")]])]
    logprobs, entropies = token_statistics(logits, torch.tensor([[0, 0]]))
    assert logprobs[0].tolist() == pytest.approx([math.log(0.25), 0.0])
    assert entropies[0].tolist() == pytest.approx([-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), 0.0])


@pytest.mark.parametrize("decoder", ["compact", "generate"])
def test_statistics_match_a_separate_forward_pass(tiny_model, monkeypatch, decoder):
    model, tok = tiny_model
    seen = spy_rows(monkeypatch)
    prompt = _prompts(tok)[0]
    # drawn at T=0.7, top_p=0.9, yet the statistics are those of the model's own T=1, untruncated distribution
    rows = generate(model, tok, [prompt], n=3, do_sample=True, decoder=decoder,
                    **{**GEN, "temperature": 0.7, "top_p": 0.9})[0]
    prompt_ids = encode_prompt(tok, prompt)
    vocab = model.config.vocab_size
    for g, tokens in zip(rows, seen):
        steps = len(g.token_logprobs)
        assert steps == len(g.token_entropies) and 1 <= steps <= GEN["max_new_tokens"]
        seq = torch.tensor(prompt_ids + tokens[:steps])
        with torch.no_grad():
            logits = model(seq[None, :-1]).logits[0, len(prompt_ids) - 1:].float()  # one prompt: no padding
        logp = torch.log_softmax(logits, -1)
        chosen = logp.gather(-1, seq[len(prompt_ids):, None]).squeeze(-1)
        entropy = -(logp.exp() * logp).sum(-1)
        # a full forward without cache is another reduction order: tests/numerics.py's bounds
        assert list(g.token_logprobs) == pytest.approx(chosen.tolist(), abs=logprob_atol())
        assert list(g.token_entropies) == pytest.approx(entropy.tolist(), abs=entropy_atol(vocab))
        assert all(lp <= 0 for lp in g.token_logprobs)
        assert all(0 <= h <= math.log(vocab) + 1e-6 for h in g.token_entropies)


@pytest.mark.parametrize("decoder", ["compact", "generate"])
def test_forward_calls_equal_generation_steps(tiny_model, decoder):
    model, tok = tiny_model
    with count_forward_calls(model) as counter:
        rows = generate(model, tok, _prompts(tok), n=2, do_sample=True, decoder=decoder, **GEN)
    # one forward pass per decode step until the last row stops (the prefill gives step 1), no extra pass
    assert counter.count == max(len(g.token_logprobs) for row in rows for g in row)
    with count_forward_calls(model) as counter:
        greedy = generate(model, tok, _prompts(tok), n=1, do_sample=False, decoder=decoder, **GEN)
    assert counter.count == max(len(row[0].token_logprobs) for row in greedy)
    model(torch.tensor([[1, 2]]))
    assert counter.count == max(len(row[0].token_logprobs) for row in greedy)  # the hook is gone


QUESTIONS_4 = ["What is 2 plus 5?", "Who wrote Hamlet?", "Name a colour of the sky, please.", "Why?"]


@pytest.mark.parametrize("threads", [1, 2])
def test_compact_greedy_equals_model_generate(tiny_model, monkeypatch, threads):
    """The compact decoder's greedy answers and statistics are model.generate's, prompts of unequal length
    (left padding) included, however the rows leave the batch, under 1 or 2 torch threads: the same tokens up
    to the first near-tie and statistics within the bounds of tests/numerics.py."""
    model, tok = tiny_model
    prompts = [format_prompt(tok, q, fmt) for q in QUESTIONS_4 for fmt in ("chat", "qa")]
    for stop in ((), ("e",)):
        kwargs = {**GEN, "max_new_tokens": 12, "stop": stop}
        with torch_threads(threads):
            compact, c_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False,
                                              decoder="compact", **kwargs)
        reference, r_ids = rows_with_tokens(monkeypatch, generate, model, tok, prompts, n=1, do_sample=False,
                                            decoder="generate", **kwargs)
        assert_same_greedy(model, tok, prompts, compact, c_ids, reference, r_ids)


def test_compact_sampling_follows_generates_rule(tiny_model, monkeypatch):
    """The compact decoder draws from generate's distribution: softmax of the logits warped by the same
    TemperatureLogitsWarper and TopPLogitsWarper (drawn by inverse CDF, measure.sampling.decode.draw)."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper
    from measure.sampling import decode as decoding
    model, tok = tiny_model
    seen: list[torch.Tensor] = []
    real = decoding.draw
    monkeypatch.setattr(decoding, "draw", lambda probs: seen.append(probs.clone()) or real(probs))
    prompt = format_prompt(tok, QUESTIONS_4[0], "chat")
    generate(model, tok, [prompt], n=1, do_sample=True, decoder="compact",
             **{**GEN, "max_new_tokens": 2, "temperature": 0.7, "top_p": 0.9, "seed": 3})
    with torch.no_grad():
        logits = model(torch.tensor([encode_prompt(tok, prompt)])).logits[:, -1].float()
    expected = torch.softmax(TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.7)(None, logits)), -1)
    # a full-prompt forward vs the prefill's last position only: logits within LOGIT_ATOL, so probabilities at
    # T=0.7 within 2 * LOGIT_ATOL / 0.7 (|dp_i| <= p_i * 2 max|dz / T|), / 0.9 for top_p's renormalization
    assert torch.allclose(seen[0], expected, atol=2 * LOGIT_ATOL / 0.7 / 0.9)
    assert int((expected > 0).sum()) < expected.shape[1]   # top_p really cut the tail here


def test_draw_follows_the_distribution():
    """Inverse-CDF draws: frequencies follow the probabilities; a zero-probability token is never drawn."""
    from measure.sampling.decode import draw
    torch.manual_seed(0)
    probs = torch.tensor([[0.5, 0.0, 0.2, 0.3, 0.0]]).repeat(40000, 1)
    counts = torch.bincount(draw(probs), minlength=5).float() / 40000
    assert counts.tolist() == pytest.approx([0.5, 0.0, 0.2, 0.3, 0.0], abs=0.01)
    assert counts[1] == 0 and counts[4] == 0
    assert draw(torch.tensor([[0.0, 0.0, 1.0]])).tolist() == [2]


def test_compact_prefills_once_and_drops_finished_rows(tiny_model, monkeypatch):
    model, tok = tiny_model
    seen = spy_rows(monkeypatch)  # each row's tokens up to its end (EOS or the step its stop string appeared)
    batch_rows: list[int] = []
    handle = model.register_forward_hook(lambda module, args, kwargs, out: batch_rows.append(kwargs["input_ids"].shape[0]),
                                         with_kwargs=True)
    try:
        generate(model, tok, _prompts(tok), n=4, do_sample=True, decoder="compact",
                 **{**GEN, "max_new_tokens": 16, "stop": ("e",)})
    finally:
        handle.remove()
    lengths = sorted(len(tokens) for tokens in seen)
    assert batch_rows[0] == 2  # the 2 prompts are prefilled once each, not 4 times
    # before step t+1 the batch holds exactly the rows still generating (8 rows of 2 x 4 samples)
    assert batch_rows[1:] == [sum(n > t for n in lengths) for t in range(1, lengths[-1])]
    assert lengths[0] < lengths[-1], "rows should end at different steps here"


def test_cache_without_row_selection_asks_for_the_generate_decoder(tiny_model):
    from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer, LinearAttentionLayer
    from measure.sampling.decode import _check_cache
    model, _ = tiny_model
    cache = DynamicCache()
    _check_cache(cache, model)  # full-attention layers can drop rows
    cache.layers = [LinearAttentionLayer()]
    with pytest.raises(UsageError, match=r"LinearAttentionLayer.*decoder=generate.*valid choices: compact, generate"):
        _check_cache(cache, model)

    class CompressedSlidingLayer(DynamicSlidingWindowLayer):   # may keep more per-row state than keys/values
        pass

    cache.layers = [DynamicSlidingWindowLayer(sliding_window=4), CompressedSlidingLayer(sliding_window=4)]
    with pytest.raises(UsageError, match=r"CompressedSlidingLayer"):
        _check_cache(cache, model)
    cache.layers = [DynamicSlidingWindowLayer(sliding_window=4)]
    _check_cache(cache, model)
    with pytest.raises(UsageError, match="unknown decoder 'compct'"):
        generate(model, _, ["x"], n=1, do_sample=False, decoder="compct", **GEN)


def test_seeded_determinism(tiny_model):
    model, tok = tiny_model
    a = generate(model, tok, _prompts(tok), n=3, do_sample=True, **GEN)
    b = generate(model, tok, _prompts(tok), n=3, do_sample=True, **GEN)
    c = generate(model, tok, _prompts(tok), n=3, do_sample=True, **{**GEN, "seed": 1})
    assert a == b
    assert [g.text for row in a for g in row] != [g.text for row in c for g in row]
    assert len(a) == 2 and all(len(row) == 3 for row in a)
    greedy = generate(model, tok, _prompts(tok), n=1, do_sample=False, **GEN)
    assert greedy == generate(model, tok, _prompts(tok), n=1, do_sample=False, **{**GEN, "seed": 5})
    with pytest.raises(ValueError, match="n=1"):
        generate(model, tok, _prompts(tok), n=2, do_sample=False, **GEN)


def test_stop_string_cuts_text_and_tokens(tiny_model):
    model, tok = tiny_model
    prompt = _prompts(tok)[:1]
    full = generate(model, tok, prompt, n=1, do_sample=True, **GEN)[0][0]
    assert len(full.text) >= 4, full.text
    stop = full.text[2:4]  # same seed: the stopped run is the same run up to the stop string
    cut = generate(model, tok, prompt, n=1, do_sample=True, **{**GEN, "stop": (stop,)})[0][0]
    assert cut.text == full.text[:full.text.find(stop)].strip()
    k = len(cut.token_logprobs)
    assert 1 <= k < len(full.token_logprobs) and len(cut.token_entropies) == k
    assert cut.token_logprobs == full.token_logprobs[:k] and cut.token_entropies == full.token_entropies[:k]


def test_cut_hand_built_rows(tiny_model):
    _, tok = tiny_model
    eos, pad = tok.eos_token_id, tok.pad_token_id
    answer = tok("ab c")["input_ids"]
    tail = tok("\nQ: next")["input_ids"]
    assert tok(("ab c\nQ: next"))["input_ids"] == answer + tail  # the byte-level pre-tokenizer splits at "\n"
    tokens = answer + tail
    values = [float(-i) for i in range(len(tokens))]
    g = sample._cut(tok, tokens, values, values, [eos], ["\nQ:"])
    assert g.text == "ab c" and g.token_logprobs == tuple(values[:len(answer)])
    # EOS: its step is kept, the padding after it is not, and it is not in the text
    tokens = answer + [eos, pad, pad]
    values = [float(-i) for i in range(len(tokens))]
    g = sample._cut(tok, tokens, values, values, [eos], [])
    assert g.text == "ab c" and g.token_entropies == tuple(values[:len(answer) + 1])


# ---------------------------------------------------------------- sample_questions + cache

QUESTIONS = [Question(f"q{i}", text) for i, text in enumerate(
    ["What is 1 plus 3?", "Who wrote Hamlet?", "What colour is the sky?", "What do bees make?"])]
SETTINGS = MeasureSettings(n_samples=3, max_new_tokens=6, batch_size=2, seed=7)


def _spy_generate(monkeypatch):
    calls = []
    real = sample.generate

    def spy(model, tokenizer, prompts, **kwargs):
        calls.append((list(prompts), kwargs["do_sample"]))
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(sample, "generate", spy)
    return calls


def test_sample_questions_resumes_from_cache(tiny_model, tmp_path, monkeypatch):
    model, tok = tiny_model
    cache = tmp_path / "cache.jsonl"
    first = sample_questions(model, tok, QUESTIONS, SETTINGS, "qa", cache_path=cache)
    assert [r.question for r in first] == QUESTIONS
    assert all(r.greedy is not None and len(r.samples) == 3 for r in first)
    lines = cache.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["q0", "q1", "q2", "q3"]

    # interrupted while writing the third row: two complete rows and a torn line
    cache.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    calls = _spy_generate(monkeypatch)
    resumed = sample_questions(model, tok, QUESTIONS, SETTINGS, "qa", cache_path=cache)
    prompted = {p for prompts, _ in calls for p in prompts}
    expected = {format_prompt(tok, q.text, "qa") for q in QUESTIONS[2:]}
    assert prompted == expected  # q0, q1 came from the cache, not from the model
    assert sum(len(p) for p, _ in calls) == 2   # greedy + samples of q2, q3 in one call each batch
    assert resumed == first  # fixed batches and per-batch seeds: identical to the uninterrupted run
    assert [json.loads(line)["id"] for line in cache.read_text().splitlines()] == ["q0", "q1", "q2", "q3"]

    calls.clear()  # everything cached now: no generation at all, same rows in the caller's order
    again = sample_questions(model, tok, QUESTIONS[::-1], SETTINGS, "qa", cache_path=cache)
    assert calls == [] and again == first[::-1]


def test_sample_questions_batching_and_no_cache(tiny_model, monkeypatch):
    model, tok = tiny_model
    calls = _spy_generate(monkeypatch)
    settings = MeasureSettings(n_samples=2, max_new_tokens=4, batch_size=4, seed=0)
    rows = sample_questions(model, tok, QUESTIONS[:3], settings, "chat")
    assert [r.question.id for r in rows] == ["q0", "q1", "q2"] and all(len(r.samples) == 2 for r in rows)
    # the default rows budget (176 on CPU) holds the batch: one call, greedy + 2 samples per prompt
    assert [(len(p), s) for p, s in calls] == [(3, True)]
    calls.clear()   # a rows budget of 7 -> 7 // 3 = 2 prompts (6 rows) per call; the batch of 4 stays one unit
    small = sample_questions(model, tok, QUESTIONS[:3], dataclasses.replace(settings, rows_per_call=7), "chat")
    assert [(len(p), s) for p, s in calls] == [(2, True), (1, True)]
    # other calls (left padding) move only the last float bits of the greedy answers: tests/numerics.py
    prompts = [format_prompt(tok, q.text, "chat") for q in QUESTIONS[:3]]
    tie_free = tie_free_greedy(model, tok, prompts, temperature=1.0, top_p=1.0, max_new_tokens=4, stop=(), seed=0)
    as_rows = lambda rs: [{"greedy": dataclasses.asdict(r.greedy)} for r in rs]   # noqa: E731
    assert_same_greedy_rows(as_rows(small), as_rows(rows), tie_free, model.config.vocab_size)
    calls.clear()   # decoder=generate: a greedy call, then a sampling call of N rows per prompt (7 // 2 = 3)
    sample_questions(model, tok, QUESTIONS[:3], dataclasses.replace(settings, rows_per_call=7, decoder="generate"),
                     "chat")
    assert [(len(p), s) for p, s in calls] == [(3, False), (3, True)]
    with pytest.raises(UsageError, match="duplicate question ids: q0"):
        sample_questions(model, tok, [QUESTIONS[0], QUESTIONS[0]], settings, "chat")


def test_stale_or_corrupt_cache_is_an_error(tiny_model, tmp_path):
    model, tok = tiny_model
    cache = tmp_path / "cache.jsonl"
    sample_questions(model, tok, QUESTIONS[:2], SETTINGS, "qa", cache_path=cache)
    other = MeasureSettings(n_samples=3, max_new_tokens=6, batch_size=2, seed=7, temperature=0.5)
    with pytest.raises(UsageError, match=r"other settings \(temperature: 1.0 -> 0.5\)"):
        sample_questions(model, tok, QUESTIONS[:2], other, "qa", cache_path=cache)
    with pytest.raises(UsageError, match="does not match this run"):
        sample_questions(model, tok, [Question("q0", "A different question?")], SETTINGS, "qa", cache_path=cache)
    lines = cache.read_text().splitlines()
    cache.write_text("{not json\n" + lines[1] + "\n")
    with pytest.raises(UsageError, match=r"cache.jsonl:1: corrupt line"):
        sample_questions(model, tok, QUESTIONS[:2], SETTINGS, "qa", cache_path=cache)


def test_decode_plan_rows_budget(monkeypatch):
    """rows_per_call sets prompts per decode call (rows // (greedy + N)); batch_size stays the resume/shard
    unit; auto: 176 rows on CPU, from total GPU memory and the model's KV cache size on CUDA."""
    from types import SimpleNamespace
    from measure.sampling.batching import CPU_ROWS, decode_plan
    from measure.scoring.config import parse_measure_settings
    cpu_model = SimpleNamespace(device=torch.device("cpu"))
    plan = decode_plan(MeasureSettings(n_samples=10), cpu_model, 11)
    assert (plan.rows_per_call, plan.prompts_per_call, plan.batch_size, plan.source) == (CPU_ROWS, 16, 16, "cpu default")
    plan = decode_plan(parse_measure_settings({"rows_per_call": 30, "batch_size": 160}), cpu_model, 11)
    assert (plan.rows_per_call, plan.prompts_per_call, plan.batch_size) == (30, 2, 160)
    assert decode_plan(MeasureSettings(rows_per_call=5), cpu_model, 11).prompts_per_call == 1
    with pytest.raises(UsageError, match="rows_per_call: must be >= 1"):
        parse_measure_settings({"rows_per_call": 0})
    config = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576,
                             vocab_size=49152)
    gpu_model = SimpleNamespace(device=torch.device("cuda", 0), config=config,
                                parameters=lambda: [torch.zeros(1000, dtype=torch.bfloat16)])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * 2**30))
    plan = decode_plan(MeasureSettings(n_samples=10, max_new_tokens=40), gpu_model, 11)
    per_row = 2 * 30 * 3 * 64 * 2 * (256 + 40) + 16 * 49152
    assert plan.rows_per_call == min(4096, (40 * 2**30 - 2000) // per_row) and plan.source.startswith("cuda")
