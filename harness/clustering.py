"""Benchmark 4: clustering cost per question for every clusterer, and NLI pair evaluations vs N^2.

Runs on the N samples per question that the toolkit's sampling pass produced (benchmark 1). Each
clusterer is built with measure.scoring.cluster.make_clusterer and timed on `cluster_many` over all questions
(median of a few runs, after its model is loaded and warmed up; the load is timed separately).

NLI: no MNLI model can be downloaded here, so a tiny randomly initialised BERT sequence classifier
(1 layer, hidden 16, labels CONTRADICTION/NEUTRAL/ENTAILMENT, word-level tokenizer trained on these
texts) stands in for microsoft/deberta-large-mnli. Its verdicts are arbitrary, so its seconds say
nothing about a real NLI model's cost and its pair count is just one point between the two bounds
that hold for ANY model on these samples, computed with the same batched code path and a constant
oracle: everything equivalent (2(U-1) directed pairs for U distinct texts) and nothing equivalent
(U(U-1)). All of them compare with the N^2 directed pairs (N(N-1) without self-pairs) of a naive
all-pairs implementation.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from measure import (NLI_LABELS, QuestionSamples, cluster_by_entailment, dedupe, load_embedder, load_nli,
                     make_clusterer)

from harness.subject import median

CLUSTERERS = ("exact", "numeric", "jaccard", "embedding", "nli")


def build_stand_in_nli(out_dir: Path, texts: list[str], seed: int = 0) -> str:
    """A tiny random BERT MNLI-shaped classifier + word-level tokenizer trained on `texts`, saved to out_dir."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts or ["empty"], trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            model_max_length=128).save_pretrained(out_dir)
    labels = ("CONTRADICTION", "NEUTRAL", "ENTAILMENT")
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=128, num_labels=3,
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}))
    model.save_pretrained(out_dir)
    return str(out_dir)


def pair_bounds(items: list[tuple[str, list[str]]]) -> dict[str, int]:
    """Directed pairs the batched NLI clustering needs when all / none of the distinct texts are equivalent."""
    _, best = cluster_by_entailment(items, lambda triples: [NLI_LABELS[0]] * len(triples), strict=True)
    _, worst = cluster_by_entailment(items, lambda triples: [NLI_LABELS[2]] * len(triples), strict=True)
    return {"all_equivalent": best, "none_equivalent": worst}


def _time_runs(clusterer, items, repeats: int, before_each=None) -> tuple[list[float], list[list[int]]]:
    runs, ids = [], []
    for _ in range(repeats):
        if before_each is not None:
            before_each()
        started = time.perf_counter()
        ids = clusterer.cluster_many(items)
        runs.append(time.perf_counter() - started)
    return runs, ids


def benchmark_clustering(rows: list[QuestionSamples], workdir: Path, *, repeats: int = 3,
                         embedding_model: str | None = None, nli_batch_size: int = 32) -> dict[str, Any]:
    items = [(r.question.text, [s.text for s in r.samples]) for r in rows]
    n_q = len(items)
    n = max((len(t) for _, t in items), default=0)
    unique = [len(dedupe(t)[0]) for _, t in items]
    out: dict[str, Any] = {"questions": n_q, "n_samples": n, "mean_distinct_texts": statistics.fmean(unique) if unique else 0.0,
                           "clusterers": {}}
    for name in CLUSTERERS:
        load_s = 0.0
        before_each = None
        spec: Any = name
        if name == "embedding":
            started = time.perf_counter()
            load_embedder(embedding_model).encode(["warm-up"])
            load_s = time.perf_counter() - started
        if name == "nli":
            texts = [q for q, _ in items] + [s for _, t in items for s in t]
            started = time.perf_counter()
            path = build_stand_in_nli(workdir / "stand-in-nli", texts)
            nli = load_nli(path)
            load_s = time.perf_counter() - started
            spec = {"name": "nli", "model": path, "batch_size": nli_batch_size}
            before_each = nli.cache.clear   # every timed run evaluates its pairs afresh (no label-cache hits)
        clusterer = make_clusterer(spec, embedding_model=embedding_model)
        _time_runs(clusterer, items[:2], 1, before_each)   # warm-up
        if name == "nli":
            clusterer.pairs_evaluated = 0
        runs, ids = _time_runs(clusterer, items, repeats, before_each)
        seconds = median(runs)
        entry = {"seconds": seconds, "seconds_all": runs, "seconds_per_question": seconds / max(n_q, 1),
                 "load_seconds": load_s, "mean_clusters": statistics.fmean(len(set(i)) for i in ids) if ids else 0.0}
        if name == "embedding":
            entry["model"] = embedding_model or "bundled all-MiniLM-L6-v2"
        if name == "nli":
            bounds = pair_bounds(items)
            pairs = clusterer.pairs_evaluated / repeats
            entry.update(
                model=f"STAND-IN: tiny random BERT classifier built locally at {path} (no MNLI download possible); "
                      "its verdicts are arbitrary and its cost is not a real NLI model's",
                pairs_per_question=pairs / max(n_q, 1),
                pairs_per_question_all_equivalent=bounds["all_equivalent"] / max(n_q, 1),
                pairs_per_question_none_equivalent=bounds["none_equivalent"] / max(n_q, 1),
                naive_pairs_per_question=n * n, naive_pairs_without_self=n * (n - 1),
                pairs_over_n_squared=pairs / max(n_q, 1) / max(n * n, 1),
                worst_case_over_n_squared=bounds["none_equivalent"] / max(n_q, 1) / max(n * n, 1))
        out["clusterers"][name] = entry
    return out
