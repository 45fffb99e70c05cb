"""dpo_effect.json as typed records (train.dpo_effect writes it): one reader, one writer.

DPOEffect (the file) of StageEffect (one stage) of MarginTrajectory, WeightDifference (with ChangedTensor
rows) and HeldoutEffect. A field is its JSON key, and keys a file lacks (a check that has only a `note`, a
stage without `heldout`) are remembered in `absent` and not written (measure.common.jsonrecords), so a file
read and written back is byte-identical.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from measure.common.errors import UsageError
from measure.common.io import read_json
from measure.common.jsonrecords import JsonRecord, record_from_json, record_to_json

REPORT = "dpo_effect.json"


@dataclass(frozen=True)
class MarginTrajectory(JsonRecord):
    """TRL's logged reward margins; with no logged margins only n_logged = 0 and note."""
    n_logged: int
    note: str | None = None
    first: dict[str, float | None] | None = None     # the first logged row: step, rewards/*, loss
    last: dict[str, float | None] | None = None
    quarter: int | None = None                       # logs per early / late mean
    early_mean_margin: float | None = None
    late_mean_margin: float | None = None
    early_mean_accuracy: float | None = None
    late_mean_accuracy: float | None = None
    moved: bool | None = None


@dataclass(frozen=True)
class ChangedTensor(JsonRecord):
    tensor: str
    relative_frobenius: float


@dataclass(frozen=True)
class WeightDifference(JsonRecord):
    """|delta w| against the parent; with nothing to compare only note."""
    note: str | None = None
    tensors: int | None = None
    tensors_changed: int | None = None
    max_abs: float | None = None
    mean_abs: float | None = None
    relative_frobenius: float | None = None
    relative_frobenius_changed: float | None = None
    most_changed: list[ChangedTensor] = field(default_factory=list)
    only_in_one: int | None = None


@dataclass(frozen=True)
class HeldoutEffect(JsonRecord):
    """Policy vs parent on held-out pairs; with no pair kept only pairs = 0, skipped and note."""
    pairs: int
    skipped: int
    note: str | None = None
    beta: float | None = None
    max_length: int | None = None
    dataset: list[dict[str, Any]] | None = None
    mean_abs_delta_logp: float | None = None
    mean_abs_delta_logp_per_token: float | None = None
    mean_delta_logp_chosen: float | None = None
    mean_delta_logp_rejected: float | None = None
    mean_margin: float | None = None
    margin_accuracy: float | None = None


@dataclass(frozen=True)
class StageEffect(JsonRecord):
    stage: str
    parent: str
    margins: MarginTrajectory
    weights: WeightDifference
    heldout: HeldoutEffect | None      # None (and not written) when the stage names no heldout pairs
    acted: bool
    # sha256 of what it was computed from (train.dpo_effect.effect_inputs): a rerun with the same inputs reuses it
    inputs: str | None = None


@dataclass(frozen=True)
class DPOEffect(JsonRecord):
    """dpo_effect.json."""
    name: str
    stages: dict[str, StageEffect]


def margins_from_json(obj: Mapping[str, Any]) -> MarginTrajectory:
    return record_from_json(MarginTrajectory, obj)


def weights_from_json(obj: Mapping[str, Any]) -> WeightDifference:
    return record_from_json(WeightDifference, obj, **({"most_changed": [record_from_json(ChangedTensor, t) for t in obj["most_changed"]]}
                                           if "most_changed" in obj else {}))


def heldout_from_json(obj: Mapping[str, Any]) -> HeldoutEffect:
    return record_from_json(HeldoutEffect, obj)


def stage_effect_from_json(obj: Mapping[str, Any]) -> StageEffect:
    return record_from_json(StageEffect, obj, margins=margins_from_json(obj["margins"]), weights=weights_from_json(obj["weights"]),
                 heldout=heldout_from_json(obj["heldout"]) if "heldout" in obj else None)


def effect_from_json(obj: Mapping[str, Any]) -> DPOEffect:
    """The one reader of dpo_effect.json content."""
    return record_from_json(DPOEffect, obj, stages={s: stage_effect_from_json(e) for s, e in obj["stages"].items()})


def effect_to_json(effect: DPOEffect) -> dict[str, Any]:
    """The one writer: dpo_effect.json's content, keys in today's order."""
    return record_to_json(effect)


def read_effect(directory: str | os.PathLike) -> DPOEffect:
    """<chain dir>/dpo_effect.json as a DPOEffect."""
    path = Path(directory) / REPORT
    if not path.exists():
        raise UsageError(f"{path}: no {REPORT} (python -m train.dpo_effect recipe=<recipe> writes it)")
    return effect_from_json(read_json(path))
