"""What a cascade stage costs: the work it adds to what earlier stages already paid.

Measured costs (report.json "timing", written by measure.pipeline.timing_block) come in work units:
seconds per question of the greedy pass ("greedy"), of sampling the N answers ("sampling") and of each
clusterer (its label). A signal needs a set of units (timing "work", or for reports written before that
key existed measure.scoring.signals.signal_work of its name): greedy signals the greedy pass, lexical_dissimilarity
the samples, a clusterer's signals the samples + that clusterer. The judge is never a cost (it only scores
the cascade). A question pays each unit once: the stage that first needs a unit pays it, later stages that
need it again add nothing. So with response_length, greedy_entropy_mean and n_clusters@embedding, the
second stage is free and the third pays sampling + embedding.

Given costs (costs=[...]) and the documented unit costs (UNIT_COSTS, used when the report has no usable
timing) are per signal and additive: each signal is its own unit, nothing is shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from measure.common.errors import UsageError
from measure.scoring.metrics import finite
from measure.scoring.signals import SignalKey, signal_work

UNIT_COSTS = "response_length 1; greedy_* 2; <signal>@nli* 100; other <signal>@<clusterer> 10; anything else 10"


def unit_cost(signal: str) -> float:
    if signal == "response_length":
        return 1.0
    if signal.startswith("greedy_"):
        return 2.0
    clusterer = SignalKey.parse(signal).clusterer
    if clusterer is not None:
        return 100.0 if clusterer.startswith("nli") else 10.0
    return 10.0


@dataclass(frozen=True)
class CostModel:
    """Per signal (in stage order) the work units it needs, and the cost of each unit."""
    work: tuple[frozenset[str], ...]
    unit: tuple[tuple[str, float], ...]     # (unit, cost) pairs: a tuple keeps the dataclass hashable

    @classmethod
    def additive(cls, signals: Sequence[str], costs: Sequence[float]) -> "CostModel":
        return cls(tuple(frozenset([s]) for s in signals), tuple((s, float(c)) for s, c in zip(signals, costs)))

    def _sum(self, units) -> float:
        cost = dict(self.unit)
        return float(sum(cost[u] for u in units))

    def standalone(self) -> list[float]:
        """Each signal's cost computed alone: the sum of its work."""
        return [self._sum(w) for w in self.work]

    def added(self, active: Sequence[bool]) -> list[float]:
        """Per stage, what it adds when reached, given which stages are on (off stages add and pay nothing):
        the cost of its units that no earlier active stage has paid."""
        paid: set[str] = set()
        out = []
        for w, on in zip(self.work, active):
            out.append(self._sum(w - paid) if on else 0.0)
            if on:
                paid |= w
        return out

    def total(self) -> float:
        """Computing every signal: each unit of the union once."""
        return self._sum(frozenset().union(*self.work))

    def subset(self, cols: Sequence[int]) -> "CostModel":
        return CostModel(tuple(self.work[j] for j in cols), self.unit)

    def accounting(self, signals: Sequence[str]) -> dict:
        """The cascade report's cost table: units, each signal's work, standalone and added cost (every stage on)."""
        return {"unit_cost": dict(self.unit), "work": {s: sorted(w) for s, w in zip(signals, self.work)},
                "standalone": dict(zip(signals, self.standalone())),
                "added_in_order": dict(zip(signals, self.added([True] * len(self.work)))),
                "every_signal": self.total()}


def resolve_costs(names: list[str], costs: Sequence[float] | None,
                  recorded_timing: Mapping[str, Any] | None) -> tuple[CostModel, str, list[str]]:
    """(cost model, source, notes): given costs, else measured work units from report.json's timing block
    (Report.timing; None when the report has none or there is no report), else unit costs."""
    if costs is not None:
        if len(costs) != len(names) or not all(finite(c) and c >= 0 for c in costs) or sum(costs) <= 0:
            raise UsageError(f"costs: give {len(names)} non-negative numbers (not all 0), one per signal in "
                             f"this order: {', '.join(names)}; got {list(costs)}")
        return CostModel.additive(names, costs), "given (per signal, additive)", []
    block = recorded_timing or {}
    timing = block.get("seconds_per_question") or {}
    recorded = block.get("work") or {}
    work = {s: recorded.get(s) or signal_work(s) for s in names}
    # 0 s is not a cost but a missing measurement (e.g. the greedy pass of a scored samples file)
    missing = [s for s, w in work.items() if w is None or not all(finite(timing.get(u)) and timing[u] > 0 for u in w)]
    if block.get("measured_generation") is False:
        why = "report.json timing has no measured generation (scored from a samples file)"
    elif timing and not missing:
        units = sorted({u for w in work.values() for u in w})
        model = CostModel(tuple(frozenset(work[s]) for s in names), tuple((u, float(timing[u])) for u in units))
        return model, "measured seconds per question (report.json timing), shared work paid once", []
    else:
        why = "report.json has no timing" if not timing else f"no timing for {', '.join(missing)}"
    return (CostModel.additive(names, [unit_cost(s) for s in names]), "unit costs",
            [f"{why}: using the documented unit costs ({UNIT_COSTS}), per signal and additive"])
