"""KTO stage: hand a recipe's `trainer: kto` stage to TRL's KTOTrainer (Kahneman-Tversky Optimization).

    accelerate launch train/kto.py recipe=recipes/mitigations.yaml [stage=kto] [overwrite=true] [stages.kto.args.beta=0.1]

`stages.<stage>.args` goes 1:1 into trl.KTOConfig (names exactly TRL's: beta, loss_type kto |
apo_zero_unpaired, desirable_weight, undesirable_weight, ...). The dataset is unpaired
{prompt, completion, label}, or paired preference / Anthropic HH data, which train/data.py unpairs
(chosen -> label true, rejected -> label false). KTO needs per_device_train_batch_size >= 2 (its KL
estimate pairs each completion with a neighbour's prompt) and TRL's default sequential sampling.

The stage starts from its `from:` parent's checkpoint (LoRA via PEFT unless `lora: false`); see
train/stages.py for the merge/continue adapter chaining and the checkpoint layout.
"""
from __future__ import annotations

from measure.common.errors import exit_on_usage_error
from train.stages import stage_main


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    stage_main("kto", argv, __doc__)


if __name__ == "__main__":
    main()
