"""Recipes: one YAML per ablation chain, `key=value` overrides, validated, then typed.

    recipe = load_recipe("recipes/toy.yaml", {"stages.dpo.args.beta": 0.05})
    recipe.stages["dpo"].args["beta"], recipe.stages["dpo"].parent, recipe.stage_names

`load_recipe` checks the mapping (train/recipe_schema.py: keys, types, values, files), builds frozen
dataclasses from it -- `Recipe`, `ModelSpec`, `StageSpec`, `LoraSpec`, `Quantization` -- and checks the
rules across keys (`check_rules`). Every default is a field default of one of these classes, set once;
the few that depend on other keys (a stage's parent and prompt format, the output dir) are resolved in
`Recipe.from_mapping` and nowhere else. `to_dict()` gives the resolved mapping that every manifest
records (the YAML as written plus the defaults); `Recipe.from_mapping(stage_json["recipe"])` reads one
back, so a recorded recipe and the current one are compared like for like (train/reuse.py).

Optional keys beyond the basics: a stage's `prompt_format` (overrides the recipe's for that stage),
`trainer: measure` stages (an existing checkpoint by hub id / path, measured only), a `dpo` stage's
`heldout` (preference pairs it is not trained on, for train/dpo_effect.py), a chat template file in a
stage's `args.chat_template_path` (found like a dataset path, see `resolved_args`), and
`model.quantization: {load_in_4bit: true}` (QLoRA; needs bitsandbytes and a CUDA GPU, checked here).
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from measure import MeasureSettings, parse_measure_settings
from measure.common.errors import UsageError, suggest
from measure.common.io import read_text
from measure.common.overrides import apply_overrides
from measure.common.yamlload import load_yaml
from train.paths import resolve_path
from train.recipe_schema import TEMPLATE_SUFFIXES, check_shape

BASE = "base"  # the chain's first stage: the recipe's model, built, pretrained or loaded


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA stage's adapter (PEFT LoraConfig): recipe `lora`, then the stage's own `lora` on top."""
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    def settings(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Quantization:
    """QLoRA: the parent of every LoRA stage loads in 4 bit (transformers.BitsAndBytesConfig's names)."""
    load_in_4bit: bool = True
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_compute_dtype: str = "bfloat16"
    bnb_4bit_use_double_quant: bool = False


@dataclass(frozen=True)
class PretrainSpec:
    """The base stage trains `model.build` (or a given model) on `dataset` with TRL's SFTTrainer."""
    dataset: Any
    args: dict = field(default_factory=dict)   # SFTConfig arguments


@dataclass(frozen=True)
class ModelSpec:
    """Exactly one of `path` (hub id, local dir, .gguf, pkg:<package>) or `build` (a tiny local model)."""
    path: str | None = None
    build: dict | None = None
    pretrain: PretrainSpec | None = None
    dtype: str | None = None
    quantization: Quantization | None = None


@dataclass(frozen=True)
class StageSpec:
    name: str
    trainer: str                          # a train/trainers.py name, or "measure" (an existing checkpoint)
    parent: str                           # the recipe's `from`; default: the stage before it
    prompt_format: str                    # the stage's own, else the recipe's
    lora: LoraSpec | None                 # resolved; None: every parameter trains (or a measure stage)
    mode: str = "merge"                   # merge: a fresh adapter on the merged parent; continue: the parent's
    dataset: Any = None
    args: dict = field(default_factory=dict)   # TRL config arguments, names exactly TRL's
    model: str | None = None              # a `measure` stage's checkpoint
    heldout: Any = None                   # a dpo stage's held-out preference pairs (train/dpo_effect.py)

    @property
    def external(self) -> bool:
        return self.trainer == "measure"


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path                            # the recipe file (relative paths resolve from its folder)
    model: ModelSpec
    output_dir: str                       # default checkpoints/<name>
    stages: Mapping[str, StageSpec]       # chain order after base
    measure: MeasureSettings              # the parsed `measure` section (no benchmarks: nothing measured)
    seed: int = 0
    prompt_format: str = "chat"
    lora: dict | None = None              # the recipe-wide LoRA section, as written (stages hold the resolved one)
    world: dict | None = None
    sweep: dict | None = None
    source: dict = field(default_factory=dict, repr=False, compare=False)   # the mapping as written + overrides

    @classmethod
    def from_mapping(cls, raw: dict, path: str | Path) -> Recipe:
        """The typed recipe of a checked mapping (or of a resolved one a stage.json recorded)."""
        top = {f.name for f in dataclasses.fields(cls)} - {"model", "stages", "measure", "path", "source", "output_dir"}
        plain = {k: raw[k] for k in top if k in raw}
        prompt_format = plain.get("prompt_format", cls.prompt_format)
        stages, previous = {}, BASE
        for name, spec in (raw.get("stages") or {}).items():
            own = {k: spec[k] for k in ("mode", "dataset", "args", "model", "heldout") if k in spec}
            stages[name] = StageSpec(name=name, trainer=spec["trainer"], parent=spec.get("from", previous),
                                     prompt_format=spec.get("prompt_format", prompt_format),
                                     lora=_stage_lora(raw.get("lora"), spec), **own)
            previous = name
        model = dict(raw["model"])
        if model.get("quantization") is not None:
            model["quantization"] = Quantization(**model["quantization"])
        if model.get("pretrain") is not None:
            model["pretrain"] = PretrainSpec(**model["pretrain"])
        return cls(path=Path(path), model=ModelSpec(**model), stages=stages, source=copy.deepcopy(raw),
                   output_dir=raw.get("output_dir", f"checkpoints/{raw['name']}"),
                   measure=parse_measure_settings(raw.get("measure"), "measure"), **plain)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def stage_names(self) -> list[str]:
        """Chain order: base, then the recipe's stages as written."""
        return [BASE, *self.stages]

    def stage(self, name: str) -> StageSpec:
        if name not in self.stages:
            raise UsageError(f"unknown stage {name!r}{suggest(str(name), self.stages)}")
        return self.stages[name]

    def parent_of(self, stage: str) -> str | None:
        return None if stage == BASE else self.stages[stage].parent

    def prompt_format_of(self, stage: str) -> str:
        """The prompt format a stage is trained and measured with.

        Why per stage: a public chain mixes a base model (no chat template, or one it was never trained
        on: prompted with few-shot `qa`) and instruct checkpoints (prompted with their chat template, as
        deployed). The recipe's top-level format is the default, so the base stage uses it."""
        return self.prompt_format if stage == BASE else self.stages[stage].prompt_format

    def lora_of(self, stage: str) -> LoraSpec | None:
        return None if stage == BASE else self.stages[stage].lora

    def to_dict(self) -> dict:
        """The resolved recipe every manifest records: the mapping as written, then each default it left out."""
        out = copy.deepcopy(self.source)
        out.setdefault("seed", self.seed)
        out.setdefault("prompt_format", self.prompt_format)
        out.setdefault("output_dir", self.output_dir)
        out.setdefault("stages", {})
        for name, spec in out["stages"].items():
            typed = self.stages[name]
            spec.setdefault("from", typed.parent)
            spec.setdefault("mode", typed.mode)
            spec.setdefault("args", dict(typed.args))
        return out


def _stage_lora(recipe_lora: dict | None, spec: dict) -> LoraSpec | None:
    """A stage trains a LoRA adapter when the recipe has a `lora` section or the stage its own, unless
    the stage says `lora: false` (or only measures)."""
    own = spec.get("lora")
    if spec["trainer"] == "measure" or own is False or (recipe_lora is None and not isinstance(own, dict)):
        return None
    return LoraSpec(**{**(recipe_lora or {}), **(own if isinstance(own, dict) else {})})


def check_rules(recipe: Recipe) -> None:
    """The rules across keys, on the typed recipe: `mode: continue` trains on a LoRA parent's adapter;
    QLoRA needs a LoRA stage, bitsandbytes and a CUDA GPU."""
    for stage in recipe.stages.values():
        if stage.mode == "continue" and not (stage.lora and recipe.lora_of(stage.parent)):
            raise UsageError(f"stages.{stage.name}.mode: 'continue' keeps training the parent's LoRA adapter, so both "
                             f"{stage.name!r} and its parent {stage.parent!r} must be LoRA stages (recipe 'lora' set, "
                             "stage 'lora' not false)")
    where = "model.quantization"
    if recipe.model.quantization is None:
        return
    if not any(s.lora for s in recipe.stages.values()):
        raise UsageError(f"{where}: QLoRA trains LoRA adapters on a 4-bit parent; the recipe has no LoRA stage "
                         "(set a top-level 'lora' section or a stage 'lora'), or drop model.quantization")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError(f"{where}: 4-bit loading needs the bitsandbytes package, which is not installed "
                         "(pip install bitsandbytes, on a machine with a CUDA GPU), or drop model.quantization")
    import torch  # only for a QLoRA recipe
    if not torch.cuda.is_available():
        raise UsageError(f"{where}: 4-bit loading (bitsandbytes) needs a CUDA GPU and none is visible here; "
                         "drop model.quantization to train in full precision")


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read, override, validate and type a recipe. Raises UsageError on any problem."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"recipe file not found: {path}")
    try:
        raw = load_yaml(read_text(path, "recipe file"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a recipe is a YAML mapping (name, model, stages, ...)")
    raw = apply_overrides(raw, overrides or {})
    try:
        check_shape(raw, "", path.parent)  # key paths are built from "" so errors read "<file>: stages.dpo.args.beta: ..."
        recipe = Recipe.from_mapping(raw, path)
        check_rules(recipe)
    except UsageError as e:
        raise UsageError(f"{path}: {str(e).lstrip('.: ')}") from None
    return recipe


def resolved_args(args: Mapping, base_dir: Path) -> dict:
    """A stage's TRL args with a chat template file (`chat_template_path: recipes/chat_templates/x.jinja`)
    found like a dataset path -- TRL itself only looks in the current directory and would otherwise take
    the name for a hub model to clone the template from."""
    template = args.get("chat_template_path")
    if isinstance(template, str) and template.endswith(TEMPLATE_SUFFIXES):
        return {**args, "chat_template_path": str(resolve_path(template, base_dir))}
    return dict(args)
