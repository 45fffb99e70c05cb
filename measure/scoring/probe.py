"""The numbers one measurement of a probe set yields, flat: what a training curve plots and a logger takes.

    measures, intervals = probe_measures(records, ["exact", "embedding"])
    measures["scr/exact"], measures["pairwise_agreement/embedding"], measures["greedy_entropy_mean"]
    intervals["scr/exact"] == [lo, hi]      # Clopper-Pearson, as in report.json

Keys are "<metric>" or "<metric>/<clusterer label>". What goes in, from the same per-question records a
report is written from (measure.pipeline.score_rows):
  - every rate or mean of the report's metrics block (measure.scoring.metrics.summarize): a float, or a
    float per clusterer (scr, mean_clusters, alignment_tax_index, accuracy, and whatever per-clusterer
    measure the block gains later), and the two counts accuracy stands on (n_labelled, n_ambiguous: an
    ambiguous judgement is neither correct nor incorrect). Other counts and the per-signal tables (AUROC and
    friends: noise on a few dozen questions) stay out; the bootstrap is off (n_boot=0), the exact intervals stay;
  - "<metric>_ci" intervals of those metrics, under the metric's key;
  - the means over questions of the continuous homogeneity measures the records carry
    (measure.scoring.homogeneity): pairwise_agreement per clusterer (the share of sample pairs put in one
    cluster; computed from the clusters when the records lack it), mean_cosine, inverse_vendi, ead_repetition;
  - the mean over questions of every uncertainty signal (greedy_entropy_mean is the greedy answer's mean
    full-vocabulary token entropy; a per-clusterer signal "semantic_entropy@exact" becomes
    "semantic_entropy/exact"), except n_clusters (= mean_clusters). None where no question has a value.
Stop rules over these keys ({"scr/exact": ">= 0.5"}: parse_stop_rules, met_rule) are what
measure.live's HomogenizationCallback(stop_when=...) ends a collapsing run with.
Orientation is each metric's own: homogeneity measures higher = more homogeneous, signals higher = more
uncertain.
"""
from __future__ import annotations

import operator
import re
from typing import Any, Mapping, Sequence

from measure.common.errors import UsageError
from measure.records.records import QuestionRecord
from measure.scoring.homogeneity import pairwise_agreement
from measure.scoring.metrics import finite_mean, signal_names, summarize
from measure.scoring.signals import SignalKey

SKIPPED_SIGNALS = ("n_clusters",)   # its mean is mean_clusters
COUNTED = ("n_labelled", "n_ambiguous")   # the counts accuracy stands on (ambiguous answers are not "correct")
STOP_OPS = {">=": operator.ge, "<=": operator.le}
_RULE = re.compile(r"^\s*(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def _is_rate(value: Any) -> bool:
    return isinstance(value, float) or value is None


def _interval(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


def key(metric: str, clusterer: str | None = None) -> str:
    return metric if clusterer is None else f"{metric}/{clusterer}"


def homogeneity_key(name: str) -> str:
    """A continuous measure's probe key from its report/questions name: "agreement@exact" ->
    "pairwise_agreement/exact", "mean_cosine" -> "mean_cosine"."""
    measure, _, lb = name.partition("@")
    return key("pairwise_agreement" if measure == "agreement" else measure, lb or None)


def probe_measures(records: Sequence[QuestionRecord], clusterer_labels: Sequence[str], *,
                   seed: int = 0) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    """(measures, intervals) of one probe measurement (see the module docstring)."""
    labels = list(clusterer_labels)
    metrics = summarize(list(records), labels, n_boot=0, seed=seed)
    measures: dict[str, float | None] = {}
    intervals: dict[str, list[float]] = {}
    for name, value in metrics.items():
        if name.endswith("_ci"):
            continue
        per_clusterer = isinstance(value, dict) and labels and set(value) == set(labels)
        if per_clusterer and all(_is_rate(v) for v in value.values()):
            measures.update({key(name, lb): value[lb] for lb in labels})
        elif isinstance(value, float) or name in COUNTED:
            measures[name] = value
    for name, value in metrics.items():
        base = name[:-3] if name.endswith("_ci") else None
        if base is None:
            continue
        if _interval(value) and base in measures:
            intervals[base] = [float(v) for v in value]
        elif isinstance(value, dict):
            intervals.update({key(base, lb): [float(v) for v in ci] for lb, ci in value.items()
                              if _interval(ci) and key(base, lb) in measures})
    # the continuous homogeneity measures the records carry (measure.scoring.homogeneity): "agreement@<lb>"
    # under this module's "pairwise_agreement/<lb>", the others ("mean_cosine", ...) under their own names
    for name in dict.fromkeys(k for r in records for k in r.homogeneity):
        measures[homogeneity_key(name)] = finite_mean(
            [r.homogeneity.get(name) for r in records if r.homogeneity.get(name) is not None])
    for lb in labels:   # records scored without the measures: the agreement from their clusters
        measures.setdefault(key("pairwise_agreement", lb),
                            finite_mean([pairwise_agreement(r.clusters[lb]) for r in records if len(r.clusters[lb]) >= 2]))
    for signal in signal_names(list(records)):
        parsed = SignalKey.parse(signal)
        if parsed.name not in SKIPPED_SIGNALS:
            measures[key(parsed.name, parsed.clusterer)] = finite_mean([r.signals.get(signal) for r in records])
    return measures, intervals


# ---------------------------------------------------------------- stop rules over these measures

def parse_stop_rules(rules: Mapping | None, where: str = "stop_when") -> dict[str, tuple[str, float]]:
    """{"scr/exact": ">= 0.5"} -> {"scr/exact": (">=", 0.5)}; a malformed rule is a UsageError naming its key."""
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise UsageError(f"{where}: expected a mapping of measure -> rule, e.g. {{scr/exact: '>= 0.5'}}, "
                         f"got {rules!r}")
    parsed = {}
    for name, rule in rules.items():
        match = _RULE.match(rule) if isinstance(rule, str) else None
        if not isinstance(name, str) or match is None:
            raise UsageError(f"{where}.{name}: expected a rule '>= <number>' or '<= <number>' "
                             f"(choices: {', '.join(STOP_OPS)}), got {rule!r}")
        parsed[name] = (match.group(1), float(match.group(2)))
    return parsed


def met_rule(measures: Mapping[str, float | None], rules: Mapping[str, tuple[str, float]]) -> str | None:
    """The first rule the measures meet, as text ("scr/exact 0.55 >= 0.5"), or None. A measure that is None
    (no question had a value) meets nothing; a rule naming no measure is a UsageError."""
    unknown = [k for k in rules if k not in measures]
    if unknown:
        raise UsageError(f"stop_when: {', '.join(unknown)} is not a measure of this probe; its measures: "
                         f"{', '.join(sorted(measures))}")
    for name, (op, threshold) in rules.items():
        value = measures[name]
        if value is not None and STOP_OPS[op](value, threshold):
            return f"{name} {value:.4g} {op} {threshold:g}"
    return None
