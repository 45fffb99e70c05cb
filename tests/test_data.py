"""Training-data loading: TRL formats, the Anthropic HH implicit prompt on the real file, rendering in the
recipe's prompt_format, and malformed rows named by file and line."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from measure.common.errors import UsageError
from train.data import detect_format, hh_to_messages, load_training_data, split_hh

REPO = Path(__file__).resolve().parents[1]


def load(spec, trainer, prompt_format="chat"):
    return load_training_data(spec, trainer=trainer, prompt_format=prompt_format, base_dir=REPO)


def test_hh_implicit_prompt_on_the_real_file(shared_data):
    path = shared_data / "hh-rlhf" / "harmless-base_test.jsonl.gz"
    raw = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    ds, fingerprints = load(str(path), "dpo", "qa")
    assert len(ds) == len(raw) == 2312 and fingerprints[0]["format"] == "hh"
    for row, original in zip(ds, raw):
        # the prompt ends at an Assistant turn, and prompt + answer gives back each original dialogue
        assert row["prompt"].endswith("\n\nAssistant:")
        assert original["chosen"].startswith(row["prompt"]) and original["rejected"].startswith(row["prompt"])
        assert original["chosen"][len(row["prompt"]):].strip() == row["chosen"].strip()
        assert original["rejected"][len(row["prompt"]):].strip() == row["rejected"].strip()
    # row 1255 of the file has a later "Assistant:" inside the chosen answer only: the prompt is the
    # shared prefix, not the chosen dialogue's last Assistant turn
    r = raw[1254]
    prompt, chosen, rejected = split_hh(r["chosen"], r["rejected"], "row 1255")
    assert r["rejected"].startswith(prompt) and "drag kings?" in prompt[-40:]


def test_hh_dialogues_stay_hh_text_in_the_hh_format(shared_data):
    """HH dialogues in prompt_format hh: the dialogue's own turns (already HH text), as in qa."""
    spec = {"path": str(shared_data / "hh-rlhf" / "harmless-base_test.jsonl.gz"), "limit": 20}
    hh, qa = (load(spec, "dpo", fmt)[0].to_list() for fmt in ("hh", "qa"))
    assert hh == qa and hh[0]["prompt"].startswith("\n\nHuman: ") and hh[0]["prompt"].endswith("\n\nAssistant:")


