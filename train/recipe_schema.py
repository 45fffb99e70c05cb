"""The recipe schema: every key, type and value a recipe may hold, checked on the YAML mapping before
anything runs (train/recipe.py builds the typed recipe from a mapping that passed here). The keys, their
types, choices and bounds are not listed here: they are read from the fields declared once in
train/recipe_spec.py (measure.common.fields), so a new recipe key is one edit there.

Validation is total: unknown keys anywhere (including inside a stage's `args`, checked against the
installed TRL config class), wrong types, missing local files and a `from:` that names no earlier
stage all raise UsageError (exit 2) naming the key path and the valid choices -- before any file is
written. So do non-finite numbers and integers beyond 64 bits anywhere, seeds outside 0..2**32-1, out of
range TRL step/epoch/learning-rate values (ARG_BOUNDS), and a `name` that is not a plain name. The
`measure` section is checked where it is parsed (measure.scoring.config, from Recipe.from_mapping). Defaults
are not set here: each lives once, on the dataclass field in train/recipe_spec.py.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import trl

from measure.common.errors import UsageError, suggest
from measure import (PACKAGE_PREFIX, check_reference, is_hub_id, make_clusterer, parse_measure_settings,
                     parse_stop_rules)
from measure.common.fields import check_mapping
from measure.common.values import as_int, as_number, check_numbers
from train.paths import looks_local, resolve_path
from train.recipe_spec import (BASE, BuildSpec, DatasetSpec, DuringTrainingSpec, LoraSpec, ModelSpec, PretrainSpec,
                               Quantization, QuestionsSpec, Recipe, SelfPairsSpec, StageSpec)
from train.trainers import TRAINER_SPECS
from train.world import validate_world

def _simple_types(annotation: Any) -> tuple[type, ...] | None:
    """The plain types a TRL config field accepts (None when it is too rich to check here)."""
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, {**vars(typing), "Literal": typing.Literal})  # noqa: S307 - TRL's own hints
        except Exception:
            return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    out: list[type] = []
    for a in args:
        a_origin = typing.get_origin(a) or a
        if a is type(None):
            out.append(type(None))
        elif a_origin in (int, float, bool, str, list, dict):
            out.append(a_origin)
        else:
            return None
    if float in out:
        out.append(int)
    return tuple(out)


def config_class(trainer: str):
    """The TRL config class whose field names a stage's `args` must use."""
    return TRAINER_SPECS[trainer].config_class()


def field_choices(field: dataclasses.Field) -> tuple[str, ...] | None:
    """The values a TRL config field allows: its `choices` metadata, or -- for DPOConfig.loss_type, a list
    field TRL leaves unchecked until the first training step -- the values its help lists."""
    if field.metadata.get("choices"):
        return tuple(str(c) for c in field.metadata["choices"])
    text = field.metadata.get("help", "")
    if field.name == "loss_type" and "Possible values are:" in text:
        return tuple(re.findall(r"`'(\w+)'`", text.split("Possible values are:", 1)[1].split(". ", 1)[0])) or None
    return None


