"""lm-polygraph's side of the real-model benchmark; runs INSIDE the peers virtualenv (.venv-peers), which holds
lm-polygraph and its own pinned dependency set, so this file imports nothing from this project.

    .venv-peers/bin/python harness/polygraph_peer.py <request.json> <result.json>

request: {"model": dir, "prompts": [chat-formatted text], "n_samples", "temperature", "max_new_tokens",
          "batch_size", "threads"}
What runs is what a researcher would write with lm-polygraph 0.7: a WhiteboxModel over the same
transformers checkpoint and tokenizer, a Dataset of the prompts (already chat-formatted by the toolkit's
format_prompt, so both see the same text; instruct=False keeps lm-polygraph from templating again) and
UEManager with MeanTokenEntropy, MaximumSequenceProbability, LexicalSimilarity (ROUGE-L) and
MonteCarloSequenceEntropy (the greedy-entropy, sequence-probability and sample-based estimators the
toolkit's report also computes), samples_n = N. Sampling at T with top_k disabled and top_p 1: the
toolkit's protocol (lm-polygraph's own default would add top_k=50). Its stat calculators are asked for no
attentions or hidden states (register_default_stat_calculators' own switches; with them it needs eager
attention), the fastest setting for these estimators. Forward calls are counted with a
forward hook on the model; the greedy tokens' entropies come from lm-polygraph's "entropy" statistic.
"""
from __future__ import annotations

import json
import sys
import time


def main(request_path: str, result_path: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from lm_polygraph import WhiteboxModel
    from lm_polygraph.defaults.register_default_stat_calculators import register_default_stat_calculators
    from lm_polygraph.estimators import (LexicalSimilarity, MaximumSequenceProbability, MeanTokenEntropy,
                                         MonteCarloSequenceEntropy)
    from lm_polygraph.utils.builder_enviroment_stat_calculator import BuilderEnvironmentStatCalculator
    from lm_polygraph.utils.dataset import Dataset
    from lm_polygraph.utils.generation_parameters import GenerationParameters
    from lm_polygraph.utils.manager import UEManager

    req = json.loads(open(request_path, encoding="utf-8").read())
    if req.get("threads"):
        torch.set_num_threads(int(req["threads"]))
    torch.manual_seed(int(req.get("seed", 0)))
    hf_model = AutoModelForCausalLM.from_pretrained(req["model"], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(req["model"], padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    params = GenerationParameters(temperature=float(req["temperature"]), top_k=0, top_p=1.0,
                                  max_new_tokens=int(req["max_new_tokens"]))
    model = WhiteboxModel(hf_model, tokenizer, model_path=req["model"], generation_parameters=params)
    forwards = [0]
    hf_model.register_forward_hook(lambda module, args, out: forwards.__setitem__(0, forwards[0] + 1))
    data = Dataset(list(req["prompts"]), [""] * len(req["prompts"]), batch_size=int(req["batch_size"]))
    estimators = [MeanTokenEntropy(), MaximumSequenceProbability(), LexicalSimilarity("rougeL"),
                  MonteCarloSequenceEntropy()]
    # no attentions / hidden states: none of these estimators reads them, and sdpa attention cannot return them
    calculators = register_default_stat_calculators("Whitebox", output_attentions=False, output_hidden_states=False)
    for calc in calculators:   # N samples per prompt (lm-polygraph's SamplingGenerationCalculator samples_n)
        if calc.name == "SamplingGenerationCalculator":
            calc.cfg["samples_n"] = int(req["n_samples"])
    manager = UEManager(data, model, estimators, available_stat_calculators=calculators,
                        builder_env_stat_calc=BuilderEnvironmentStatCalculator(model), generation_metrics=[],
                        ue_metrics=[], processors=[], ignore_exceptions=False, verbose=False,
                        max_new_tokens=int(req["max_new_tokens"]),
                        save_stats=["greedy_tokens", "greedy_texts", "entropy", "sample_tokens"])
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        manager()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = manager.stats
    greedy_tokens = [list(map(int, t)) for t in stats["greedy_tokens"]]
    sample_tokens = [[list(map(int, s)) for s in per] for per in stats.get("sample_tokens", [])]
    result = {"seconds": wall, "cpu_seconds": cpu, "forward_calls": forwards[0],
              "greedy_texts": list(stats["greedy_texts"]), "greedy_tokens": greedy_tokens,
              "greedy_entropies": [[float(h) for h in e] for e in stats["entropy"]],
              "answer_tokens": sum(map(len, greedy_tokens)) + sum(len(s) for per in sample_tokens for s in per),
              "estimators": {str(k): [float(v) for v in vals] for k, vals in manager.estimations.items()},
              "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                           "lm_polygraph": __import__("importlib.metadata").metadata.version("lm-polygraph")}}
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
