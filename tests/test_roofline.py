"""The roofline part (harness/roofline.py) and its FLOP count (harness/flops.py) on the tiny model: the count
against torch's own FlopCounterMode and TRL's compute_flops_per_token, a hand count from the tiny config, and
`python -m harness.run only=[roofline]` end to end. Rates are only checked to be positive and finite."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from harness.flops import Call, CallCounter, backward_flops, call_flops, forward_flops, model_shape
from harness.run import DEFAULT_PARTS, main, parse_options
from measure.common.errors import UsageError

REPO_DATA = "tests/data"
R = 4   # LoRA rank in these tests


def hand_macs(config) -> int:
    """Multiply-adds per token of a Llama decoder's linears, from its config alone."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    d = config.num_attention_heads * (h // config.num_attention_heads)
    d_kv = config.num_key_value_heads * (h // config.num_attention_heads)
    return layers * (h * (d + 2 * d_kv) + d * h + 3 * h * i)


def hand_lora(config, r: int) -> int:
    """LoRA A and B of every linear of a Llama decoder without grouped-query attention (the tiny one):
    r * (in + out) each."""
    h, i = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * r * (4 * (h + h) + 2 * (h + i) + (i + h))


@pytest.fixture
def eager_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")   # matmuls torch counts


def test_shape_and_hand_count(eager_model):
    c = eager_model.config
    shape = model_shape(eager_model)
    assert shape.linear_macs == hand_macs(c) == 81920   # 2 layers x (64*192 + 64*64 + 3*64*128)
    assert (shape.hidden, shape.vocab, shape.layers, shape.attn_width) == (64, c.vocab_size, 2, 64)
    call = Call(rows=3, new=7, context=9, grad=True, head=21)
    lora = dataclasses.replace(shape, lora_params=100)
    t = 3 * 7
    assert forward_flops(lora, call) == 2 * 81920 * t + 2 * 64 * c.vocab_size * 21 + 4 * 2 * 64 * t * 9 + 2 * 100 * t
    assert backward_flops(lora, call) == 2 * 81920 * t + 2 * 64 * c.vocab_size * 21 + 8 * 2 * 64 * t * 9 + 4 * 100 * t
    no_grad = dataclasses.replace(call, grad=False)   # a reference forward: no backward, no adapter
    assert backward_flops(lora, no_grad) == 0 and call_flops(lora, no_grad) == forward_flops(shape, no_grad)


def test_forward_count_equals_torch_and_trl(eager_model):
    """A full forward: the counter's calls give exactly the FLOPs torch counts, and TRL's forward per token."""
    from torch.utils.flop_counter import FlopCounterMode
    from trl.trainer.utils import compute_flops_per_token
    shape = model_shape(eager_model)
    ids = torch.randint(7, eager_model.config.vocab_size, (3, 7))
    with torch.no_grad(), CallCounter(eager_model) as counter, FlopCounterMode(display=False) as torch_count:
        eager_model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert counter.calls == [Call(rows=3, new=7, context=7, grad=False, head=21)]
    ours = sum(call_flops(shape, c) for c in counter.calls)
    assert ours == torch_count.get_total_flops()
    assert ours == 21 * compute_flops_per_token(eager_model.config, 7) // 3   # TRL: 3 x forward per token


def test_lora_step_count_equals_torch_but_layer0(eager_model):
    """Forward + backward through the frozen base with a LoRA adapter: torch's count is the formula's less the
    activation gradients nobody needs, those of layer 0's q, k, v (and their LoRA A) reading the frozen embeddings."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    base = model_shape(eager_model)
    peft = get_peft_model(eager_model, LoraConfig(r=R, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    shape = dataclasses.replace(base, lora_params=sum(p.numel() for p in peft.parameters() if p.requires_grad))
    assert shape.lora_params == hand_lora(eager_model.config, R)
    ids = torch.randint(7, eager_model.config.vocab_size, (3, 7))
    with CallCounter(eager_model) as counter, FlopCounterMode(display=False) as torch_count:
        peft(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum().backward()
    h = eager_model.config.hidden_size
    unneeded = 2 * 21 * (3 * h * h + 3 * h * R)
    assert sum(call_flops(shape, c) for c in counter.calls) - unneeded == torch_count.get_total_flops()


def write_recipe(tmp_path, model_dir, *, precompute: bool = True):
    from harness.subject import REPO
    data = REPO / REPO_DATA
    recipe = {"name": "roof-tiny", "output_dir": str(tmp_path / "chain"), "model": {"path": str(model_dir)},
              "prompt_format": "qa", "lora": {"r": R, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
              "stages": {"dpo": {"trainer": "dpo", "from": "base", "dataset": str(data / "dpo.jsonl"),
                                 "args": {"per_device_train_batch_size": 2, "max_length": 48, "learning_rate": 1e-4,
                                          "precompute_ref_log_probs": precompute}}},
              "measure": {"benchmarks": [{"name": "jsonl", "path": str(data / "eval.jsonl")}], "n_samples": 2,
                          "max_new_tokens": 4}}
    path = tmp_path / "roof.yaml"
    path.write_text(json.dumps(recipe))   # JSON is YAML
    return path


@pytest.mark.slow
def test_roofline_part_end_to_end(tiny_model_dir, tmp_path):
    recipe = write_recipe(tmp_path, tiny_model_dir)
    out = tmp_path / "bench.json"
    main(["only=[roofline]", f"roof_recipe={recipe}", "roof_questions=3", "roof_steps=1", "roof_repeats=2", f"out={out}"])
    r = json.loads(out.read_text())["roofline"]
    assert r["stage"] == "dpo" and r["pairs"].endswith("tests/data/dpo.jsonl") and r["threads"] >= 1
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(tiny_model_dir)
    m, h, v, layers = hand_macs(config), config.hidden_size, config.vocab_size, config.num_hidden_layers
    for name in ("sampling", "sft", "dpo"):
        w = r[name]
        for key in ("gflops_per_s", "roof_gflops_per_s", "fraction_of_roof"):
            assert w[key] > 0 and math.isfinite(w[key]), (name, key)
        assert w["fraction_of_roof"] == pytest.approx(w["gflops_per_s"] / w["roof_gflops_per_s"])
        roof = w["roof"]   # the roof: the model's mix of matmuls, FLOP-weighted
        flops = sum(s["count"] * 2 * s["m"] * s["k"] * s["n"] for s in roof["shapes"])
        assert roof["gflops_per_s"] == pytest.approx(flops / sum(s["count"] * s["seconds"] for s in roof["shapes"]) / 1e9)
        assert sum(s["count"] * s["k"] * s["n"] for s in roof["shapes"]) == m + h * v
    assert r["sampling"]["questions"] == 3 and r["sampling"]["answer_tokens"] > 0
    for name in ("sft", "dpo"):
        w = r[name]
        assert w["steps_timed"] == 1 and w["warmup_steps"] == 1
        assert w["trainable_parameters"] == hand_lora(config, R)
        p, total = w["trainable_parameters"], 0
        for c in w["calls_first_step"]:   # the step's FLOPs from its calls, counted by hand from the config
            t = c["rows"] * c["new"]
            assert c["grad"] and c["fused"] and c["head"] == c["rows"] * (c["new"] - 1)   # TRL's fused LM head
            total += 4 * m * t + 4 * h * v * c["head"] + 12 * layers * h * t * c["context"] + 6 * p * t
        assert w["gflop_per_step"] == pytest.approx(total / 1e9, rel=1e-12)
        assert w["reference_forward_in_step"] is False   # SFT has none; DPO's ref log-probs were precomputed
    # SFT trains prompt + chosen and prompt + rejected at twice the DPO batch: the same sequences per step
    assert r["sft"]["batch_size"] == 2 * r["dpo"]["batch_size"] == 4
    assert r["sft"]["tokens_per_forward_median"] == r["dpo"]["tokens_per_forward_median"]


def test_roofline_options():
    assert "roofline" not in DEFAULT_PARTS and parse_options([])["only"] == list(DEFAULT_PARTS)
    opts = parse_options(["only=[roofline]", "roof_steps=3", "roof_questions=8"])
    assert opts["only"] == ["roofline"] and opts["roof_steps"] == 3 and opts["roof_questions"] == 8
    assert opts["roof_recipe"] == "recipes/smollm2-control.yaml"
    with pytest.raises(UsageError, match="roof_steps: expected an integer >= 1"):
        parse_options(["only=[roofline]", "roof_steps=0"])


def test_recipe_without_dpo_stage_is_a_usage_error(tmp_path, tiny_model_dir):
    from harness.roofline import benchmark_roofline
    path = write_recipe(tmp_path, tiny_model_dir)
    recipe = json.loads(path.read_text())
    recipe["stages"] = {"sft": {"trainer": "sft", "from": "base", "dataset": recipe["stages"]["dpo"]["dataset"]}}
    path.write_text(json.dumps(recipe))
    with pytest.raises(UsageError, match="no stage with trainer: dpo"):
        benchmark_roofline(recipe_path=str(path), model_ref=None, pairs=None, questions=1, steps=1, repeats=1)


def test_pairs_self_generated_kept_as_sampled_or_formatted(tmp_path, tiny_model_dir):
    """A chain's self-generated pairs (a dir with self_pairs.json) are TRL rows already in the stage's prompt
    format and load as they are; a plain pairs file is rendered in the stage's format (qa here)."""
    from harness.roofline import load_pairs
    from train.recipe import load_recipe
    recipe = load_recipe(write_recipe(tmp_path, tiny_model_dir))
    own = tmp_path / "own"
    own.mkdir()
    row = {"prompt": "Q: Who?\nA:", "chosen": " Ann.\n", "rejected": " Bob.\n"}
    (own / "pairs.jsonl").write_text(json.dumps(row) + "\n")
    (own / "self_pairs.json").write_text("{}")
    dataset, path = load_pairs(recipe, "dpo", str(own / "pairs.jsonl"))
    assert path == own / "pairs.jsonl" and list(dataset) == [row]
    (tmp_path / "plain.jsonl").write_text(json.dumps({"prompt": "Who?", "chosen": "Ann.", "rejected": "Bob."}) + "\n")
    dataset, _ = load_pairs(recipe, "dpo", str(tmp_path / "plain.jsonl"))
    assert dataset[0]["prompt"] == "Q: Who?\nA:"
    with pytest.raises(UsageError, match="roof_pairs=.*not found"):
        load_pairs(recipe, "dpo", str(tmp_path / "nowhere.jsonl"))
