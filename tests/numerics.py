"""Float tolerances derived from the arithmetic, and the near-tie rule for comparing greedy answers.

Two computations of the same logits that differ only in reduction order -- another torch thread count,
another batch shape or amount of left padding, a KV-cached step instead of a full forward, another CPU's
vector width -- round differently. The bounds below come from the arithmetic, not from one machine's output:

* float32 unit round-off u = 2**-24 ~ 6.0e-8. Summing n terms in another order changes the sum by at most
  gamma_n * sum|terms|, gamma_n = n*u/(1 - n*u) (Higham, Accuracy and Stability of Numerical Algorithms,
  2nd ed., eq. 3.5), and with probability >= 1 - 2n exp(-lam**2/2) by at most lam * sqrt(n) * u * sum|terms|
  (Higham & Mary 2019, "A new approach to probabilistic rounding error analysis", Thm 2.4). A logit is the end
  of `depth` layers of such reductions of length <= `width`; their independent errors add in quadrature, so
  logit_atol = lam * sqrt(depth * width) * u * scale, with scale the logits' magnitude and lam = 10 (the
  exceedance probability is then below 1e-18). For the tests' tiny models (<= 4 layers, reductions <= 512
  terms, |logits| <= 10, checked where a gap is measured) that is LOGIT_ATOL = 2.7e-4.
* log-softmax is 2-Lipschitz in the max-norm (|d(z_i - logsumexp z)| <= |dz_i| + max|dz|), so a token
  log-probability moves by at most logprob_atol = 2 * logit_atol.
* The entropy H = -sum p log p has dH/dz_j = -p_j (log p_j + H), so |dH| <= max|dz| * sum_j p_j |log p_j + H|
  <= 2 H max|dz| <= 2 log(V) logit_atol (entropy_atol): 3.4e-3 nats for a 500-token vocabulary.
  A bug -- a wrong position, a missing mask, a second pass over other tokens -- moves these by >= 1e-2.
* Greedy text: a greedy step picks the same token in both computations when the reference's top-2 logit gap
  exceeds 2 * logit_atol. Greedy answers are compared token by token up to the first near-tie (gap <=
  4 * logit_atol: twice that, as the teacher-forced pass that measures the gap is a third computation), and
  only that far; `comparable_steps` says how far that is (the whole answer, unless a near-tie occurs).

Same machine, same threads, same shapes: results are bit-identical, and the tests that say so compare with
`==` (seeded determinism, resume, sharding, the demo's byte-identical outputs).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import pytest
import torch

U = 2.0 ** -24
LAM = 10.0
TINY = dict(depth=4, width=512, scale=10.0)   # the tests' tiny models: <= 4 layers, reductions <= 512, |z| <= 10


def logit_atol(depth: int, width: int, scale: float) -> float:
    return LAM * math.sqrt(depth * width) * U * scale


def logprob_atol(depth: int = TINY["depth"], width: int = TINY["width"], scale: float = TINY["scale"]) -> float:
    return 2 * logit_atol(depth, width, scale)


def entropy_atol(vocab_size: int, depth: int = TINY["depth"], width: int = TINY["width"],
                 scale: float = TINY["scale"]) -> float:
    return 2 * math.log(vocab_size) * logit_atol(depth, width, scale)


LOGIT_ATOL = logit_atol(**TINY)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with n intra-op threads (another reduction split), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def spy_rows(monkeypatch) -> list[list[int]]:
    """Record the generated token ids of every row (as handed to measure.sampling.sample._cut, in row order:
    prompt-major), whichever decoder made them, for the rest of the test."""
    import measure.sampling.sample as sample
    seen: list[list[int]] = []
    real = sample._cut
    monkeypatch.setattr(sample, "_cut", lambda tok, tokens, *rest: seen.append(list(tokens)) or real(tok, tokens, *rest))
    return seen


def rows_with_tokens(monkeypatch, fn, *args, **kwargs):
    """Call measure.sampling.sample.generate-like `fn`, returning (its rows, every row's generated token ids)."""
    import measure.sampling.sample as sample
    real = sample._cut
    seen = spy_rows(monkeypatch)
    try:
        return fn(*args, **kwargs), seen
    finally:
        monkeypatch.setattr(sample, "_cut", real)


def first_near_tie(model, prompt_ids: Sequence[int], tokens: Sequence[int], atol: float = LOGIT_ATOL,
                   scale: float = TINY["scale"]) -> int | None:
    """The first step whose top-2 logit gap is <= 4 * atol in a teacher-forced pass over prompt + tokens
    (None: no near-tie, so any computation within atol of the logits picks these very tokens)."""
    if not tokens:
        return None
    seq = torch.tensor([list(prompt_ids) + list(tokens)])
    with torch.no_grad():
        logits = model(seq[:, :-1]).logits[0, len(prompt_ids) - 1:].float()
    assert logits.abs().max().item() <= scale, f"logits beyond {scale}: the tolerance derived for them does not hold"
    top = logits.topk(2, dim=-1).values
    gaps = (top[:, 0] - top[:, 1]).tolist()
    return next((i for i, g in enumerate(gaps) if g <= 4 * atol), None)


def comparable_steps(model, prompt_ids: Sequence[int], a: Sequence[int], b: Sequence[int], **bound) -> int:
    """Assert that greedy token sequences a and b (two computations of one greedy decode) agree up to the
    reference a's first near-tie, and return how many leading steps are comparable: all of them when there
    is none (then a == b exactly), else the steps up to and including the near-tie step (its statistics
    depend only on the common prefix)."""
    tie = first_near_tie(model, prompt_ids, a, **bound)
    if tie is None:
        assert list(a) == list(b)
        return len(a)
    assert list(a[:tie]) == list(b[:tie])
    return tie + 1


def tie_free_greedy(model, tokenizer, prompts: Sequence[str], **kwargs) -> list[bool]:
    """For each prompt: True when its greedy answer (measure.sampling.sample.generate, compact decoder) has no
    near-tie, so every computation within the bound produces exactly this text. For outputs that keep no
    token ids (samples.jsonl), this says which rows may be compared by text."""
    from measure.sampling.prompts import encode_prompt
    from measure.sampling.sample import generate
    with pytest.MonkeyPatch.context() as mp:
        rows, seen = rows_with_tokens(mp, generate, model, tokenizer, list(prompts), n=1, do_sample=False, **kwargs)
    return [first_near_tie(model, encode_prompt(tokenizer, p), ids[:len(row[0].token_logprobs)]) is None
            for p, ids, row in zip(prompts, seen, rows)]


def assert_same_greedy_rows(rows_a: Sequence[dict], rows_b: Sequence[dict], tie_free: Sequence[bool],
                            vocab_size: int, **bound) -> None:
    """samples.jsonl rows of two computations of one greedy decode: on the tie-free rows (tie_free_greedy),
    equal text and statistics within the bounds; rows with a near-tie are not compared (at least one row is)."""
    assert len(rows_a) == len(rows_b) == len(tie_free) and any(tie_free)
    for a, b, ok in zip(rows_a, rows_b, tie_free):
        if ok:
            ga, gb = a["greedy"], b["greedy"]
            assert ga["text"] == gb["text"]
            assert ga["token_logprobs"] == pytest.approx(gb["token_logprobs"], abs=logprob_atol(**bound))
            assert ga["token_entropies"] == pytest.approx(gb["token_entropies"], abs=entropy_atol(vocab_size, **bound))


def assert_same_greedy(model, tok, prompts, rows_a, ids_a, rows_b, ids_b) -> None:
    """Greedy rows (n=1) of two computations: tokens equal up to the first near-tie (the whole answer, and
    so the text, when there is none), statistics within the bounds up to there."""
    from measure.sampling.prompts import encode_prompt
    for prompt, (a,), (b,), ta, tb in zip(prompts, rows_a, rows_b, ids_a, ids_b):
        k = comparable_steps(model, encode_prompt(tok, prompt), tb[:len(b.token_logprobs)], ta[:len(a.token_logprobs)])
        if k == len(b.token_logprobs):
            assert a.text == b.text
        assert a.token_logprobs[:k] == pytest.approx(b.token_logprobs[:k], abs=logprob_atol())
        assert a.token_entropies[:k] == pytest.approx(b.token_entropies[:k], abs=entropy_atol(model.config.vocab_size))
