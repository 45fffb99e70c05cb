"""The recipe's fields, each declared once: default, help, choices and bounds on the dataclass field.

The frozen dataclasses a recipe is typed into -- `Recipe`, `ModelSpec`, `StageSpec`, `LoraSpec`,
`Quantization`, `PretrainSpec`, `DuringTrainingSpec` -- and the two sections that stay mappings once typed (`model.build`:
train.tiny.BuildSpec; a dataset: `DatasetSpec`). train/recipe_schema.py derives the keys, types, choices and
bounds it checks from these fields (measure.common.fields), `--help` prints them, and train/recipe.py
builds the typed recipe; so adding a recipe key is one edit, here. Every default is a field default, set
once; the few that depend on other keys (a stage's parent and prompt format, the output dir) are resolved
in `Recipe.from_mapping` and nowhere else.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from measure import PROMPT_FORMATS, MeasureSettings, parse_measure_settings
from measure.common.errors import UsageError, suggest
from measure.common.values import SEED_MAX
from train.pair_rules import RULES as PAIR_RULES
from train.tiny import BuildSpec  # noqa: F401  (model.build's fields: part of the recipe)
from train.trainers import TRAINER_SPECS

BASE = "base"  # the chain's first stage: the recipe's model, built, pretrained or loaded
CHAIN_MODES = ("merge", "continue")
DATASET_FORMATS = ("auto", "text", "prompt_completion", "messages", "preference", "hh", "unpaired_preference")
QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
DatasetRef = str | dict | list    # a path or hub id, a DatasetSpec mapping, or a list of them
PAIR_QUALITIES = ("auto", "logprob")


@dataclass(frozen=True)
class QuestionsSpec:
    """The prompts of self-generated pairs: a benchmark's questions in file order, `offset` skipped, then
    `limit` kept (disjoint from the recipe's evaluation questions: checked)."""
    name: str = field(default="", metadata={"help": "a benchmark name (measure's: truthfulqa, gsm8k, webquestions, "
                                                   "nq_open, jsonl)", "required": True})
    path: str | None = field(default=None, metadata={"help": "local file; unset: the benchmark's hub dataset"})
    split: str | None = field(default=None, metadata={"help": "hub split (with no path)"})
    offset: int = field(default=0, metadata={"help": "skip this many questions first", "min": 0})
    limit: int | None = field(default=None, metadata={"help": "then keep at most this many", "min": 1})


@dataclass(frozen=True)
class SelfPairsSpec:
    """A dataset of preference pairs the chain makes itself (train/self_pairs.py): N answers per prompt
    sampled from an earlier stage, clustered, one pair per prompt chosen by `rule` (train/pair_rules.py)."""
    source: str = field(default="", metadata={"key": "from", "help": "the earlier stage whose answers are sampled",
                                              "required": True})
    rule: str = field(default="modal", metadata={"help": "modal: largest cluster over smallest (homogenizes); divpo: "
                                                 "DivPO, rarest good over most common bad; random: placebo",
                                                 "required": True, "choices": PAIR_RULES, "noun": "pair rule"})
    questions: dict = field(default_factory=dict, metadata={"help": "the prompts (QuestionsSpec keys)", "required": True})
    n: int = field(default=8, metadata={"help": "answers sampled per prompt", "min": 2})
    clusterer: str | dict = field(default="exact", metadata={"help": "how answers are grouped (a measure clusterer)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature", "min": 1e-6})
    max_new_tokens: int = field(default=24, metadata={"help": "tokens per sampled answer at most", "min": 1})
    quality: str = field(default="auto", metadata={"help": "divpo's quality: auto = the judge where the question "
                                                   "has gold answers, else mean token log-probability; logprob",
                                                   "choices": PAIR_QUALITIES})
    rho: float = field(default=0.5, metadata={"help": "divpo, logprob quality: the top rho of a prompt's quality "
                                              "range is above the threshold", "min": 0, "max": 1})
    pairs: int | None = field(default=None, metadata={"help": "keep the first this many pairs (equal data sizes "
                                                      "across rules); fewer made is an error; null: all", "min": 1,
                                                      "nullable": True})


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a stage (`dataset:`), the pretraining data or the tokenizer corpus: a file / hub id
    (`path`), a generated toy-world split (`world`) or, for a stage, pairs sampled from an earlier stage
    (`self_pairs`); a bare string is `{path: <string>}` (train/data.py)."""
    path: str | None = field(default=None, metadata={"help": "local JSON/JSONL/CSV/Parquet file or hub dataset id"})
    world: str | None = field(default=None, metadata={"help": "a split the recipe's `world` section generates"})
    name: str | None = field(default=None, metadata={"help": "hub dataset configuration name"})
    split: str = field(default="train", metadata={"help": "hub dataset split"})
    format: str = field(default="auto", metadata={"help": "row format; auto: detected from the columns",
                                                   "choices": DATASET_FORMATS, "noun": "format"})
    limit: int | None = field(default=None, metadata={"help": "keep at most this many rows (after offset)", "min": 1})
    offset: int = field(default=0, metadata={"help": "skip this many rows first", "min": 0})
    columns: dict | None = field(default=None, metadata={"help": "rename columns: {file column: format column}"})
    self_pairs: dict | None = field(default=None, metadata={"help": "pairs sampled from an earlier stage "
                                                            "(SelfPairsSpec keys; a stage's dataset only)"})


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA stage's adapter (PEFT LoraConfig): recipe `lora`, then the stage's own `lora` on top."""
    r: int = field(default=8, metadata={"help": "adapter rank"})
    alpha: float = field(default=16, metadata={"help": "lora_alpha (scaling = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "lora_dropout"})
    target_modules: str | list[str] = field(default="all-linear", metadata={"help": "modules that get adapters"})

    def settings(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Quantization:
    """QLoRA: the parent of every LoRA stage loads in 4 bit (transformers.BitsAndBytesConfig's names)."""
    load_in_4bit: bool = field(default=True, metadata={"help": "must be true (4-bit QLoRA)", "required": True})
    bnb_4bit_quant_type: str = field(default="nf4", metadata={"help": "4-bit data type", "choices": QUANT_TYPES})
    bnb_4bit_compute_dtype: str = field(default="bfloat16", metadata={"help": "dtype of the 4-bit matmuls",
                                                                       "choices": COMPUTE_DTYPES})
    bnb_4bit_use_double_quant: bool = field(default=False, metadata={"help": "quantize the quantization constants"})


@dataclass(frozen=True)
class PretrainSpec:
    """The base stage trains `model.build` (or a given model) on `dataset` with TRL's SFTTrainer."""
    dataset: DatasetRef = field(metadata={"help": "pretraining text (DatasetSpec or a list of them)", "required": True})
    args: dict = field(default_factory=dict, metadata={"help": "trl.SFTConfig arguments"})


@dataclass(frozen=True)
class ModelSpec:
    """Exactly one of `path` (hub id, local dir, .gguf, pkg:<package>) or `build` (a tiny local model)."""
    path: str | None = field(default=None, metadata={"help": "hub id, local dir, .gguf file or pkg:<package>"})
    build: dict | None = field(default=None, metadata={"help": "a tiny random model built locally (BuildSpec keys)"})
    pretrain: PretrainSpec | None = field(default=None, metadata={"help": "train the base stage first (PretrainSpec)"})
    dtype: str | None = field(default=None, metadata={"help": "torch dtype to load the model in"})
    quantization: Quantization | None = field(default=None, metadata={"help": "QLoRA: load LoRA parents in 4 bit",
                                                                       "nullable": True})


@dataclass(frozen=True)
class SweepSpec:
    """A recipe's `sweep:` section (train/sweep.py); the CLI's stage=, signal= and grid.<key>= override it."""
    stage: str | None = field(default=None, metadata={"help": "the stage whose args vary"})
    grid: dict = field(default_factory=dict, metadata={"help": "dotted stages.<stage>.* key -> list of values"})
    signal: str = field(default="greedy_entropy_mean", metadata={
        "help": "the signal whose AUROC is reported (token entropy: the one homogenization is said to blind)"})


@dataclass(frozen=True)
class DuringTrainingSpec:
    """`measure.during_training`: a probe set measured while each training stage trains (measure.live's
    HomogenizationCallback, set up by train/dynamics.py) into <stage>/dynamics.jsonl. Exactly one of
    `every` and `evaluations`."""
    every: int | None = field(default=None, metadata={"help": "measure every this many optimizer steps", "min": 1})
    evaluations: int | None = field(default=None, metadata={
        "help": "or: this many measurements per stage, evenly spaced (every = ceil(stage steps / evaluations))",
        "min": 1})
    limit: int = field(default=32, metadata={"help": "probe questions: a seeded subset of the benchmark", "min": 1})
    benchmark: str | dict | None = field(default=None, metadata={
        "help": "the probe's benchmark (a name or {name, path, split}); default: the measure section's first"})
    n_samples: int | None = field(default=None, metadata={
        "help": "samples per probe question; default: the measure section's n_samples", "min": 1})
    stages: list | None = field(default=None, metadata={
        "help": "the stages measured while training; default: every training stage (base when pretrained)"})
    at_start: bool = field(default=True, metadata={"help": "also measure before a stage's first step"})
    stop_when: dict | None = field(default=None, metadata={
        "help": "stop a stage's training after the first measurement that meets a rule, e.g. "
                "{scr/exact: '>= 0.5', mean_clusters/exact: '<= 2'} (keys: the dynamics.jsonl measures)"})


TRAINERS = (*TRAINER_SPECS, "measure")   # a stage's trainer: train/trainers.py, or measure (an existing checkpoint)


@dataclass(frozen=True)
class StageSpec:
    name: str = field(metadata={"key": None})
    trainer: str = field(metadata={"help": "a TRL trainer, or measure (an existing checkpoint, measured only)",
                                   "required": True, "choices": TRAINERS, "noun": "trainer"})
    parent: str = field(metadata={"key": "from", "help": "the stage it starts from; default: the stage before it"})
    prompt_format: str = field(metadata={"help": "the stage's own prompt format; default: the recipe's",
                                         "choices": PROMPT_FORMATS})
    lora: LoraSpec | None = field(metadata={"yaml": (bool, dict), "help": "false: train every parameter; a mapping: "
                                            "LoraSpec keys over the recipe's lora"})   # resolved; None: no adapter
    mode: str = field(default="merge", metadata={"help": "merge: a fresh adapter on the merged parent; continue: "
                                                 "keep training the parent's adapter",
                                                 "choices": CHAIN_MODES, "noun": "chaining mode"})
    dataset: DatasetRef = field(default=None, metadata={"help": "training data (DatasetSpec or a list of them)"})
    args: dict = field(default_factory=dict, metadata={"help": "TRL config arguments, names exactly TRL's"})
    model: str | None = field(default=None, metadata={"help": "a measure stage's checkpoint"})
    heldout: DatasetRef = field(default=None, metadata={"help": "a dpo stage's held-out preference pairs "
                                                        "(train/dpo_effect.py)"})
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "keep the Trainer's checkpoint-* (<stage>/trainer/) once the stage is finished, e.g. for "
                "python -m train.dynamics; default: removed"})

    @property
    def external(self) -> bool:
        return self.trainer == "measure"


@dataclass(frozen=True)
class Recipe:
    name: str = field(metadata={"help": "the chain's name (checkpoints/<name>)", "required": True})
    path: Path = field(metadata={"key": None})   # the recipe file (relative paths resolve from its folder)
    model: ModelSpec = field(metadata={"help": "the base model (ModelSpec)", "required": True})
    output_dir: str = field(metadata={"help": "where the chain is written; default checkpoints/<name>"})
    stages: Mapping[str, StageSpec] = field(metadata={"help": "stage name -> StageSpec, in chain order after base"})
    measure: MeasureSettings = field(metadata={"help": "measurement settings (MeasureSettings keys, and "
                                               "during_training: DuringTrainingSpec keys)", "nullable": True})
    seed: int = field(default=0, metadata={"help": "training and data seed", "min": 0, "max": SEED_MAX})
    prompt_format: str = field(default="chat", metadata={"help": "how prompts are rendered: chat (the chat "
                                                         "template), qa (few-shot Q/A) or hh (Anthropic HH turns)",
                                                         "choices": PROMPT_FORMATS})
    lora: dict | None = field(default=None, metadata={"help": "the recipe-wide LoRA section (LoraSpec keys)",
                                                      "nullable": True})   # as written; stages hold the resolved one
    world: dict | None = field(default=None, metadata={"help": "a generated toy world (train/world.py)",
                                                       "nullable": True})
    sweep: dict | None = field(default=None, metadata={"help": "a hyperparameter sweep (SweepSpec keys, train/sweep.py)",
                                                       "nullable": True})
    during_training: DuringTrainingSpec | None = field(default=None, metadata={"key": None})  # measure.during_training
    source: dict = field(default_factory=dict, repr=False, compare=False,
                         metadata={"key": None})   # the mapping as written + overrides

    @classmethod
    def from_mapping(cls, raw: dict, path: str | Path) -> Recipe:
        """The typed recipe of a checked mapping (or of a resolved one a stage.json recorded)."""
        top = {f.name for f in dataclasses.fields(cls)} - {"model", "stages", "measure", "path", "source", "output_dir",
                                                          "during_training"}
        plain = {k: raw[k] for k in top if k in raw}
        prompt_format = plain.get("prompt_format", cls.prompt_format)
        stages, previous = {}, BASE
        for name, spec in (raw.get("stages") or {}).items():
            own = {k: spec[k] for k in ("mode", "dataset", "args", "model", "heldout", "keep_checkpoints") if k in spec}
            stages[name] = StageSpec(name=name, trainer=spec["trainer"], parent=spec.get("from", previous),
                                     prompt_format=spec.get("prompt_format", prompt_format),
                                     lora=_stage_lora(raw.get("lora"), spec), **own)
            previous = name
        model = dict(raw["model"])
        if model.get("quantization") is not None:
            model["quantization"] = Quantization(**model["quantization"])
        if model.get("pretrain") is not None:
            model["pretrain"] = PretrainSpec(**model["pretrain"])
        measure = dict(raw.get("measure") or {})
        during = measure.pop("during_training", None)   # the chain's, not the library's: typed here
        return cls(path=Path(path), model=ModelSpec(**model), stages=stages, source=copy.deepcopy(raw),
                   output_dir=raw.get("output_dir", f"checkpoints/{raw['name']}"),
                   measure=parse_measure_settings(measure, "measure"),
                   during_training=DuringTrainingSpec(**during) if during is not None else None, **plain)

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


