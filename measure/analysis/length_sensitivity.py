"""SCR and pairwise agreement vs answer length, from one run's saved token ids (no re-sampling).

Why: SCR depends on how long answers may be (the Alignment Tax paper: 32% at 40 tokens, 10% at 100, 8% at
200), and measuring each length took a sampling run. Sampling is autoregressive, so the first k tokens of
an answer drawn with max_new_tokens=M are an answer of a max_new_tokens=k run (token for token with the
same seed and decode calls: measure.sampling.sample, "Prefixes"); one run with its token ids stored
(samples.jsonl `token_ids`) gives the curve at every k <= M.

How, per stage:
  - the prefix text of k tokens is measure.sampling.answers.answer_text(token_ids[:k]): the sampler's own
    rule (decode without special tokens, cut at EOS and before the first stop string, strip), with the
    tokenizer the run loaded (its report's model_files.loaded_from, else its model reference), the run's EOS
    ids (measure.sampling.backends.eos_token_ids) and stop strings (its stop setting + prompt_format's);
  - first, the full ids must reproduce every stored sample text exactly, else the stage has no curve and a
    note says why (another tokenizer, EOS rule or stop rule would make the prefixes someone else's answers);
  - each length's texts are re-clustered with the stage's own clusterer settings: exact, numeric, jaccard,
    and embedding (as the threshold sensitivity does, when the comparison has it); nli is not re-run (an
    NLI model pass per length) and says so. SCR = share of single-cluster questions; agreement = mean over
    questions of measure.scoring.homogeneity.pairwise_agreement (higher = more homogeneous).
At k = max_new_tokens the prefixes are the stored answers, so the curve ends at the report's SCR; a note
says so if the re-clustering there differs from questions.jsonl. Lengths: the requested ones (default
DEFAULT_LENGTHS) up to max_new_tokens, plus max_new_tokens. Samples without token ids, a run without a
recorded model or max_new_tokens, a tokenizer that does not load: the stage is skipped with the reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from measure.common.errors import UsageError
from measure.analysis.measured_run import MeasuredRun, run_samples
from measure.records.comparison import PrefixSource, ScrAtLength, SensitivityByLength
from measure.records.records import QuestionSamples
from measure.records.results import Report
from measure.sampling.answers import answer_text
from measure.scoring.cluster import Clusterer, make_clusterer
from measure.scoring.homogeneity import pairwise_agreement
from measure.scoring.metrics import scr

DEFAULT_LENGTHS = (10, 20, 40)
RECLUSTERED = ("exact", "numeric", "jaccard", "embedding")   # cheap to re-run per length (nli is not)
RULE = ("tokenizer.decode(token_ids[:k], skip_special_tokens=True), cut at EOS and before the first stop "
        "string, whitespace-stripped (measure.sampling.answers.answer_text, the sampler's rule)")


class Unavailable(Exception):
    """Why a stage (or a clusterer) has no length curve; becomes a note, never an error."""


@dataclass(frozen=True)
class PrefixRule:
    """The sampler's text rule with one run's tokenizer, EOS ids and stop strings."""
    tokenizer: Any
    eos_ids: tuple[int, ...]
    stop: tuple[str, ...]

    def text(self, ids: Sequence[int], k: int) -> str:
        return answer_text(self.tokenizer, list(ids[:k]), self.eos_ids, self.stop)[0]


def curve_lengths(max_new_tokens: int, lengths: Sequence[int] = DEFAULT_LENGTHS) -> list[int]:
    """The requested lengths a run of max_new_tokens can show (k <= max_new_tokens), and max_new_tokens."""
    return sorted({int(k) for k in lengths if 0 < k <= max_new_tokens} | {int(max_new_tokens)})


def base_name(label: str) -> str:
    """'embedding:mpnet@0.8' -> 'embedding', 'nli-nonstrict' -> 'nli'."""
    return re.match(r"[a-z_]*", label).group(0)


def prefix_rule(report: Report) -> tuple[PrefixRule, str]:
    """The run's text rule and where its tokenizer came from: the checkpoint the sampler loaded
    (model_files.loaded_from: a converted GGUF's dir, an adapter dir, a hub id), else the model as given."""
    from measure.sampling.backends import eos_token_ids, load_tokenizer
    from measure.sampling.prompts import stop_strings
    settings = report.settings
    files = settings.get("model_files")
    sources = [files.get("loaded_from") if isinstance(files, dict) else None, settings.get("model")]
    sources = list(dict.fromkeys(s for s in sources if isinstance(s, str) and s))
    if not sources:
        raise Unavailable("its report records no model to load the tokenizer from")
    failures = []
    for source in sources:
        try:   # any failure of a third-party tokenizer load means "no tokenizer here", never a crash
            tokenizer = load_tokenizer(source)
            eos = eos_token_ids(source, tokenizer)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{source!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        stop = stop_strings(settings.get("stop") or (), settings.get("prompt_format") or "")
        return PrefixRule(tokenizer, tuple(eos), tuple(stop)), source
    raise Unavailable("its tokenizer does not load (" + "; ".join(failures) + ")")


def checked_rows(stage: MeasuredRun, rule: PrefixRule, source: str) -> tuple[list[QuestionSamples], int]:
    """The stage's samples, every one with token ids whose full decode is its stored text; (rows, samples)."""
    rows = run_samples(stage)
    if rows is None:
        raise Unavailable(f"no samples.jsonl in {stage.path}")
    samples = [(qs.question.id, i, s) for qs in rows for i, s in enumerate(qs.samples)]
    missing = sum(s.token_ids is None for _, _, s in samples)
    if missing:
        raise Unavailable(f"{missing} of {len(samples)} samples in {stage.path / 'samples.jsonl'} carry no token_ids "
                          "(sampled before they were stored, or by another tool); sample again to get the curve")
    for qid, i, s in samples:
        got = rule.text(s.token_ids, len(s.token_ids))
        if got != s.text:
            raise Unavailable(f"the tokenizer of {source!r} (EOS ids {list(rule.eos_ids)}, stop {list(rule.stop)}) "
                              f"does not reproduce the stored texts (question {qid!r}, sample {i}: {got!r} vs "
                              f"{s.text!r}), so its prefixes would not be this run's answers")
    return rows, len(samples)


def stage_clusterer(stage: MeasuredRun, label: str) -> Clusterer:
    """The clusterer the run used under `label`, rebuilt as measure.pipeline.score_rows built it: its recorded
    name and threshold, the spec's own model only where the label names one, else the run's embedding model."""
    recorded = stage.report.settings.clusterers.get(label)
    if not isinstance(recorded, dict):
        if ":" in label:
            raise Unavailable(f"the report of stage {stage.label!r} records no settings for {label!r}")
        return make_clusterer(label)   # labels without a model part parse back as specs
    spec = {"name": recorded.get("name", base_name(label)),
            **{k: recorded[k] for k in ("threshold",) if k in recorded}}
    if ":" in label:
        spec["model"] = recorded.get("model")
    return make_clusterer(spec, embedding_model=stage.report.settings.embedding_model)


def length_points(rows: list[QuestionSamples], rule: PrefixRule, clusterers: dict[str, Clusterer],
                  lengths: Sequence[int]) -> dict[str, list[tuple[ScrAtLength, list[list[int]]]]]:
    """Per clusterer, per length: the point and the cluster ids it came from."""
    out: dict[str, list] = {c: [] for c in clusterers}
    for k in lengths:
        items = [(qs.question.text, [rule.text(s.token_ids, k) for s in qs.samples]) for qs in rows]
        for label, clusterer in clusterers.items():
            ids = clusterer.cluster_many(items)
            agree = [pairwise_agreement(x) for x in ids if len(x) >= 2]
            out[label].append((ScrAtLength(k=k, scr=scr([len(set(x)) for x in ids]),
                                           agreement=float(np.mean(agree)) if agree else None), ids))
    return out


def stage_curves(stage: MeasuredRun, labels: list[str], lengths: Sequence[int]
                 ) -> tuple[dict[str, list[ScrAtLength]], PrefixSource, list[str]]:
    """One stage's curves per clusterer label, how its prefixes were made, and notes."""
    if stage.report is None:
        raise Unavailable("it has no report.json (the run's model and max_new_tokens are unknown)")
    top = stage.report.settings.max_new_tokens
    if not isinstance(top, int) or top < 1:
        raise Unavailable("its report records no max_new_tokens")
    rule, source = prefix_rule(stage.report)
    rows, checked = checked_rows(stage, rule, source)
    longest = max(len(s.token_ids) for qs in rows for s in qs.samples)
    if longest > top:
        raise Unavailable(f"a sample has {longest} token ids, more than the run's max_new_tokens={top}")
    ks = curve_lengths(top, lengths)
    notes, clusterers = [], {}
    for label in labels:
        try:
            clusterers[label] = stage_clusterer(stage, label)
        except (Unavailable, UsageError) as e:
            notes.append(f"length sensitivity, stage {stage.label!r}, {label}: skipped ({e})")
    points = length_points(rows, rule, clusterers, ks)
    for label, pts in points.items():
        stored = [list(r.clusters.get(label) or []) for r in stage.records]
        if pts and pts[-1][1] != stored:
            notes.append(f"length sensitivity, stage {stage.label!r}, {label}: the re-clustering of the full "
                         "answers differs from questions.jsonl; its curve may not end at the report's SCR")
    source_record = PrefixSource(tokenizer=source, eos_ids=list(rule.eos_ids), stop=list(rule.stop), rule=RULE,
                                 max_new_tokens=top, lengths=ks, texts_checked=checked)
    return {label: [p for p, _ in pts] for label, pts in points.items()}, source_record, notes


def length_sensitivity(stages: list[MeasuredRun], clusterers: Sequence[str], lengths: Sequence[int] = DEFAULT_LENGTHS
                       ) -> tuple[dict[str, SensitivityByLength], dict[str, PrefixSource], list[str]]:
    """Curves per clusterer label (the comparison's clusterers that RECLUSTERED covers), each stage's
    PrefixSource, and notes for everything skipped."""
    labels = [c for c in clusterers if base_name(c) in RECLUSTERED]
    notes = [f"length sensitivity: {c!r} is not re-clustered per length (an NLI model pass per length)"
             for c in clusterers if c not in labels]
    curves = {c: SensitivityByLength(stages={}) for c in labels}
    sources: dict[str, PrefixSource] = {}
    for stage in stages if labels else []:
        try:
            per, sources[stage.label], stage_notes = stage_curves(stage, labels, lengths)
        except Unavailable as e:
            notes.append(f"length sensitivity skipped for stage {stage.label!r}: {e}")
            continue
        notes += stage_notes
        for label, pts in per.items():
            curves[label].stages[stage.label] = pts
    return {c: v for c, v in curves.items() if v.stages}, sources, notes
