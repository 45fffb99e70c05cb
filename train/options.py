"""The command lines of train/'s entry points: their options, declared once, and the recipe's keys for --help.

Every script takes `recipe=<file>`, its own options (a frozen dataclass of fields with help) and dotted
recipe overrides (`stages.dpo.args.beta=0.05`); `--help` prints the script's docstring, its options and the
recipe keys (train/recipe_spec.py), all generated from the declarations (measure.common.cli_args).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from measure import MeasureSettings
from measure.common.cli_args import parse_cli
from train.world import WorldSpec
from train.recipe_spec import (BuildSpec, DatasetSpec, DuringTrainingSpec, LoraSpec, ModelSpec, PretrainSpec,
                               Quantization, QuestionsSpec, Recipe, SelfPairsSpec, StageSpec, SweepSpec)

RECIPE_SECTIONS = (("recipe keys (any of them, dotted, is an override: stages.dpo.args.beta=0.05)", Recipe),
                   ("model.*", ModelSpec), ("model.build.*", BuildSpec), ("model.pretrain.*", PretrainSpec),
                   ("model.quantization.*", Quantization), ("stages.<stage>.*", StageSpec),
                   ("lora.* and stages.<stage>.lora.*", LoraSpec), ("a dataset (dataset, heldout, corpus)", DatasetSpec),
                   ("a dataset's self_pairs.*", SelfPairsSpec), ("self_pairs.questions.*", QuestionsSpec),
                   ("measure.*", MeasureSettings), ("measure.during_training.*", DuringTrainingSpec),
                   ("sweep.*", SweepSpec), ("world.* (the toy world)", WorldSpec))


def _recipe_field() -> Any:
    return field(default=None, metadata={"help": "the recipe file", "required": True,
                                         "placeholder": "<path to recipes/NAME.yaml>"})


@dataclass(frozen=True)
class RecipeOptions:
    recipe: str | None = _recipe_field()


@dataclass(frozen=True)
class StageOptions(RecipeOptions):
    """The stage scripts' options (train/stages.py stage_main)."""
    stage: str | None = field(default=None, metadata={"help": "which stage of this trainer; default: the only one"})
    overwrite: bool = field(default=False, metadata={"help": "train again over a finished checkpoint"})
    measure: bool = field(default=True, metadata={"help": "measure the stage after training (recipe measure section) "
                                                   "and, with measure.during_training, while it trains"})


def parse_recipe_cli(argv: Sequence[str] | None, doc: str | None, options: type = RecipeOptions,
                     **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options, recipe overrides) of a train/ entry point; --help lists its options and the recipe keys."""
    return parse_cli(argv, doc, options, sections=kwargs.pop("sections", RECIPE_SECTIONS), **kwargs)
