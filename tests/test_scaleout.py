"""Scale-out: sharded measurement, the optional vLLM backend, QLoRA validation, accelerate configs,
and the gathered save path that FSDP / ZeRO-3 / QLoRA stages use."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from measure.scoring.config import BenchmarkSpec, parse_measure_settings
from measure.common.errors import UsageError

pytestmark = pytest.mark.slow  # end-to-end runs through the real entry points (make test runs them)

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "tests/data/eval.jsonl"
RUN_ARGS = ["benchmark=jsonl", f"benchmark_path={EVAL}", "n_samples=3", "max_new_tokens=5", "batch_size=5",
            "clusterers=[exact,jaccard]", "bootstrap=50"]  # 12 questions: batches of 5, 5, 2


# ---------------------------------------------------------------- sharded measurement

def test_batch_plan_deals_whole_batches_round_robin():
    from measure.sampling.sample import batch_plan
    assert batch_plan(12, 5) == [range(0, 5), range(5, 10), range(10, 12)]
    assert batch_plan(12, 5, 0, 2) == [range(0, 5), range(10, 12)]
    assert batch_plan(12, 5, 1, 2) == [range(5, 10)]
    assert batch_plan(3, 5, 1, 2) == []  # more ranks than batches: an idle rank
    with pytest.raises(ValueError):
        batch_plan(3, 5, 2, 2)


def test_shards_together_equal_one_process(tiny_model, tmp_path):
    """Rows sampled by rank 0 and rank 1 of 2 (own caches) are exactly a single process's rows."""
    from measure.data.benchmarks import load_benchmark
    from measure.sampling.sample import sample_questions
    model, tok = tiny_model
    questions = load_benchmark(BenchmarkSpec("jsonl", str(EVAL)))[:7]
    settings = parse_measure_settings({"n_samples": 2, "max_new_tokens": 4, "batch_size": 3})
    whole = sample_questions(model, tok, questions, settings, "chat")
    parts = [sample_questions(model, tok, questions, settings, "chat", cache_path=tmp_path / f"r{r}.jsonl", shard=(r, 2))
             for r in (0, 1)]
    assert [r.question.id for r in parts[0]] == [q.id for q in questions[:3] + questions[6:]]
    by_id = {r.question.id: r for part in parts for r in part}
    assert [by_id[q.id] for q in questions] == whole
    # a re-run of one shard resumes entirely from its own cache (same rows, nothing sampled)
    assert sample_questions(None, tok, questions, settings, "chat", cache_path=tmp_path / "r1.jsonl", shard=(1, 2)) == parts[1]


def test_leave_process_group_closes_the_group(tmp_path):
    """Commands end by closing the launch's process group (a live gloo group at exit can abort a rank)."""
    import torch.distributed as dist
    from measure.sampling.ranks import leave_process_group
    leave_process_group()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert dist.is_initialized()
    leave_process_group()
    assert not dist.is_initialized()


def test_aligned_weights_moves_misaligned_weights_only(tiny_model):
    """A weight starting off a 64-byte boundary (as memory-mapped safetensors may) is copied to aligned memory,
    values unchanged; aligned ones are left where they are, and tied weights stay one tensor."""
    import copy
    from measure.sampling.backends import aligned_weights
    model = copy.deepcopy(tiny_model[0])
    embed = model.get_input_embeddings().weight
    values = embed.detach().clone()
    buffer = torch.empty(embed.numel() + 16)
    embed.data = buffer[2:2 + embed.numel()].view_as(embed).copy_(values)   # starts 8 bytes past an aligned block
    assert embed.data_ptr() % 64 != 0
    untouched = {name: p.data_ptr() for name, p in model.named_parameters() if p.data_ptr() % 64 == 0}
    aligned_weights(model)
    assert embed.data_ptr() % 64 == 0 and torch.equal(embed, values)
    assert model.get_output_embeddings().weight is embed        # tied: the same parameter
    assert all(p.data_ptr() == untouched[name] for name, p in model.named_parameters() if name in untouched)


def _report_core(path: Path) -> dict:
    report = json.loads(path.read_text())
    return {k: v for k, v in report.items() if k not in ("timing", "provenance")}


