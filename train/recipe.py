"""Recipes: one YAML per ablation chain, `key=value` overrides, validation before anything runs.

    recipe = load_recipe("recipes/toy.yaml", {"stages.dpo.args.beta": 0.05})

Validation is total: unknown keys anywhere (including inside a stage's `args`, checked against the
installed TRL config class), wrong types, missing local files and a `from:` that names no earlier
stage all raise UsageError (exit 2) naming the key path and the valid choices -- before any file is
written. So do non-finite numbers and integers beyond 64 bits anywhere, seeds outside 0..2**32-1, out of
range TRL step/epoch/learning-rate values (ARG_BOUNDS), and a `name` that is not a plain name; the YAML
itself is read strictly (measure/yamlload.py: true/false booleans, no duplicate keys, bounded aliases). The result is a plain resolved dict (what every manifest records) plus typed accessors.

Optional keys beyond the basics: a stage's `prompt_format` (overrides the recipe's for that stage: see
`stage_prompt_format`), `trainer: measure` stages (an existing checkpoint by hub id / path, measured
only), a `dpo` stage's `heldout` (preference pairs it is not trained on, for the DPO effect report of
train/dpo_effect.py), a chat template file in a stage's `args.chat_template_path` (found like a dataset
path, see `resolved_args`), and `model.quantization: {load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype:
bfloat16}` (QLoRA; needs bitsandbytes and a CUDA GPU, checked here).
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from measure.errors import UsageError, suggest
from measure.io import read_text
from measure.model_source import PACKAGE_PREFIX, check_reference, is_hub_id
from measure.overrides import apply_overrides
from measure.values import as_int, as_number, as_seed, check_numbers
from measure.yamlload import load_yaml
from measure.prompts import PROMPT_FORMATS
from train.trainers import TRAINER_SPECS

TRAINERS = tuple(TRAINER_SPECS)  # stage trainer names (train/trainers.py)
CHAIN_MODES = ("merge", "continue")
DATASET_FORMATS = ("auto", "text", "prompt_completion", "messages", "preference", "hh", "unpaired_preference")

# key -> (allowed python types, required?)   `None` in types means null is allowed
TOP_KEYS = {"name": ((str,), True), "seed": ((int,), False), "output_dir": ((str,), False),
            "model": ((dict,), True), "prompt_format": ((str,), False), "lora": ((dict, type(None)), False),
            "stages": ((dict,), False), "measure": ((dict, type(None)), False), "world": ((dict, type(None)), False),
            "sweep": ((dict, type(None)), False)}
MODEL_KEYS = {"path": ((str,), False), "build": ((dict,), False), "pretrain": ((dict,), False),
              "dtype": ((str,), False), "quantization": ((dict, type(None)), False)}
# QLoRA: the parent of every LoRA stage is loaded in 4 bit (bitsandbytes); see train/stages.py
QUANT_KEYS = {"load_in_4bit": ((bool,), True), "bnb_4bit_quant_type": ((str,), False),
              "bnb_4bit_compute_dtype": ((str,), False), "bnb_4bit_use_double_quant": ((bool,), False)}
QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
BUILD_KEYS = {"architecture": ((str,), False), "hidden_size": ((int,), False), "num_layers": ((int,), False),
              "num_heads": ((int,), False), "intermediate_size": ((int,), False), "vocab_size": ((int,), False),
              "max_position_embeddings": ((int,), False), "corpus": ((str, dict, list), False)}
PRETRAIN_KEYS = {"dataset": ((str, dict, list), True), "args": ((dict,), False)}
LORA_KEYS = {"r": ((int,), False), "alpha": ((int, float), False), "dropout": ((int, float), False),
             "target_modules": ((list, str), False)}
STAGE_KEYS = {"trainer": ((str,), True), "from": ((str,), False), "dataset": ((str, dict, list), False),
              "mode": ((str,), False), "args": ((dict,), False), "lora": ((bool, dict), False),
              "model": ((str,), False), "prompt_format": ((str,), False), "heldout": ((str, dict, list), False)}
DATASET_KEYS = {"path": ((str,), False), "world": ((str,), False), "name": ((str,), False),
                "split": ((str,), False), "format": ((str,), False), "limit": ((int,), False),
                "offset": ((int,), False), "columns": ((dict,), False)}
LORA_DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


def _check_keys(node: Any, schema: dict, where: str) -> None:
    if not isinstance(node, dict):
        raise UsageError(f"{where}: expected a mapping with keys {', '.join(schema)}, got {type(node).__name__}")
    for key in node:
        if key not in schema:
            raise UsageError(f"{where}: unknown key {key!r}{suggest(str(key), schema)}")
    for key, (kinds, required) in schema.items():
        if key not in node:
            if required:
                raise UsageError(f"{where}: missing required key {key!r}")
            continue
        value = node[key]
        if value is None and type(None) in kinds:
            continue
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise UsageError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")


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
                             f"{__import__('trl').__version__}){suggest(key, fields)}")
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
                                 f"{__import__('trl').__version__}){suggest(str(item), choices)}")


def _check_dataset(spec: Any, where: str, base_dir: Path, has_world: bool) -> None:
    specs = spec if isinstance(spec, list) else [spec]
    if not specs:
        raise UsageError(f"{where}: give at least one dataset")
    for i, one in enumerate(specs):
        w = f"{where}[{i}]" if isinstance(spec, list) else where
        if isinstance(one, str):
            one = {"path": one}
        _check_keys(one, DATASET_KEYS, w)
        if ("path" in one) == ("world" in one):
            raise UsageError(f"{w}: give exactly one of 'path' (file or hub id) or 'world' (generated toy-world split)")
        if "world" in one and not has_world:
            raise UsageError(f"{w}.world: the recipe has no 'world' section to generate {one['world']!r} from")
        if "offset" in one:
            as_int(one["offset"], f"{w}.offset", 0)
        if "limit" in one:
            as_int(one["limit"], f"{w}.limit", 1)
        if one.get("format", "auto") not in DATASET_FORMATS:
            raise UsageError(f"{w}.format: unknown format {one['format']!r}{suggest(one['format'], DATASET_FORMATS)}")
        path = one.get("path")
        if path and looks_local(path) and not resolve_path(path, base_dir).exists():
            raise UsageError(f"{w}.path: file not found: {resolve_path(path, base_dir)}")


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


def resolved_args(args: dict, base_dir: Path) -> dict:
    """A stage's TRL args with a chat template file (`chat_template_path: recipes/chat_templates/x.jinja`)
    found like a dataset path -- TRL itself only looks in the current directory and would otherwise take
    the name for a hub model to clone the template from."""
    template = args.get("chat_template_path")
    if isinstance(template, str) and template.endswith(TEMPLATE_SUFFIXES):
        return {**args, "chat_template_path": str(resolve_path(template, base_dir))}
    return args


def looks_local(path: str) -> bool:
    """A path (relative or absolute, or with a data-file extension) rather than a hub id like 'org/name'."""
    return path.startswith((".", "/", "~")) or Path(path).suffix in (".json", ".jsonl", ".csv", ".parquet", ".gz", ".txt") \
        or path.count("/") != 1


def resolve_path(path: str, base_dir: Path) -> Path:
    """Relative paths: from the current directory if they exist there, else from the recipe's folder,
    else from its parent (the project root, for recipes in recipes/)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for root in (base_dir, base_dir.parent):
        if (root / p).exists():
            return root / p
    return p