def test_hh_in_chat_format_becomes_messages(shared_data):
    ds, _ = load({"path": str(shared_data / "hh-rlhf" / "harmless-base_test.jsonl.gz"), "limit": 20}, "dpo", "chat")
    row = ds[0]
    assert [m["role"] for m in row["prompt"]][0] == "user" and row["prompt"][-1]["role"] == "user"
    assert row["chosen"][0]["role"] == "assistant" and row["chosen"][0]["content"]
    assert hh_to_messages("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]
    # two Assistant turns in a row (4 rows of this file): one message, so chat templates see alternating roles
    assert hh_to_messages("\n\nHuman: hi\n\nAssistant: wait\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "wait\n\nhello"}, {"role": "user", "content": "bye"}]
    whole, _ = load(str(shared_data / "hh-rlhf" / "harmless-base_test.jsonl.gz"), "dpo", "chat")
    for row in whole:
        roles = [m["role"] for m in row["prompt"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"], roles


def test_formats_detected_and_rendered(tmp_path):
    assert detect_format(["prompt", "chosen", "rejected"]) == "preference"
    assert detect_format(["chosen", "rejected"]) == "hh"
    assert detect_format(["messages"]) == "messages"
    assert detect_format(["prompt", "completion"]) == "prompt_completion"
    assert detect_format(["text"]) == "text"
    assert detect_format(["question"]) is None
    qa, _ = load(str(REPO / "tests/data/sft.jsonl"), "sft", "qa")
    assert qa[0]["prompt"] == "Q: What is the capital of Avalor?\nA:" and qa[0]["completion"] == " The capital of Avalor is Tamsin.\n"
    chat, _ = load(str(REPO / "tests/data/sft.jsonl"), "sft", "chat")
    assert chat[0]["prompt"] == [{"role": "user", "content": "What is the capital of Avalor?"}]
    # hh: measurement's HH prompt (measure.format_prompt), the answer after its marker's space
    hh, _ = load(str(REPO / "tests/data/sft.jsonl"), "sft", "hh")
    assert hh[0]["prompt"] == "\n\nHuman: What is the capital of Avalor?\n\nAssistant:"
    assert hh[0]["completion"] == " The capital of Avalor is Tamsin."
    csv = tmp_path / "pairs.csv"
    csv.write_text("question,answer\nWhat is 2+2?,4\n")
    renamed, fp = load({"path": str(csv), "columns": {"question": "prompt", "answer": "completion"}}, "sft", "qa")
    assert renamed[0]["completion"] == " 4\n" and fp[0]["rows"] == 1


def test_malformed_rows_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": 3, "rejected": "c"}\n')
    with pytest.raises(UsageError, match=r"bad.jsonl:2: 'chosen' must be a string"):
        load(str(bad), "dpo")
    csv = tmp_path / "bad.csv"
    csv.write_text("prompt,completion\nq1,a1\nq2,\n")
    with pytest.raises(UsageError, match=r"bad.csv:3: missing field 'completion'"):
        load(str(csv), "sft")
    with pytest.raises(UsageError, match=r"cannot tell the dataset format"):
        load(str(REPO / "tests/data/eval.jsonl"), "sft")
    unpaired = tmp_path / "kto.jsonl"
    unpaired.write_text('{"prompt": "a", "completion": "b", "label": true}\n')
    with pytest.raises(UsageError, match=r"a 'sft' stage needs a dataset in format"):
        load(str(unpaired), "sft")


def test_json_files_name_the_line_of_a_bad_row(tmp_path):
    """A pretty-printed JSON array and JSON lines both point at file:line; {"data": [...]} is read too."""
    import json as _json
    rows = [{"prompt": "Q1?", "completion": "A1."}, {"prompt": "Q2?", "completion": "A2."}, {"prompt": "Q3?"}]
    array = tmp_path / "sft.json"
    array.write_text(_json.dumps(rows, indent=2))
    bad_line = 10   # "[" on line 1, then 4 lines per object: the third starts on line 10
    assert array.read_text().splitlines()[bad_line - 1] == "  {"
    with pytest.raises(UsageError, match=rf"sft.json:{bad_line}: .*completion"):
        load_training_data(str(array), trainer="sft", prompt_format="qa", base_dir=tmp_path)
    lines = tmp_path / "sft_lines.json"   # JSON lines under a .json name
    lines.write_text("\n".join(_json.dumps(r) for r in rows) + "\n")
    with pytest.raises(UsageError, match=r"sft_lines.json:3: .*completion"):
        load_training_data(str(lines), trainer="sft", prompt_format="qa", base_dir=tmp_path)
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(_json.dumps({"data": rows[:2]}))
    ds, _ = load_training_data(str(wrapped), trainer="sft", prompt_format="qa", base_dir=tmp_path)
    assert ds["prompt"] == ["Q: Q1?\nA:", "Q: Q2?\nA:"] and ds["completion"] == [" A1.\n", " A2.\n"]


def test_offset_and_limit_split_one_file_into_disjoint_parts(shared_data, tmp_path):
    """recipes/gemma3-270m.yaml trains SFT and DPO on disjoint rows of one HH file: offset + limit, in file order."""
    path = str(shared_data / "hh-rlhf" / "harmless-base_test.jsonl.gz")
    whole, _ = load({"path": path, "limit": 30}, "dpo", "qa")
    head, fp_head = load({"path": path, "limit": 10}, "dpo", "qa")
    tail, fp_tail = load({"path": path, "offset": 10, "limit": 20}, "dpo", "qa")
    assert list(head["prompt"]) + list(tail["prompt"]) == list(whole["prompt"])
    assert (fp_head[0]["offset"], fp_head[0]["limit"], fp_head[0]["rows"]) == (0, 10, 10)
    assert (fp_tail[0]["offset"], fp_tail[0]["limit"], fp_tail[0]["rows"]) == (10, 20, 20)
    assert fp_head[-1]["combined_sha256"] != fp_tail[-1]["combined_sha256"]
    last, fp_last = load({"path": path, "offset": 2300}, "dpo", "qa")   # no limit: to the end of the file
    assert len(last) == 12 and fp_last[0]["limit"] is None
    _, fp_all = load(path, "dpo", "qa")
    assert "offset" not in fp_all[0]   # a whole-file spec records what it did before (reuse stays valid)
    with pytest.raises(UsageError, match=r"dataset.offset: 2312 skips every row; the dataset has 2312 rows"):
        load({"path": path, "offset": 2312}, "dpo", "qa")


@pytest.mark.parametrize("key,value,message", [
    ("offset", -1, r"stages.sft.dataset.offset: -1 is out of range; valid: 0 \.\."),
    ("offset", "10", r"stages.sft.dataset.offset: expected int, got str"),
    ("limit", 0, r"stages.sft.dataset.limit: 0 is out of range; valid: 1 \.\."),
    ("ofset", 3, r"stages.sft.dataset: unknown key 'ofset'.*offset"),
])
def test_offset_and_limit_are_validated_in_the_recipe(key, value, message):
    from train.recipe import load_recipe
    with pytest.raises(UsageError, match=message):
        load_recipe(REPO / "recipes/tiny.yaml", {"stages.sft.dataset": {"path": "tests/data/sft.jsonl", key: value}})


def test_sft_on_paired_data_imitates_the_chosen_answer(shared_data):
    """SFT on HH (recipes/gemma3-270m.yaml): the prompt with its chosen final turn as the completion."""
    path = str(shared_data / "hh-rlhf" / "harmless-base_test.jsonl.gz")
    pairs, _ = load({"path": path, "limit": 5}, "dpo", "chat")
    sft, fp = load({"path": path, "limit": 5}, "sft", "chat")
    assert sorted(sft.column_names) == ["completion", "prompt"] and fp[0]["sft_target"] == "chosen"
    assert list(sft["prompt"]) == list(pairs["prompt"]) and list(sft["completion"]) == list(pairs["chosen"])
    local, _ = load(str(REPO / "tests/data/dpo.jsonl"), "sft", "qa")   # the plain preference format too
    assert local[0]["completion"].startswith(" ") and "rejected" not in local.column_names
