"""CPO / SimPO stage: hand a recipe's `trainer: cpo` stage to TRL's CPOTrainer (reference-free preference losses).

    accelerate launch train/cpo.py recipe=recipes/mitigations.yaml [stage=simpo] [overwrite=true] [stages.simpo.args.beta=0.1]

`stages.<stage>.args` goes 1:1 into trl.experimental.cpo.CPOConfig (names exactly TRL's). CPO is
`loss_type: sigmoid` (+ `cpo_alpha` x NLL of the chosen answer); SimPO is `loss_type: simpo,
cpo_alpha: 0.0` with its target margin `simpo_gamma` (length-normalized, no reference model);
`loss_type: alphapo` is AlphaPO. Paired preference data (prompt/chosen/rejected, or Anthropic HH).
If the installed TRL has no trl.experimental.cpo, the stage stops with an error naming the TRL version.

The stage starts from its `from:` parent's checkpoint (LoRA via PEFT unless `lora: false`); see
train/stages.py for the merge/continue adapter chaining and the checkpoint layout.
"""
from __future__ import annotations

from measure.common.errors import exit_on_usage_error
from train.stages import stage_main


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    stage_main("cpo", argv, __doc__)


if __name__ == "__main__":
    main()
