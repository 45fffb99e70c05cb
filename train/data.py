"""Training datasets: hub id or local JSON/JSONL/CSV/Parquet through `datasets`, in TRL's formats.

Row selection: `offset` skips the first rows of a source, `limit` then keeps at most that many, in file
order (hub datasets: split order). So one file splits deterministically into disjoint parts, e.g. SFT on
{offset: 0, limit: 1000}, DPO on {offset: 1000, limit: 600}; the fingerprint records both.

Formats (detected per dataset from its columns, or forced with `format:`):
  text                      {"text"}                               pretraining / plain LM
  prompt_completion         {"prompt", "completion"}               SFT
  messages                  {"messages": [{"role", "content"}]}    SFT (conversational)
  preference                {"prompt", "chosen", "rejected"}       DPO / ORPO / CPO / KTO (paired)
  hh                        {"chosen", "rejected"}, full "\n\nHuman: ...\n\nAssistant: ..." dialogues
                            (Anthropic HH): the shared prefix up to the last "\n\nAssistant:" is the prompt
  unpaired_preference       {"prompt", "completion", "label"}      KTO

An `sft` stage also takes paired data (preference, hh): each pair becomes the prompt with its chosen answer
as the completion (`chosen_rows`; the rejected answer is dropped), so SFT imitates the preferred answers
of one preference file and a later DPO stage can take other rows of the same file.
A `kto` stage also takes paired data (preference, hh): each pair becomes two unpaired rows, chosen ->
label true, rejected -> label false (`unpair_rows`), so one preference file serves DPO and KTO alike.

String prompt/completion data is rendered in the recipe's `prompt_format`, the same one measurement
uses: `chat` turns it into conversational messages (TRL applies the tokenizer's chat template), `qa`
into the plain "Q: ...\nA:" text a base model is prompted with, `hh` into "\n\nHuman: ...\n\nAssistant:"
turns. HH dialogues keep their own turns in `qa` and `hh` (they are already HH text).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import datasets

from measure.common.errors import UsageError
from measure.common.io import iter_rows, read_text, require_file, sha256_file
from measure import format_prompt
from train.paths import looks_local, resolve_path
from train.recipe_spec import DatasetSpec

REQUIRED = {"text": ("text",), "prompt_completion": ("prompt", "completion"), "messages": ("messages",),
            "preference": ("prompt", "chosen", "rejected"), "hh": ("chosen", "rejected"),
            "unpaired_preference": ("prompt", "completion", "label")}
ACCEPTS = {"pretrain": ("text",), "sft": ("text", "prompt_completion", "messages", "preference", "hh"),
           "dpo": ("preference", "hh"), "orpo": ("preference", "hh"), "cpo": ("preference", "hh"),
           "kto": ("preference", "hh", "unpaired_preference")}
HH_ASSISTANT = "\n\nAssistant:"


def detect_format(columns: list[str]) -> str | None:
    cols = set(columns)
    for fmt in ("preference", "unpaired_preference", "hh", "messages", "prompt_completion", "text"):
        if set(REQUIRED[fmt]) <= cols:
            return fmt
    return None


def split_hh(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """Anthropic HH implicit prompt: the prompt is the longest shared prefix of the two dialogues that
    ends with "\n\nAssistant:" (a few HH rows contain a later "Assistant:" inside one answer only)."""
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(HH_ASSISTANT)
    if cut < 0:
        raise UsageError(f"{where}: chosen and rejected share no prefix ending in a '\\n\\nAssistant:' turn")
    prompt = common[: cut + len(HH_ASSISTANT)]
    return prompt, chosen[len(prompt):].strip(), rejected[len(prompt):].strip()


def hh_to_messages(prompt: str) -> list[dict]:
    """'\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:' -> user/assistant messages (last user turn open).

    Two turns of one speaker in a row (a few HH dialogues have "Assistant: ...\n\nAssistant: ...") become
    one message, paragraphs joined: chat templates (Gemma's, Llama's) require alternating roles."""
    messages = []
    for chunk in prompt.split("\n\n"):
        for marker, role in (("Human:", "user"), ("Assistant:", "assistant")):
            if chunk.startswith(marker):
                text = chunk[len(marker):].strip()
                if text and messages and messages[-1]["role"] == role:
                    messages[-1]["content"] += "\n\n" + text
                elif text:
                    messages.append({"role": role, "content": text})
                break
        else:
            if messages and chunk.strip():  # a paragraph break inside a turn
                messages[-1]["content"] += "\n\n" + chunk.strip()
    return messages


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def normalize_row(row: dict, fmt: str, prompt_format: str, where: str) -> dict:
    """Check one row's fields and render it in TRL's format for the recipe's prompt_format."""
    for key in REQUIRED[fmt]:
        if row.get(key) is None:
            raise UsageError(f"{where}: missing field {key!r} (format {fmt!r} needs {', '.join(REQUIRED[fmt])})")
    if fmt == "text":
        if not isinstance(row["text"], str):
            raise UsageError(f"{where}: 'text' must be a string")
        return {"text": row["text"]}
    if fmt == "messages":
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in msgs):
            raise UsageError(f"{where}: 'messages' must be a list of {{role, content}} objects")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in msgs]}
    if fmt == "hh":
        if not isinstance(row["chosen"], str) or not isinstance(row["rejected"], str):
            raise UsageError(f"{where}: HH 'chosen' and 'rejected' must be dialogue strings")
        prompt, chosen, rejected = split_hh(row["chosen"], row["rejected"], where)
        if prompt_format == "chat":
            return {"prompt": hh_to_messages(prompt), "chosen": _assistant(chosen), "rejected": _assistant(rejected)}
        return {"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected}
    # prompt-based formats: strings are rendered; conversational lists pass through as TRL takes them
    out = {k: row[k] for k in REQUIRED[fmt]}
    answer_keys = [k for k in ("completion", "chosen", "rejected") if k in out]
    if isinstance(out["prompt"], str):
        for k in answer_keys:
            if not isinstance(out[k], str):
                raise UsageError(f"{where}: {k!r} must be a string like 'prompt' (or both conversational lists)")
        if prompt_format == "chat":
            out["prompt"] = _user(out["prompt"])
            for k in answer_keys:
                out[k] = _assistant(out[k])
        else:   # measurement's qa or hh prompt, no shots; a qa answer ends its line as the Q/A blocks do
            out["prompt"] = format_prompt(None, out["prompt"], prompt_format, fewshot=[])
            for k in answer_keys:
                out[k] = " " + out[k].strip() + ("\n" if prompt_format == "qa" else "")
    elif not isinstance(out["prompt"], list):
        raise UsageError(f"{where}: 'prompt' must be a string or a list of messages")
    if fmt == "unpaired_preference" and isinstance(row["label"], str) and row["label"].lower() in ("true", "false"):
        out["label"] = row["label"].lower() == "true"  # CSV cells are strings
    elif fmt == "unpaired_preference" and not isinstance(row["label"], bool):
        raise UsageError(f"{where}: 'label' must be true or false")
    return out


def chosen_rows(rows: list[dict]) -> list[dict]:
    """Paired rows {prompt, chosen, rejected} -> SFT rows {prompt, completion: chosen}."""
    return [{"prompt": row["prompt"], "completion": row["chosen"]} for row in rows]


def unpair_rows(rows: list[dict]) -> list[dict]:
    """Paired rows {prompt, chosen, rejected} -> unpaired {prompt, completion, label}, two per pair.

    Order matters because KTOTrainer samples sequentially and estimates its KL term from each prompt
    followed by its batch neighbour's completion, which must answer a *different* prompt. Pairs go out as
    c1 r2 c3 r4 ... then r1 c2 r3 c4 ...: labels alternate within a batch, every prompt appears once per
    half, and a row's two halves are never neighbours (TRL's own unpairing puts all chosen rows first,
    giving one-label batches).
    """
    halves: list[list[dict]] = [[], []]
    for i, row in enumerate(rows):
        for half, (key, label) in enumerate((("chosen", True), ("rejected", False))):
            halves[(half + i) % 2].append({"prompt": row["prompt"], "completion": row[key], "label": label})
    return halves[0] + halves[1]


def _read_rows(path: Path, where: str) -> list[tuple[str, dict]]:
    """(location, row) pairs from a local file; locations name file:line or file row N."""
    require_file(path, "dataset file")   # a regular file (not /dev/zero, not a FIFO), before any reader opens it
    name = path.name.removesuffix(".gz")
    text = read_text(path, encoding="utf-8-sig") if name.endswith(".json") and path.suffix != ".gz" else ""
    if text.lstrip().startswith("{"):
        try:  # {"data": [rows]}; anything else starting with "{" is JSON lines
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            return [(f"{path} row {i + 1}", r) for i, r in enumerate(data["data"])]
    if name.endswith((".json", ".jsonl")):  # a JSON array or JSON lines, each row with its file:line
        return list(iter_rows(path))
    if name.endswith((".csv", ".parquet")):
        # CSV cells are text: read them as strings so an answer "4" is not turned into the integer 4
        kwargs = {}
        if name.endswith(".csv"):
            import csv
            import gzip
            if path.suffix != ".gz":
                read_text(path, encoding="utf-8-sig")  # a non-UTF-8 file: a named error, not pandas' traceback
            with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8-sig", newline="") as f:
                header = next(csv.reader(f), [])
            kwargs["features"] = datasets.Features({c: datasets.Value("string") for c in header})
        ds = datasets.load_dataset("csv" if name.endswith(".csv") else "parquet", data_files=str(path), split="train",
                                   **kwargs)
        # CSV row N is line N + 1 of the file (the header is line 1)
        return [(f"{path}:{i + 2}" if name.endswith(".csv") else f"{path} row {i + 1}", r) for i, r in enumerate(ds)]
    if name.endswith(".txt"):
        return [(f"{path}:{i + 1}", {"text": line}) for i, line in
                enumerate(read_text(path).splitlines()) if line.strip()]
    raise UsageError(f"{where}: unsupported file type {path.suffix!r}; use .json, .jsonl, .csv, .parquet, .txt (optionally .gz)")


def load_training_data(spec: str | dict | list, *, trainer: str, prompt_format: str, base_dir: Path,
                       world_dir: Path | None = None, where: str = "dataset", seed: int = 0,
                       self_pairs: Mapping[int, tuple[Path, dict]] | None = None) -> tuple[datasets.Dataset, list[dict]]:
    """Load one or several dataset specs, validated row by row, as one `datasets.Dataset` for `trainer`.
    Returns the dataset and a fingerprint record per source (for stage.json). `self_pairs`: entry index ->
    (pairs.jsonl, fingerprint) of the self-generated pairs train/self_pairs.py built for that entry; their
    rows are already TRL rows in the stage's prompt format (the prompt exactly as it was sampled)."""
    specs = spec if isinstance(spec, list) else [spec]
    rows: list[dict] = []
    fingerprints: list[dict] = []
    for i, one in enumerate(specs):
        w = f"{where}[{i}]" if isinstance(spec, list) else where
        one = {"path": one} if isinstance(one, str) else dict(one)
        built = (self_pairs or {}).get(i) if "self_pairs" in one else None
        if "self_pairs" in one:
            if built is None:
                raise UsageError(f"{w}.self_pairs: these pairs are sampled when the stage runs (train/self_pairs.py); "
                                 "there is nothing to load yet")
            source, fp = _read_rows(built[0], w), dict(built[1])
        elif "world" in one:
            if world_dir is None:
                raise UsageError(f"{w}.world: no generated world available")
            path = world_dir / f"{one['world']}.jsonl"
            if not path.exists():
                raise UsageError(f"{w}.world: the generated world has no split {one['world']!r} ({path})")
            source, fp = _read_rows(path, w), {"file": str(path), "sha256": sha256_file(path)}
        elif looks_local(one["path"]):
            path = resolve_path(one["path"], base_dir)
            if not path.exists():
                raise UsageError(f"{w}.path: file not found: {path}")
            source, fp = _read_rows(path, w), {"file": str(path), "sha256": sha256_file(path)}
        else:
            hub = datasets.load_dataset(one["path"], one.get("name"), split=one.get("split", DatasetSpec.split))
            source = [(f"{one['path']} row {j + 1}", r) for j, r in enumerate(hub)]
            fp = {"hub_id": one["path"], "config": one.get("name"), "split": one.get("split", DatasetSpec.split),
                  "fingerprint": hub._fingerprint}
        renames = one.get("columns") or {}
        source = [(loc, {renames.get(k, k): v for k, v in row.items()}) for loc, row in source]
        if not source:
            raise UsageError(f"{w}: the dataset has no rows")
        fmt = one.get("format", DatasetSpec.format)
        if fmt == "auto":
            fmt = detect_format(list(source[0][1]))
            if fmt is None:
                raise UsageError(f"{source[0][0]}: cannot tell the dataset format from columns {sorted(source[0][1])}; "
                                 f"expected one of: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in REQUIRED.items()))
        if fmt not in ACCEPTS[trainer]:
            raise UsageError(f"{w}: a {trainer!r} stage needs a dataset in format {' or '.join(ACCEPTS[trainer])}, "
                             f"this one is {fmt!r}")
        offset = one.get("offset") or DatasetSpec.offset
        if offset >= len(source):
            raise UsageError(f"{w}.offset: {offset} skips every row; the dataset has {len(source)} rows")
        source = source[offset: offset + one["limit"] if one.get("limit") else None]
        normalized = [{k: row[k] for k in REQUIRED[fmt]} if built else normalize_row(row, fmt, prompt_format, loc)
                      for loc, row in source]
        fp.update(format=fmt, rows=len(normalized))
        if offset or one.get("limit"):
            fp.update(offset=offset, limit=one.get("limit"))
        if trainer == "kto" and fmt in ("preference", "hh"):
            normalized = unpair_rows(normalized)
            fp.update(unpaired_rows=len(normalized))
        if trainer == "sft" and fmt in ("preference", "hh"):
            normalized = chosen_rows(normalized)
            fp.update(sft_target="chosen")
        fingerprints.append(fp)
        rows.extend(normalized)
    kinds = {tuple(sorted(r)) for r in rows}
    if len(kinds) > 1:
        raise UsageError(f"{where}: the datasets have different formats after normalization ({sorted(kinds)}); "
                         "combine datasets of one format per stage")
    ds = datasets.Dataset.from_list(rows)
    fingerprints.append({"combined_sha256": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()})
    return ds, fingerprints


def corpus_texts(spec: Any, *, base_dir: Path, world_dir: Path | None, where: str) -> list[str]:
    """Plain texts for tokenizer training, from a text dataset (or any dataset: all string fields)."""
    ds, _ = load_training_data(spec, trainer="pretrain", prompt_format="qa", base_dir=base_dir,
                               world_dir=world_dir, where=where)
    return list(ds["text"])