def validate_trainer_args(trainer: str, args: dict, where: str) -> None:
    cls = config_class(trainer)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls) if hasattr(cls, "__annotations__") else {}
    for key, value in args.items():
        if key not in fields:
            raise UsageError(f"{where}.{key}: not a {cls.__name__} argument (TRL "
                             f"{trl.__version__}){suggest(key, fields)}")
        if key == "output_dir":
            raise UsageError(f"{where}.output_dir: set by the stage layout (checkpoints/<name>/<stage>/); "
                             "use the recipe's top-level output_dir instead")
        kinds = _simple_types(hints.get(key, fields[key].type))
        if kinds and value is not None and not (isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise UsageError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")
        if key in ARG_BOUNDS and value is not None:  # the type is checked above
            lo, hi = ARG_BOUNDS[key]
            (as_int if isinstance(value, int) else as_number)(value, f"{where}.{key}", lo, hi)
        choices = field_choices(fields[key])
        for item in (value if isinstance(value, list) else [value]) if choices and value is not None else []:
            if str(item) not in choices:
                raise UsageError(f"{where}.{key}: {item!r} is not a {cls.__name__} {key} (TRL "
                                 f"{trl.__version__}){suggest(str(item), choices)}")


def _check_dataset(spec: Any, where: str, base_dir: Path, has_world: bool, earlier: list[str] | None = None) -> None:
    """A dataset (or a list of them); `earlier`: the stages before this one (None: not a stage's training or
    held-out data, where self-generated pairs are not allowed)."""
    specs = spec if isinstance(spec, list) else [spec]
    if not specs:
        raise UsageError(f"{where}: give at least one dataset")
    for i, one in enumerate(specs):
        w = f"{where}[{i}]" if isinstance(spec, list) else where
        if isinstance(one, str):
            one = {"path": one}
        check_mapping(one, DatasetSpec, w)
        if "self_pairs" in one:
            check_self_pairs(one, w, base_dir, earlier)
            continue
        if ("path" in one) == ("world" in one):
            raise UsageError(f"{w}: give exactly one of 'path' (file or hub id), 'world' (generated toy-world split) "
                             "or, for a stage's dataset, 'self_pairs' (pairs sampled from an earlier stage)")
        if "world" in one and not has_world:
            raise UsageError(f"{w}.world: the recipe has no 'world' section to generate {one['world']!r} from")
        path = one.get("path")
        if path and looks_local(path) and not resolve_path(path, base_dir).exists():
            raise UsageError(f"{w}.path: file not found: {resolve_path(path, base_dir)}")


def check_self_pairs(one: dict, where: str, base_dir: Path, earlier: list[str] | None) -> None:
    """`{self_pairs: {...}}`: its keys, an earlier source stage, a known clusterer and benchmark (no model loaded)."""
    if earlier is None:
        raise UsageError(f"{where}.self_pairs: self-generated pairs are a stage's training (or held-out) pairs only")
    if set(one) != {"self_pairs"}:
        raise UsageError(f"{where}: 'self_pairs' takes no other dataset keys ({', '.join(k for k in one if k != 'self_pairs')});"
                         " its prompts are self_pairs.questions (offset, limit) and its size self_pairs.pairs")
    w = f"{where}.self_pairs"
    pairs = one["self_pairs"]
    check_mapping(pairs, SelfPairsSpec, w)
    if pairs["from"] not in earlier:
        raise UsageError(f"{w}.from: {pairs['from']!r} is not an earlier stage{suggest(str(pairs['from']), earlier)}")
    try:
        make_clusterer(pairs.get("clusterer", SelfPairsSpec.clusterer))   # validates; loads no model
    except UsageError as e:
        raise UsageError(f"{w}.{e}") from None
    questions = pairs["questions"]
    check_mapping(questions, QuestionsSpec, f"{w}.questions")
    try:   # measure's own check of a benchmark name (and its path / split types)
        parse_measure_settings({"benchmarks": [{k: questions[k] for k in ("name", "path", "split") if k in questions}]},
                               f"{w}.questions")
    except UsageError as e:
        raise UsageError(str(e).replace(".questions.benchmarks[0]", ".questions")) from None
    if questions.get("path") and not resolve_path(questions["path"], base_dir).exists():
        raise UsageError(f"{w}.questions.path: file not found: {resolve_path(questions['path'], base_dir)}")


def check_model(reference: Any, where: str, base_dir: Path) -> None:
    """A model reference (hub id, local dir, .gguf, pkg:<package>) that can be loaded, checked without loading it."""
    if not isinstance(reference, str) or not reference:
        raise UsageError(f"{where}: expected a model reference (hub id org/name, local dir, .gguf file or "
                         f"pkg:<package>), got {reference!r}")
    if is_hub_id(reference) or reference.startswith(PACKAGE_PREFIX):
        check_reference(reference, where)
    else:
        check_reference(str(resolve_path(reference, base_dir)), where)


TEMPLATE_SUFFIXES = (".jinja", ".j2")  # TRL reads a chat_template_path with these endings as a template file


def check_quantization(quant: dict, where: str) -> None:
    """model.quantization: its keys and values (what QLoRA needs beyond them is recipe.check_rules')."""
    check_mapping(quant, Quantization, where)
    if quant["load_in_4bit"] is not True:
        raise UsageError(f"{where}.load_in_4bit: only 4-bit QLoRA is supported; set it to true or drop model.quantization")


NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
# TRL config fields with bounds TRL only enforces (if at all) when training starts -- after the parent stages
# have trained for minutes. Step and epoch caps are far beyond any real run and far below "never ends".
ARG_BOUNDS = {"learning_rate": (0, None), "max_steps": (-1, 10**9), "num_train_epochs": (0, 10**6),
              "per_device_train_batch_size": (1, None), "gradient_accumulation_steps": (1, None)}


def check_name(name: str, where: str) -> None:
    """`name` becomes a directory (checkpoints/<name>): a plain name, so outputs cannot leave checkpoints/."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"{where}: {name!r} is not a plain name (letters, digits, '_', '.', '-'; no path "
                         "separators or '..'; at most 100 characters); to write elsewhere set output_dir")


def check_shape(raw: dict, where: str, base_dir: Path) -> None:
    """Every key, type and value of a recipe mapping, and the files it names (not the rules across keys)."""
    check_mapping(raw, Recipe, where)   # seed and prompt_format: their declared bounds and choices
    check_name(raw["name"], f"{where}.name")
    model = raw["model"]
    check_mapping(model, ModelSpec, f"{where}.model")
    if ("path" in model) == ("build" in model):
        raise UsageError(f"{where}.model: give exactly one of 'path' (hub id or local dir) or 'build' (a tiny local model)")
    if "build" in model:
        check_mapping(model["build"], BuildSpec, f"{where}.model.build")
        if "corpus" not in model["build"] and "pretrain" not in model:
            raise UsageError(f"{where}.model.build: needs 'corpus' (tokenizer training text) or a model.pretrain dataset")
        if "corpus" in model["build"]:
            _check_dataset(model["build"]["corpus"], f"{where}.model.build.corpus", base_dir, bool(raw.get("world")))
    else:
        check_model(model["path"], f"{where}.model.path", base_dir)
    if "pretrain" in model:
        check_mapping(model["pretrain"], PretrainSpec, f"{where}.model.pretrain")
        _check_dataset(model["pretrain"]["dataset"], f"{where}.model.pretrain.dataset", base_dir, bool(raw.get("world")))
        validate_trainer_args("sft", model["pretrain"].get("args", {}), f"{where}.model.pretrain.args")
    if raw.get("lora") is not None:
        check_mapping(raw["lora"], LoraSpec, f"{where}.lora")
    earlier = ["base"]
    for stage, spec in (raw.get("stages") or {}).items():
        w = f"{where}.stages.{stage}"
        if stage in ("base", "compare", "sweeps", "world") or not str(stage).isidentifier():
            raise UsageError(f"{w}: {stage!r} is reserved or not a valid stage name (use letters, digits, _)")
        check_mapping(spec, StageSpec, w)   # trainer, mode, prompt_format: their declared choices
        parent = spec.get("from", earlier[-1])
        if parent not in earlier:
            raise UsageError(f"{w}.from: {parent!r} is not an earlier stage{suggest(parent, earlier)}")
        if spec["trainer"] == "measure":  # a measure-only stage: an existing checkpoint, by hub id or path
            if "model" not in spec:
                raise UsageError(f"{w}: a 'measure' stage needs 'model' (hub id, local dir, .gguf file or "
                                 "pkg:<package> of the checkpoint)")
            check_model(spec["model"], f"{w}.model", base_dir)
        else:
            if "dataset" not in spec:
                raise UsageError(f"{w}: missing required key 'dataset'")
            _check_dataset(spec["dataset"], f"{w}.dataset", base_dir, bool(raw.get("world")), earlier)
            validate_trainer_args(spec["trainer"], spec.get("args", {}), f"{w}.args")
            if "heldout" in spec:
                if spec["trainer"] != "dpo":
                    raise UsageError(f"{w}.heldout: held-out preference pairs are read by the DPO effect report "
                                     f"(train/dpo_effect.py), for 'dpo' stages only; this stage is {spec['trainer']!r}")
                _check_dataset(spec["heldout"], f"{w}.heldout", base_dir, bool(raw.get("world")), earlier)
            template = (spec.get("args") or {}).get("chat_template_path")
            if isinstance(template, str) and template.endswith(TEMPLATE_SUFFIXES) \
                    and not resolve_path(template, base_dir).is_file():
                raise UsageError(f"{w}.args.chat_template_path: file not found: {resolve_path(template, base_dir)}")
        if isinstance(spec.get("lora"), dict):
            check_mapping(spec["lora"], LoraSpec, f"{w}.lora")
        earlier.append(stage)
    if model.get("quantization") is not None:
        check_quantization(model["quantization"], f"{where}.model.quantization")
    check_numbers(raw, where)   # NaN / infinities / integers beyond 64 bits, anywhere else in the recipe
    # the `measure` section is checked where it is parsed, once: Recipe.from_mapping (measure.scoring.config);
    # its during_training block is the chain's (train/dynamics.py), checked here
    if isinstance(raw.get("measure"), dict) and "during_training" in raw["measure"]:
        check_during_training(raw, f"{where}.measure.during_training")
    if raw.get("world") is not None:
        validate_world(raw["world"], f"{where}.world")


def check_during_training(raw: dict, where: str) -> None:
    """measure.during_training: its keys, exactly one schedule, a valid benchmark, stages that train."""
    block = raw["measure"]["during_training"]
    check_mapping(block, DuringTrainingSpec, where)
    if ("every" in block) == ("evaluations" in block):
        raise UsageError(f"{where}: give exactly one of 'every' (optimizer steps between measurements) or "
                         "'evaluations' (measurements per stage)")
    if block.get("benchmark") is not None:
        try:
            parse_measure_settings({"benchmarks": [block["benchmark"]]}, where)
        except UsageError as e:   # named as this key, not as the list the measure section would hold
            raise UsageError(str(e).replace(f"{where}.benchmarks[0]", f"{where}.benchmark")) from None
    elif not (raw["measure"].get("benchmarks")):
        raise UsageError(f"{where}.benchmark: the measure section lists no benchmarks to take the probe from; "
                         "name one here (e.g. benchmark: {name: jsonl, path: eval.jsonl})")
    parse_stop_rules(block.get("stop_when"), f"{where}.stop_when")
    trained = [s for s, spec in (raw.get("stages") or {}).items() if spec.get("trainer") != "measure"]
    if "pretrain" in raw["model"]:
        trained.insert(0, BASE)
    for stage in block.get("stages") or []:
        if stage not in trained:
            raise UsageError(f"{where}.stages: {stage!r} is not a stage this recipe trains{suggest(str(stage), trained)}")
