"""Every entry point answers --help (and -h, help): its docstring and a table of its options, generated from
the declarations (measure.common.cli_args), exit 0, nothing else done."""
from __future__ import annotations

import importlib

import pytest

from measure.common.cli_args import parse_cli
from measure.common.errors import UsageError

# module -> (arguments before --help, option names its help must list)
ENTRY_POINTS = {
    "train.chain": ([], ["recipe=", "overwrite=", "measure=", "compare=", "dpo_effect=", "stages.<stage>.*", "beta"]),
    "train.pretrain": ([], ["recipe=", "overwrite=", "measure=", "model.pretrain.*"]),
    "train.sft": ([], ["recipe=", "stage=", "overwrite=", "measure=", "target_modules"]),
    "train.dpo": ([], ["recipe=", "stage=", "overwrite=", "measure="]),
    "train.kto": ([], ["recipe=", "stage=", "overwrite="]),
    "train.orpo": ([], ["recipe=", "stage=", "overwrite="]),
    "train.cpo": ([], ["recipe=", "stage=", "overwrite="]),
    "train.sweep": ([], ["recipe=", "stage=", "signal=", "overwrite=", "measure="]),
    "train.measure_stage": ([], ["recipe=", "stage=", "overwrite=", "n_samples"]),
    "train.dpo_effect": ([], ["recipe=", "heldout="]),
    "train.seeds": ([], ["recipe=", "seeds=", "overwrite="]),
    "measure.cli": ([], ["run", "score", "compare", "cascade", "plan"]),
    "measure.cli plan": (["plan"], ["scr_from=", "scr_to=", "power=", "alpha=", "discordant_down="]),
    "measure.cli run": (["run"], ["model=", "benchmark=", "benchmark_path=", "judge=", "out=", "prompt_format=", "backend",
                                  "vllm_logprobs", "judge_margin", "0.02"]),
    "measure.cli score": (["score"], ["samples=", "out=", "judge=", "clusterers", "nli_model"]),
    "measure.cli compare": (["compare"], ["runs=", "labels=", "out=", "benchmark="]),
    "measure.cli cascade": (["cascade"], ["signals=", "costs=", "cv_folds=", "calib_fraction="]),
    "harness.run": ([], ["only=", "n_samples=", "memory_model=", "peers="]),
    "harness.same_outputs": ([], ["a=", "b="]),
    "harness.judge_validation": ([], ["data=", "margins=", "limit=", "seed=", "out="]),
    "harness.memory": ([], ["run=", "model=", "pairs=", "steps="]),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_every_entry_point_answers_help(entry, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # --help writes nothing: an empty working dir stays empty
    module = importlib.import_module(entry.split()[0])
    before, names = ENTRY_POINTS[entry]
    try:
        module.main([*before, flag, "recipe=nowhere.yaml"] if flag != "help" or not before else [*before, flag])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    out = capsys.readouterr().out
    first = (module.__doc__ or "").strip().splitlines()[0]
    assert first in out or entry.startswith("measure.cli "), out   # the module's docstring ...
    for name in names:                                              # ... and its options
        assert name in out, f"{entry} --help does not name {name!r}:\n{out}"
    assert list(tmp_path.iterdir()) == []


def test_help_table_comes_from_the_declarations(capsys):
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Options:
        recipe: str | None = field(default=None, metadata={"help": "the recipe file", "required": True,
                                                           "placeholder": "<path to recipes/NAME.yaml>"})
        level: int = field(default=3, metadata={"help": "how much", "min": 1, "max": 9})

    with pytest.raises(SystemExit) as exc:
        parse_cli(["-h"], "Doc line.", Options)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Doc line.") and "recipe=..." in out and "how much" in out and "default 3" in out
    assert parse_cli(["recipe=x.yaml", "a.b=1"], None, Options) == ({"recipe": "x.yaml", "level": 3}, {"a.b": 1})
    with pytest.raises(UsageError, match=r"missing recipe=<path to recipes/NAME.yaml>"):
        parse_cli(["level=2"], None, Options)
    with pytest.raises(UsageError, match="level: expected an integer"):
        parse_cli(["recipe=x", "level=high"], None, Options)
    with pytest.raises(UsageError, match=r"unknown key 'levl'.*did you mean 'level'"):
        parse_cli(["recipe=x", "levl=2"], None, Options, strict=True)


def test_recipe_and_settings_keys_are_declared_once():
    """The schema's keys, types, choices and bounds are the dataclasses' fields (train/recipe_spec.py,
    measure.scoring.config.MeasureSettings): nothing lists them a second time."""
    import dataclasses

    from measure.common.fields import declared
    from measure.scoring.config import SCALAR_FIELDS, MeasureSettings
    from train.recipe_spec import CHAIN_MODES, Recipe, StageSpec

    stage = declared(StageSpec)
    assert "from" in stage and "name" not in stage and stage["mode"].choices == CHAIN_MODES
    assert stage["lora"].kinds == (bool, dict) and stage["trainer"].required
    top = declared(Recipe)
    assert top["measure"].kinds == (dict, type(None)) and top["seed"].hi == 2**32 - 1
    # during_training is written inside `measure` (measure.during_training), typed onto the Recipe
    assert set(top) == {f.name for f in dataclasses.fields(Recipe)} - {"path", "source", "during_training"}
    assert SCALAR_FIELDS["vllm_logprobs"].default == MeasureSettings.vllm_logprobs
    assert SCALAR_FIELDS["backend"].choices == ("hf", "vllm") and SCALAR_FIELDS["temperature"].kinds == (int, float)