def validate_quantization(quant: dict, where: str, has_lora: bool) -> None:
    """model.quantization: keys and values, then what QLoRA needs here (a LoRA recipe, bitsandbytes, CUDA)."""
    import importlib.util
    _check_keys(quant, QUANT_KEYS, where)
    if quant["load_in_4bit"] is not True:
        raise UsageError(f"{where}.load_in_4bit: only 4-bit QLoRA is supported; set it to true or drop model.quantization")
    if quant.get("bnb_4bit_quant_type", "nf4") not in QUANT_TYPES:
        raise UsageError(f"{where}.bnb_4bit_quant_type: unknown {quant['bnb_4bit_quant_type']!r}"
                         f"{suggest(quant['bnb_4bit_quant_type'], QUANT_TYPES)}")
    if quant.get("bnb_4bit_compute_dtype", "bfloat16") not in COMPUTE_DTYPES:
        raise UsageError(f"{where}.bnb_4bit_compute_dtype: unknown {quant['bnb_4bit_compute_dtype']!r}"
                         f"{suggest(quant['bnb_4bit_compute_dtype'], COMPUTE_DTYPES)}")
    if not has_lora:
        raise UsageError(f"{where}: QLoRA trains LoRA adapters on a 4-bit parent; the recipe has no LoRA stage "
                         "(set a top-level 'lora' section or a stage 'lora'), or drop model.quantization")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError(f"{where}: 4-bit loading needs the bitsandbytes package, which is not installed "
                         "(pip install bitsandbytes, on a machine with a CUDA GPU), or drop model.quantization")
    import torch
    if not torch.cuda.is_available():
        raise UsageError(f"{where}: 4-bit loading (bitsandbytes) needs a CUDA GPU and none is visible here; "
                         "drop model.quantization to train in full precision")


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


