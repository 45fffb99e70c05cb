"""ORPO stage: hand a recipe's `trainer: orpo` stage to TRL's ORPOTrainer (odds-ratio preference optimization).

    accelerate launch train/orpo.py recipe=recipes/mitigations.yaml [stage=orpo] [overwrite=true] [stages.orpo.args.beta=0.1]

`stages.<stage>.args` goes 1:1 into trl.experimental.orpo.ORPOConfig (names exactly TRL's; `beta` is
ORPO's lambda, the weight of the odds-ratio term added to the NLL of the chosen answer). ORPO is
reference-free and takes paired preference data (prompt/chosen/rejected, or Anthropic HH). If the
installed TRL has no trl.experimental.orpo, the stage stops with an error naming the TRL version.

The stage starts from its `from:` parent's checkpoint (LoRA via PEFT unless `lora: false`); see
train/stages.py for the merge/continue adapter chaining and the checkpoint layout.
"""
from __future__ import annotations

from measure.common.errors import exit_on_usage_error
from train.stages import stage_main


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    stage_main("orpo", argv, __doc__)


if __name__ == "__main__":
    main()
