"""Did the DPO stage act? Three checks on a finished chain, written to <chain>/dpo_effect.json.

    python -m train.dpo_effect recipe=recipes/gemma3-270m.yaml     (train.chain runs it after the last stage)

For every `trainer: dpo` stage:
  margins   from its stage.json log history (TRL's rewards/margins and rewards/accuracies, the implicit
            reward beta * log(pi / pi_ref) of chosen minus rejected on the training batches): the first and
            the last logged values, and the means of the first and last quarter of the logs. At the first
            logged step a fresh LoRA adapter (B = 0) *is* the reference, so the margin starts at 0.
  weights   the stage's merged model against its parent's, tensor by tensor (safetensors, streamed): max and
            mean |delta w|, the relative Frobenius norm ||delta W|| / ||W|| (over all tensors, and over the
            changed ones only) and how many tensors changed.
  heldout   (when the stage names `heldout:` pairs, which must be rows it was not trained on) the summed
            log-probability of each chosen / rejected answer under the policy and under the parent:
            mean |delta logp| per answer and per token, and the held-out implicit reward margin
            beta * (delta logp_chosen - delta logp_rejected) with the share of pairs where it is > 0
            (TRL's reward accuracy, on pairs DPO never saw). Truncated like training (keep_start at the
            stage's max_length); pairs whose answers are cut away entirely are skipped and counted.

`acted` is true when the late margins exceed the early ones and are positive, and the weights changed;
the held-out margin is reported beside it, not folded in (on a CPU-sized run it may stay near 0).

A stage's effect records the sha256 of its inputs (`effect_inputs`: its and its parent's stage.json, the held-out
spec and digests); rerun on an unchanged stage, the report keeps the effect it holds instead of reloading models.

The report is typed (train/effect_records.py: DPOEffect of StageEffect of MarginTrajectory,
WeightDifference and HeldoutEffect), with one reader (`read_effect`) and one writer (`effect_to_json`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure import encode_prompt, load_tokenizer
from measure.common.errors import UsageError, exit_on_usage_error
from measure.common.io import sha256_json, write_json
from train import checkpoint as ckpt
from train.data import load_training_data
from train.recipe import Recipe, load_recipe
from train.self_pairs import prepare as prepare_pairs
from train import reuse
from train.effect_records import (REPORT, DPOEffect, HeldoutEffect, MarginTrajectory, StageEffect, WeightDifference,
                                 effect_to_json, heldout_from_json, margins_from_json, read_effect, weights_from_json)
from train.trainers import TRAINER_SPECS
from train.options import RecipeOptions, parse_recipe_cli
from train.outputs import check_chain

# ---------------------------------------------------------------- the three checks


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def margin_trajectory(log_history: list[dict]) -> MarginTrajectory:
    """First / last logged DPO reward margins and accuracies, and the early / late quarter means."""
    rows = [e for e in log_history if "rewards/margins" in e]
    if not rows:
        return margins_from_json({"n_logged": 0, "note": "no rewards/margins in the log history "
                                                         "(logging_steps larger than max_steps?)"})
    quarter = max(1, len(rows) // 4)
    pick = ("step", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "loss")
    early = _mean([e["rewards/margins"] for e in rows[:quarter]])
    late = _mean([e["rewards/margins"] for e in rows[-quarter:]])
    return margins_from_json({
            "n_logged": len(rows), "first": {k: rows[0].get(k) for k in pick}, "last": {k: rows[-1].get(k) for k in pick},
            "quarter": quarter, "early_mean_margin": early, "late_mean_margin": late,
            "early_mean_accuracy": _mean([e.get("rewards/accuracies", math.nan) for e in rows[:quarter]]),
            "late_mean_accuracy": _mean([e.get("rewards/accuracies", math.nan) for e in rows[-quarter:]]),
            "moved": len(rows) > 1 and late > early and late > 0})


def _safetensors(directory: Path) -> dict[str, Path]:
    """tensor name -> the .safetensors file of `directory` that holds it (one file or a sharded set)."""
    from safetensors import safe_open
    where: dict[str, Path] = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            where.update({name: path for name in f.keys()})
    return where


def weight_difference(model_dir: Path, parent_dir: Path) -> WeightDifference:
    """|delta w| of a merged model against its parent, streamed tensor by tensor over the shared names."""
    import torch
    from safetensors import safe_open
    mine, theirs = _safetensors(model_dir), _safetensors(parent_dir)
    if not mine or not theirs:
        return weights_from_json({"note": f"no safetensors weights to compare in {model_dir if not mine else parent_dir}"})
    shared = sorted(set(mine) & set(theirs))
    max_abs, abs_sum, n_elems, diff_sq, base_sq, changed, top = 0.0, 0.0, 0, 0.0, 0.0, [], []
    changed_sq = 0.0  # ||W||^2 of the changed tensors only (a LoRA stage leaves e.g. the embedding untouched)
    for name in shared:
        with safe_open(mine[name], framework="pt") as f:
            a = f.get_tensor(name).float()
        with safe_open(theirs[name], framework="pt") as f:
            b = f.get_tensor(name).float()
        if a.shape != b.shape:
            raise UsageError(f"{model_dir}: tensor {name} has shape {tuple(a.shape)}, its parent's {tuple(b.shape)}")
        d = (a - b).abs()  # float32 (a 262k-token embedding in float64 would need GBs); sums in float64
        m = float(d.max()) if d.numel() else 0.0
        d_sq, b_sq = float((d * d).sum(dtype=torch.float64)), float((b * b).sum(dtype=torch.float64))
        max_abs, abs_sum, n_elems = max(max_abs, m), abs_sum + float(d.sum(dtype=torch.float64)), n_elems + d.numel()
        diff_sq, base_sq = diff_sq + d_sq, base_sq + b_sq
        if m > 0:
            changed.append(name)
            changed_sq += b_sq
            top.append((math.sqrt(d_sq / b_sq) if b_sq else math.inf, name))
    return weights_from_json({"tensors": len(shared), "tensors_changed": len(changed), "max_abs": max_abs,
            "mean_abs": abs_sum / n_elems if n_elems else 0.0,
            "relative_frobenius": math.sqrt(diff_sq / base_sq) if base_sq else None,
            "relative_frobenius_changed": math.sqrt(diff_sq / changed_sq) if changed_sq else 0.0,
            "most_changed": [{"tensor": n, "relative_frobenius": r} for r, n in sorted(top, reverse=True)[:5]],
            "only_in_one": len(set(mine) ^ set(theirs))})


def _pair_ids(tokenizer, prompt: Any, answer: Any) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) for one TRL-format row half: conversational (chat template) or plain strings."""
    if isinstance(prompt, list):
        prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
        if not full.startswith(prompt_text):
            raise UsageError("the chat template renders the prompt differently alone and with its answer; "
                             "cannot split the answer's tokens off")
        answer_text = full[len(prompt_text):]
    else:
        prompt_text, answer_text = prompt, answer
    return encode_prompt(tokenizer, prompt_text), tokenizer(answer_text, add_special_tokens=False)["input_ids"]