def validate(raw: dict, where: str, base_dir: Path) -> None:
    _check_keys(raw, TOP_KEYS, where)
    check_name(raw["name"], f"{where}.name")
    if "seed" in raw:
        as_seed(raw["seed"], f"{where}.seed")
    if raw.get("prompt_format", "chat") not in PROMPT_FORMATS:
        raise UsageError(f"{where}.prompt_format: unknown {raw['prompt_format']!r}{suggest(raw['prompt_format'], PROMPT_FORMATS)}")
    model = raw["model"]
    _check_keys(model, MODEL_KEYS, f"{where}.model")
    if ("path" in model) == ("build" in model):
        raise UsageError(f"{where}.model: give exactly one of 'path' (hub id or local dir) or 'build' (a tiny local model)")
    if "build" in model:
        _check_keys(model["build"], BUILD_KEYS, f"{where}.model.build")
        from train.tiny import ARCHITECTURES
        arch = model["build"].get("architecture", "llama")
        if arch not in ARCHITECTURES:
            raise UsageError(f"{where}.model.build.architecture: unknown {arch!r}{suggest(arch, ARCHITECTURES)}")
        if "corpus" not in model["build"] and "pretrain" not in model:
            raise UsageError(f"{where}.model.build: needs 'corpus' (tokenizer training text) or a model.pretrain dataset")
        if "corpus" in model["build"]:
            _check_dataset(model["build"]["corpus"], f"{where}.model.build.corpus", base_dir, bool(raw.get("world")))
    else:
        check_model(model["path"], f"{where}.model.path", base_dir)
    if "pretrain" in model:
        _check_keys(model["pretrain"], PRETRAIN_KEYS, f"{where}.model.pretrain")
        _check_dataset(model["pretrain"]["dataset"], f"{where}.model.pretrain.dataset", base_dir, bool(raw.get("world")))
        validate_trainer_args("sft", model["pretrain"].get("args", {}), f"{where}.model.pretrain.args")
    if raw.get("lora") is not None:
        _check_keys(raw["lora"], LORA_KEYS, f"{where}.lora")
    earlier = ["base"]
    for stage, spec in (raw.get("stages") or {}).items():
        w = f"{where}.stages.{stage}"
        if stage in ("base", "compare", "sweeps", "world") or not str(stage).isidentifier():
            raise UsageError(f"{w}: {stage!r} is reserved or not a valid stage name (use letters, digits, _)")
        _check_keys(spec, STAGE_KEYS, w)
        if spec["trainer"] not in TRAINERS and spec["trainer"] != "measure":
            raise UsageError(f"{w}.trainer: unknown trainer {spec['trainer']!r}{suggest(spec['trainer'], (*TRAINERS, 'measure'))}")
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
            _check_dataset(spec["dataset"], f"{w}.dataset", base_dir, bool(raw.get("world")))
            validate_trainer_args(spec["trainer"], spec.get("args", {}), f"{w}.args")
            if "heldout" in spec:
                if spec["trainer"] != "dpo":
                    raise UsageError(f"{w}.heldout: held-out preference pairs are read by the DPO effect report "
                                     f"(train/dpo_effect.py), for 'dpo' stages only; this stage is {spec['trainer']!r}")
                _check_dataset(spec["heldout"], f"{w}.heldout", base_dir, bool(raw.get("world")))
            template = (spec.get("args") or {}).get("chat_template_path")
            if isinstance(template, str) and template.endswith(TEMPLATE_SUFFIXES) \
                    and not resolve_path(template, base_dir).is_file():
                raise UsageError(f"{w}.args.chat_template_path: file not found: {resolve_path(template, base_dir)}")
        if spec.get("mode", "merge") not in CHAIN_MODES:
            raise UsageError(f"{w}.mode: unknown chaining mode {spec['mode']!r}{suggest(spec['mode'], CHAIN_MODES)}")
        if spec.get("mode") == "continue" and not (uses_lora(raw, stage) and (parent != "base" and uses_lora(raw, parent))):
            raise UsageError(f"{w}.mode: 'continue' keeps training the parent's LoRA adapter, so both {stage!r} and its "
                             f"parent {parent!r} must be LoRA stages (recipe 'lora' set, stage 'lora' not false)")
        if isinstance(spec.get("lora"), dict):
            _check_keys(spec["lora"], LORA_KEYS, f"{w}.lora")
        if spec.get("prompt_format", "chat") not in PROMPT_FORMATS:
            raise UsageError(f"{w}.prompt_format: unknown {spec['prompt_format']!r}{suggest(spec['prompt_format'], PROMPT_FORMATS)}")
        earlier.append(stage)
    if model.get("quantization") is not None:
        validate_quantization(model["quantization"], f"{where}.model.quantization",
                              any(uses_lora(raw, s) for s in raw.get("stages") or {}))
    check_numbers(raw, where)   # NaN / infinities / integers beyond 64 bits, anywhere else in the recipe
    if raw.get("measure") is not None:
        from measure.config import parse_measure_settings
        parse_measure_settings(raw["measure"], f"{where}.measure")
    if raw.get("world") is not None:
        from train.world import validate_world
        validate_world(raw["world"], f"{where}.world")