def test_two_process_launch_matches_single_process(tiny_model_dir, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m measure run ...` on CPU (2 gloo ranks; accelerate's
    --cpu flag alone starts one process) writes the same samples, questions and report as one process.
    Byte for byte: both load the model through measure.sampling.backends (weights re-aligned, so every process does
    the same arithmetic) and run one thread each."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = ["-m", "measure", "run", f"model={tiny_model_dir}", *RUN_ARGS]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
              *run, f"out={tmp_path / 'sharded'}"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in (launch, [sys.executable, *run, f"out={tmp_path / 'single'}"])]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert json.loads((sharded / "report.json").read_text())["provenance"]["processes"] == 2
    assert json.loads((single / "report.json").read_text())["provenance"]["processes"] == 1
    for name in ("samples.jsonl", "questions.jsonl"):
        assert (single / name).read_bytes() == (sharded / name).read_bytes(), name
    assert _report_core(single / "report.json") == _report_core(sharded / "report.json")
    assert not list(sharded.glob("samples.partial*"))  # per-rank resume caches removed once merged


# ---------------------------------------------------------------- backends

def test_topk_entropy_hand_values():
    from measure.sampling.backends import topk_entropy
    assert topk_entropy([math.log(0.25)] * 4) == pytest.approx(math.log(4))
    # top-2 of a distribution (0.5, 0.25, tail 0.25) renormalized to (2/3, 1/3)
    assert topk_entropy([math.log(0.5), math.log(0.25)]) == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert topk_entropy([-3.0]) == 0.0


def test_vllm_generation_uses_topk_entropy_and_exact_chosen_logprob(tiny_model):
    """The vLLM output -> Generation conversion, on hand-made vLLM-shaped objects (no vllm needed)."""
    from measure.sampling.backends import VLLMBackend
    _, tok = tiny_model
    lp = lambda v, rank: SimpleNamespace(logprob=v, rank=rank)  # noqa: E731  (vllm.sequence.Logprob's fields)
    a, b = tok.convert_tokens_to_ids(tok.tokenize("Paris"))[:1][0], tok.eos_token_id
    steps = [{a: lp(math.log(0.5), 1), 7: lp(math.log(0.5), 2)},                  # chosen inside the top 2
             {b: lp(math.log(0.1), 3), 8: lp(math.log(0.6), 1), 9: lp(math.log(0.3), 2)}]  # chosen outside
    gen = VLLMBackend(logprobs=2)._generation(tok, SimpleNamespace(token_ids=[a, b], logprobs=steps), [b], ())
    assert gen.text == tok.decode([a], skip_special_tokens=True).strip()
    assert gen.token_logprobs == pytest.approx((math.log(0.5), math.log(0.1)))  # EOS step kept, as in HF
    assert gen.token_entropies == pytest.approx((math.log(2), -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))))


def test_backend_settings_state_the_entropy():
    from measure.sampling.backends import HFBackend, VLLMBackend, make_backend
    assert HFBackend().settings() == {"backend": "hf", "entropy": "exact full-vocabulary"}
    assert VLLMBackend(5).settings()["entropy"].startswith("top-k truncated (k=5")
    with pytest.raises(UsageError, match=r"unknown backend 'vlm'.*valid choices: hf, vllm"):
        make_backend("vlm")
    with pytest.raises(UsageError, match="vllm_logprobs"):
        make_backend("vllm", vllm_logprobs=0)


def test_vllm_missing_is_a_usage_error_before_anything_runs(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from measure import cli
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", f"model={tiny_model_dir}", *RUN_ARGS, f"out={tmp_path / 'v'}", "backend=vllm"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "backend=vllm: the vllm package is not installed" in err
    assert not (tmp_path / "v").exists()  # refused before the benchmark, the model or the out dir


def test_vllm_missing_message(monkeypatch):
    from measure.sampling.backends import make_backend
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(UsageError, match=r"backend=vllm: the vllm package is not installed.*pip install -e \.\[vllm\]"):
        make_backend("vllm").check((0, 1))


def test_vllm_backend_on_gpu(tiny_model_dir, tmp_path):
    """Runs only where vllm and a CUDA GPU exist: same questions through both backends, throughput recorded."""
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vllm backend needs a CUDA GPU")
    from measure.common.io import provenance
    from measure.pipeline import measure_model
    settings = {b: parse_measure_settings({"n_samples": 5, "max_new_tokens": 16, "clusterers": ["exact"], "bootstrap": 20,
                                           "backend": b}) for b in ("hf", "vllm")}
    spec = BenchmarkSpec("jsonl", str(EVAL))
    reports = {b: measure_model(str(tiny_model_dir), spec, settings[b], tmp_path / b, prompt_format="chat",
                                provenance=provenance(), shard=False) for b in ("hf", "vllm")}
    assert reports["vllm"].settings.get("entropy").startswith("top-k truncated (k=20")
    assert reports["hf"].settings.get("entropy") == "exact full-vocabulary"
    rate = {b: r.timing["seconds_per_question"]["sampling"] for b, r in reports.items()}
    (tmp_path / "throughput.json").write_text(json.dumps(rate))
    print(f"sampling seconds per question: {rate}")
    assert reports["vllm"].n_questions == reports["hf"].n_questions == 12


# ---------------------------------------------------------------- QLoRA

def _tiny(**overrides):
    from train.recipe import load_recipe
    return load_recipe(REPO / "recipes/tiny.yaml", overrides)


def test_qlora_without_bitsandbytes_is_a_named_error(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(UsageError, match=r"model\.quantization: 4-bit loading needs the bitsandbytes package"):
        _tiny(**{"model.quantization": {"load_in_4bit": True}})


def test_qlora_without_cuda_is_a_named_error(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match=r"model\.quantization: 4-bit loading \(bitsandbytes\) needs a CUDA GPU"):
        _tiny(**{"model.quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}})


@pytest.mark.parametrize("quant, message", [
    ({"load_in_4bit": True, "bnb_4bit_quant_type": "nf5"}, r"bnb_4bit_quant_type: unknown 'nf5'.*fp4, nf4"),
    ({"load_in_4bit": True, "bnb_4bit_compute_dtype": "bf16"}, r"bnb_4bit_compute_dtype: unknown 'bf16'.*bfloat16"),
    ({"load_in_4bit": False}, r"load_in_4bit: only 4-bit QLoRA is supported"),
    ({"load_in_8bit": True}, r"model\.quantization: unknown key 'load_in_8bit'.*load_in_4bit"),
])
def test_qlora_bad_settings(quant, message):
    with pytest.raises(UsageError, match=message):
        _tiny(**{"model.quantization": quant})


def test_qlora_needs_a_lora_stage():
    with pytest.raises(UsageError, match=r"model\.quantization: QLoRA trains LoRA adapters.*no LoRA stage"):
        _tiny(**{"lora": None, "model.quantization": {"load_in_4bit": True}})


def test_qlora_cli_exit_2(capsys):
    from train import chain
    with pytest.raises(SystemExit) as exit_info:
        chain.main(["recipe=recipes/tiny.yaml", "model.quantization.load_in_4bit=true", "output_dir=/nonexistent/x"])
    assert exit_info.value.code == 2 and "model.quantization" in capsys.readouterr().err


def test_quantization_config_object():
    from train.recipe import Recipe
    from train.stages import quantization_config

    def recipe(model: dict) -> Recipe:
        return Recipe.from_mapping({"name": "q", "model": {"path": "org/base", **model}}, "q.yaml")
    config = quantization_config(recipe({"quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4",
                                                          "bnb_4bit_compute_dtype": "float16",
                                                          "bnb_4bit_use_double_quant": True}}))
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "fp4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float16
    defaults = quantization_config(recipe({"quantization": {"load_in_4bit": True}}))   # train.recipe.Quantization's
    assert defaults.bnb_4bit_quant_type == "nf4" and defaults.bnb_4bit_compute_dtype == torch.bfloat16
    assert not defaults.bnb_4bit_use_double_quant
    assert quantization_config(recipe({})) is None


# ---------------------------------------------------------------- accelerate configs

CONFIGS = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero3": "DEEPSPEED"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_accelerate_config_parses_and_builds_its_plugin(name, monkeypatch):
    """Each file loads with accelerate's own config loader, and the launcher turns it into the env
    from which accelerate builds the FSDP / DeepSpeed plugin -- everything short of launching."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
    path = REPO / "recipes" / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig) and config.distributed_type.value == CONFIGS[name]
    assert (config.num_processes, config.mixed_precision, config.compute_environment.value) == (8, "bf16", "LOCAL_MACHINE")
    args = launch_command_parser().parse_args(["--config_file", str(path), "train/sft.py", "recipe=recipes/tiny.yaml"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    assert args.num_processes == 8 and args.mixed_precision == "bf16"
    if name == "zero3":
        args.deepspeed_fields_from_accelerate_config = ",".join([*defaults.deepspeed_config, "mixed_precision"])
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if name == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and "FULL_STATE_DICT" in str(plugin.state_dict_type)
        assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    elif name == "zero3":
        from accelerate.utils import DeepSpeedPlugin
        plugin = DeepSpeedPlugin()
        assert plugin.zero_stage == 3 and plugin.zero3_init_flag
        assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    else:
        assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed


# ---------------------------------------------------------------- the gathered save path (FSDP / ZeRO-3 / QLoRA)

def test_gathered_save_merges_the_adapter_into_the_unsharded_parent(tiny_model_dir, tmp_path, monkeypatch):
    """Force the path sharded runs take (Trainer.save_model -> reload -> merge on the main process) in one
    process: the stage's merged model equals parent + its own saved adapter, and gathered/ is gone."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from train import stages
    from train.recipe import load_recipe
    raw = yaml.safe_load((REPO / "recipes/tiny.yaml").read_text())
    raw["model"] = {"path": str(tiny_model_dir)}
    raw["stages"] = {"sft": raw["stages"]["sft"]}
    raw["stages"]["sft"]["dataset"] = str(REPO / "tests/data/sft.jsonl")
    raw["stages"]["sft"]["args"]["max_steps"] = 2
    raw.update(output_dir=str(tmp_path / "out"), measure=None)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "r.yaml")
    from train.pretrain import run_base
    run_base(recipe, measure=False)
    monkeypatch.setattr(stages, "needs_gather", lambda trainer: True)
    manifest = stages.run_stage(recipe, "sft", measure=False)
    out = tmp_path / "out" / "sft"
    assert not (out / "gathered").exists() and manifest.adapter == str(out / "adapter")
    expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out / "adapter").merge_and_unload()
    merged = load_file(out / "model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(merged[k], v) for k, v in expected.state_dict().items() if k in merged)
    changed = {k for k in merged if not torch.equal(merged[k], base[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