def answer_logprobs(model, sequences: list[tuple[list[int], list[int]]], *, pad_id: int,
                    batch_size: int = 4) -> list[tuple[float, int]]:
    """(summed log-probability of the answer tokens given the prompt, number of answer tokens) per sequence."""
    import torch
    out: list[tuple[float, int]] = []
    model.eval()
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        width = max(len(p) + len(a) for p, a in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (p, a) in enumerate(chunk):  # right padding: positions are those of training
            ids[i, :len(p) + len(a)] = torch.tensor(p + a)
            mask[i, :len(p) + len(a)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
            for i, (p, a) in enumerate(chunk):  # log-softmax over the answer positions only (a 262k vocabulary)
                logp = torch.log_softmax(logits[i, len(p) - 1:len(p) + len(a) - 1].float(), dim=-1)
                out.append((float(logp.gather(-1, torch.tensor(a)[:, None]).sum()), len(a)))
    return out


def heldout_logprobs(recipe: Recipe, stage: str, *, batch_size: int = 4) -> HeldoutEffect:
    """Policy vs parent on the stage's `heldout` pairs (see the module docstring)."""
    spec = recipe.stages[stage]
    rows, fingerprints = load_training_data(spec.heldout, trainer="dpo", prompt_format=spec.prompt_format,
                                            base_dir=recipe.base_dir, where=f"stages.{stage}.heldout",
                                            self_pairs=prepare_pairs(recipe, stage, "heldout"))
    defaults = {f.name: f.default for f in dataclasses.fields(TRAINER_SPECS["dpo"].config_class())}
    beta = spec.args.get("beta", defaults["beta"])   # TRL's own default where the recipe sets none
    max_length = spec.args.get("max_length", defaults["max_length"])
    tokenizer = load_tokenizer(str(ckpt.stage_dir(recipe, stage)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sequences, kept = [], []
    for i, row in enumerate(rows):
        pair = [_pair_ids(tokenizer, row["prompt"], row[k]) for k in ("chosen", "rejected")]
        if max_length is not None:  # keep_start, as TRL truncates prompt + answer
            pair = [(p[:max_length], a[:max(0, max_length - len(p))]) for p, a in pair]
        if all(a for _, a in pair):
            sequences += pair
            kept.append(i)
    if not kept:
        return heldout_from_json({"pairs": 0, "skipped": len(rows), "note": "every held-out answer is cut away at max_length"})
    scores = {}
    for who, source in (("policy", str(ckpt.stage_dir(recipe, stage))), ("parent", ckpt.model_source(recipe, spec.parent))):
        model = ckpt.load_model(source, recipe.model.dtype)
        scores[who] = answer_logprobs(model, sequences, pad_id=pad_id, batch_size=batch_size)
        del model
    delta = [pol - par for (pol, _), (par, _) in zip(scores["policy"], scores["parent"])]
    tokens = [n for _, n in scores["policy"]]
    chosen, rejected = delta[0::2], delta[1::2]
    margins = [beta * (c - r) for c, r in zip(chosen, rejected)]
    return heldout_from_json({"pairs": len(kept), "skipped": len(rows) - len(kept), "beta": beta, "max_length": max_length,
            "dataset": [fp for fp in fingerprints if "combined_sha256" not in fp],
            "mean_abs_delta_logp": _mean([abs(d) for d in delta]),
            "mean_abs_delta_logp_per_token": sum(abs(d) for d in delta) / sum(tokens),
            "mean_delta_logp_chosen": _mean(chosen), "mean_delta_logp_rejected": _mean(rejected),
            "mean_margin": _mean(margins), "margin_accuracy": _mean([float(m > 0) for m in margins])})


def stage_effect(recipe: Recipe, stage: str, *, heldout: bool = True) -> StageEffect:
    manifest = ckpt.read_manifest(ckpt.stage_dir(recipe, stage))
    log = manifest.train_metrics.get("log_history") or []
    parent = recipe.stages[stage].parent
    margins = margin_trajectory(log)
    weights = weight_difference(ckpt.stage_dir(recipe, stage), Path(ckpt.model_source(recipe, parent)))
    held = heldout_logprobs(recipe, stage) if heldout and recipe.stages[stage].heldout is not None else None
    return StageEffect(stage=stage, parent=parent, margins=margins, weights=weights, heldout=held,
                       acted=bool(margins.moved) and (weights.tensors_changed or 0) > 0,
                       inputs=effect_inputs(recipe, stage, heldout=heldout),
                       absent=frozenset() if held is not None else frozenset({"heldout"}))


def effect_inputs(recipe: Recipe, stage: str, *, heldout: bool) -> str:
    """sha256 of what a stage's effect is computed from: its and its parent's stage.json (weights, log history,
    recipe) and, with held-out pairs, their spec and digests now (file contents; for self-generated ones, the
    stage.json of the stage they are sampled from)."""
    spec = recipe.stages[stage]
    held = {"spec": spec.heldout, "digests": reuse.held_out_digests(recipe, stage)} \
        if heldout and spec.heldout is not None else None
    return sha256_json({"stage": ckpt.manifest_hash(ckpt.stage_dir(recipe, stage)),
                        "parent": ckpt.manifest_hash(ckpt.stage_dir(recipe, spec.parent)), "heldout": held})


def dpo_effect(recipe: Recipe, *, heldout: bool = True) -> DPOEffect:
    """The report for every finished `trainer: dpo` stage of the recipe (empty `stages` when there is none); a
    stage whose effect in the existing dpo_effect.json was computed from the same inputs is reused, not recomputed."""
    stages = [s for s, spec in recipe.stages.items() if spec.trainer == "dpo" and ckpt.is_finished(recipe, s)]
    try:
        previous = read_effect(ckpt.chain_dir(recipe)).stages if (ckpt.chain_dir(recipe) / REPORT).exists() else {}
    except (UsageError, KeyError, TypeError):
        previous = {}   # an unreadable or older report: computed afresh
    out = {}
    for s in stages:
        old = previous.get(s)
        reusable = old is not None and old.inputs == effect_inputs(recipe, s, heldout=heldout)
        out[s] = old if reusable else stage_effect(recipe, s, heldout=heldout)
    return DPOEffect(name=recipe.name, stages=out)


def summary(report: DPOEffect) -> str:
    """A few lines for the end of a chain run."""
    lines = []
    for stage, r in report.stages.items():
        m, w = r.margins, r.weights
        line = f"[dpo effect] {stage}: {'ACTED' if r.acted else 'did NOT act'}"
        if m.n_logged:
            line += (f"; train reward margin {m.first['rewards/margins']:.4f} -> {m.last['rewards/margins']:.4f} "
                     f"(mean of first/last {m.quarter} logs {m.early_mean_margin:.4f} -> {m.late_mean_margin:.4f}), "
                     f"reward accuracy {m.early_mean_accuracy:.2f} -> {m.late_mean_accuracy:.2f}")
        if "max_abs" not in w.absent:
            line += (f"; weights vs {r.parent}: {w.tensors_changed}/{w.tensors} tensors changed, "
                     f"max |dw| {w.max_abs:.3g}, relative ||dW|| {w.relative_frobenius:.3g} "
                     f"({w.relative_frobenius_changed:.3g} over the changed tensors)")
        h = r.heldout
        if h and h.pairs:
            line += (f"; held-out ({h.pairs} pairs): mean |d logp| {h.mean_abs_delta_logp:.3f} per answer, "
                     f"margin {h.mean_margin:.4f}, margin > 0 on {h.margin_accuracy:.0%}")
        lines.append(line)
    return "\n".join(lines)


def write_report(recipe: Recipe, *, heldout: bool = True) -> DPOEffect | None:
    """dpo_effect.json beside chain.json (nothing when the recipe has no finished DPO stage); prints the summary."""
    report = dpo_effect(recipe, heldout=heldout)
    if not report.stages:
        return None
    write_json(ckpt.chain_dir(recipe) / REPORT, effect_to_json(report))
    print(summary(report))
    return report


@dataclass(frozen=True)
class DpoEffectOptions(RecipeOptions):
    heldout: bool = field(default=True, metadata={"help": "also score the dpo stages' held-out pairs"})


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    opts, overrides = parse_recipe_cli(argv, __doc__, DpoEffectOptions)
    recipe = load_recipe(opts["recipe"], overrides)
    check_chain(recipe, "python -m train.dpo_effect")   # dpo_effect.json goes beside chain.json
    if write_report(recipe, heldout=opts["heldout"]) is None:
        raise UsageError("the recipe has no finished 'trainer: dpo' stage to report on")


if __name__ == "__main__":
    main()
