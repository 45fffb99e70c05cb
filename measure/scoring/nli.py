"""The NLI model code behind the "nli" clusterer (measure.scoring.cluster.NLIClusterer): equivalence from two
entailment labels, greedy semantic-entropy clustering batched across questions with the model as an
oracle, and the MNLI cross-encoder with its label cache.

Equivalence (entailment_equivalent): strict = both directions entail (Kuhn et al. 2023); non-strict = no
contradiction either way and not both neutral (Farquhar et al. 2024). cluster_by_entailment takes any
`classify` callable, so its logic is testable with hand-made oracles and no model.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

from measure.scoring.grouping import dedupe, default_device, ids_from_keys
from measure.common.errors import UsageError

NLI_LABELS = ("entailment", "neutral", "contradiction")


def entailment_equivalent(forward: str, backward: str, strict: bool) -> bool:
    """Equivalence from the two NLI labels (a->b, b->a), each one of NLI_LABELS."""
    if strict:
        return forward == backward == "entailment"
    return "contradiction" not in (forward, backward) and not (forward == backward == "neutral")


Classify = Callable[[list[tuple[str, str, str]]], list[str]]


def cluster_by_entailment(items: Sequence[tuple[str, Sequence[str]]], classify: Classify,
                          strict: bool) -> tuple[list[list[int]], int]:
    """Greedy semantic-entropy clustering of all questions at once; returns (ids per question, number of
    directed pairs sent to `classify`).

    `classify([(question, premise, hypothesis), ...])` returns one of NLI_LABELS per triple. Samples are
    deduplicated first (identical texts are equivalent without a model call). Step k compares every
    question's k-th unique text against that question's current leaders, both directions, in ONE classify
    call across questions, so a question with U unique texts costs at most U(U-1) <= N^2 directed pairs
    and only 2(U-1) when everything is one cluster. The result equals greedy_cluster with the same oracle.
    """
    uniq = [dedupe(list(texts)) for _, texts in items]
    leaders: list[list[int]] = [[0] if u else [] for u, _ in uniq]
    uid: list[list[int]] = [[0] if u else [] for u, _ in uniq]   # cluster id per unique text
    pairs = 0
    for k in range(1, max((len(u) for u, _ in uniq), default=0)):
        asks = [(q, k, lead) for q, (u, _) in enumerate(uniq) if k < len(u) for lead in leaders[q]]
        triples = []
        for q, a, b in asks:
            texts = uniq[q][0]
            triples += [(items[q][0], texts[a], texts[b]), (items[q][0], texts[b], texts[a])]
        labels = classify(triples) if triples else []
        if len(labels) != len(triples):
            raise ValueError(f"classify returned {len(labels)} labels for {len(triples)} pairs")
        pairs += len(triples)
        verdict = {(q, lead): entailment_equivalent(labels[2 * i], labels[2 * i + 1], strict)
                   for i, (q, _, lead) in enumerate(asks)}
        for q, (u, _) in enumerate(uniq):
            if k >= len(u):
                continue
            match = next((uid[q][lead] for lead in leaders[q] if verdict[(q, lead)]), None)
            if match is None:
                match = len(leaders[q])
                leaders[q].append(k)
            uid[q].append(match)
    return [ids_from_keys([uid[q][i] for i in index]) for q, (_, index) in enumerate(uniq)], pairs


class NLIModel:
    """An MNLI cross-encoder with a label cache shared by every clusterer using the same model."""

    def __init__(self, model_id: str):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_id)
            self.model = AutoModelForSequenceClassification.from_pretrained(model_id).to(default_device()).eval()
        except OSError as e:
            raise UsageError(f"cannot load NLI model {model_id!r}: {e}") from None
        names = {int(i): str(n).lower() for i, n in self.model.config.id2label.items()}
        self.label_of: dict[int, str] = {}
        for label, stem in zip(NLI_LABELS, ("entail", "neutral", "contradict")):
            hits = [i for i, n in names.items() if stem in n]
            if len(hits) != 1:
                raise UsageError(f"NLI model {model_id!r}: cannot find exactly one {label!r} label in "
                                 f"config.id2label {self.model.config.id2label}; an MNLI model is needed")
            self.label_of[hits[0]] = label
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # decoder classifiers find the last token by pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.cache: dict[tuple[str, str], str] = {}

    def classify(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> tuple[list[str], int]:
        """NLI label per (premise, hypothesis); returns (labels, number of pairs actually run)."""
        import torch
        todo = list(dict.fromkeys(p for p in pairs if p not in self.cache))
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            enc = self.tokenizer([p for p, _ in batch], [h for _, h in batch], padding=True,
                                 truncation=True, return_tensors="pt").to(self.model.device)
            with torch.no_grad():
                best = self.model(**enc).logits.argmax(-1).tolist()
            self.cache.update(zip(batch, (self.label_of[i] for i in best)))
        return [self.cache[p] for p in pairs], len(todo)


@functools.lru_cache(maxsize=2)
def load_nli(model_id: str) -> NLIModel:
    return NLIModel(model_id)