def uses_lora(raw: dict, stage: str) -> bool:
    if stage == "base":
        return False
    spec = raw["stages"][stage]
    if spec.get("trainer") == "measure" or spec.get("lora") is False:
        return False
    return isinstance(spec.get("lora"), dict) or raw.get("lora") is not None


def lora_settings(raw: dict, stage: str) -> dict | None:
    if not uses_lora(raw, stage):
        return None
    stage_lora = raw["stages"][stage].get("lora")
    return {**LORA_DEFAULTS, **(raw.get("lora") or {}), **(stage_lora if isinstance(stage_lora, dict) else {})}


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """Read, override, validate and resolve a recipe. Raises UsageError on any problem."""
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
        validate(raw, "", path.parent)  # key paths are built from "" so errors read "<file>: stages.dpo.args.beta: ..."
    except UsageError as e:
        raise UsageError(f"{path}: {str(e).lstrip('.: ')}") from None
    raw.setdefault("seed", 0)
    raw.setdefault("prompt_format", "chat")
    raw.setdefault("output_dir", f"checkpoints/{raw['name']}")
    raw.setdefault("stages", {})
    for stage, spec in raw["stages"].items():
        spec.setdefault("from", (["base", *raw["stages"]][list(raw["stages"]).index(stage)]))
        spec.setdefault("mode", "merge")
        spec.setdefault("args", {})
    raw["_recipe_path"] = str(path)
    return raw


def stage_prompt_format(recipe: dict, stage: str) -> str:
    """The prompt format a stage is trained and measured with: its own `prompt_format`, else the recipe's.

    Why per stage: a public chain mixes a base model (no chat template, or one it was never trained
    on: prompted with few-shot `qa`) and instruct checkpoints (prompted with their chat template, as
    deployed). The recipe's top-level format is the default, so the base stage uses it."""
    if stage == "base":
        return recipe["prompt_format"]
    return recipe["stages"][stage].get("prompt_format", recipe["prompt_format"])


def stage_names(recipe: dict) -> list[str]:
    """Chain order: base, then the recipe's stages as written."""
    return ["base", *recipe["stages"]]
