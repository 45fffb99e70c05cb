"""SFT stage: hand a recipe's `trainer: sft` stage to TRL's SFTTrainer (LoRA via PEFT unless `lora: false`).

    accelerate launch train/sft.py recipe=recipes/toy.yaml [stage=sft] [overwrite=true] [stages.sft.args.learning_rate=1e-4]

`stages.<stage>.args` goes 1:1 into trl.SFTConfig (names exactly TRL's). The stage starts from its
`from:` parent's checkpoint; see train/stages.py for the merge/continue adapter chaining and the
checkpoint layout, and README.md for the recipe format.
"""
from __future__ import annotations

from measure.common.errors import exit_on_usage_error
from train.stages import stage_main


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    stage_main("sft", argv, __doc__)


if __name__ == "__main__":
    main()
