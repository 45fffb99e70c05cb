"""stage.json as a typed record: what a finished stage was trained with, on which parent, into which files.

    manifest = ckpt.read_manifest(stage_dir)      # a StageManifest
    manifest.parent, manifest.parent_hash, manifest.recipe, manifest.adapter, manifest.hash

train/checkpoint.py writes it (`write_manifest`, last, atomically: its presence marks the stage finished)
and reads it back through `manifest_from_json`, the one reader. The file itself is kept verbatim in
`recorded`: its sha256 (`hash`) is what a child stage's `parent_hash` and a report's `stage_hash` pin, so
it is hashed exactly as written, and keys this record does not name (a trainer's extras) stay readable.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Mapping

from measure.common.io import sha256_json


@dataclass(frozen=True)
class StageManifest:
    name: str                              # the chain
    stage: str
    chain_index: int | None
    output_dir: str | None                 # the chain dir, resolved
    trainer: str | None                    # a trainers.py name, "measure", or for the base: pretrain | none
    parent: str | None                     # None for the base
    parent_hash: str | None                # sha256 of the parent's stage.json when this stage was trained
    recipe: dict                           # the resolved recipe (train.recipe.Recipe.to_dict; from_mapping reads it)
    seed: int | None = None
    mode: str | None = None                # merge | continue | measure-only
    lora: dict | None = None               # LoraSpec.settings() of a LoRA stage
    adapter: str | None = None             # the LoRA adapter dir, if any
    adapter_base: str | None = None        # the model the adapter was trained on
    merged_model: str | None = None        # where the stage's full model loads from
    datasets: list = field(default_factory=list)        # dataset fingerprints (train/data.py)
    train_metrics: dict = field(default_factory=dict)   # TRL's train metrics + log_history
    wall_time_s: float | None = None
    external: bool = False                 # a given model (hub id, dir, GGUF) rather than one trained here
    model_files: dict | None = None        # an external model's files and hashes (measure/sampling/model_source.py)
    git_commit: str | None = None
    versions: dict = field(default_factory=dict)
    recorded: dict = field(default_factory=dict, repr=False, compare=False)   # the file verbatim

    @property
    def hash(self) -> str:
        return sha256_json(self.recorded)


def manifest_from_json(obj: Mapping[str, Any]) -> StageManifest:
    """The one reader of stage.json content (keys an older file lacks read as their defaults)."""
    required = [f.name for f in fields(StageManifest) if f.default is MISSING and f.default_factory is MISSING]
    optional = [f.name for f in fields(StageManifest) if f.name not in required and f.name != "recorded"]
    values = {**{k: obj.get(k) for k in required}, **{k: obj[k] for k in optional if obj.get(k) is not None}}
    return StageManifest(**{**values, "recipe": values["recipe"] or {}}, recorded=dict(obj))
