"""The TRL trainers a stage can name, and where their config and trainer classes live.

A stage's `trainer:` is a key here; its `args` are checked against the config class's field names
(train/recipe.py) and the trainer class runs it (train/stages.py). Classes are imported when first
asked for, so validating a recipe does not import every TRL trainer.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from measure.common.errors import UsageError


@dataclass(frozen=True)
class TrainerSpec:
    module: str          # where the TRL classes live
    config: str
    trainer: str
    reference: bool      # trains against a reference model (a frozen copy, or the adapter disabled)

    def _attr(self, name: str):
        try:
            return getattr(importlib.import_module(self.module), name)
        except (ImportError, AttributeError) as e:
            import trl
            raise UsageError(f"{name} is not available in the installed TRL {trl.__version__} "
                             f"(looked in {self.module}): {e}") from None

    def config_class(self):
        return self._attr(self.config)

    def trainer_class(self):
        return self._attr(self.trainer)


TRAINER_SPECS: dict[str, TrainerSpec] = {
    "sft": TrainerSpec("trl", "SFTConfig", "SFTTrainer", reference=False),
    "dpo": TrainerSpec("trl", "DPOConfig", "DPOTrainer", reference=True),
    "kto": TrainerSpec("trl", "KTOConfig", "KTOTrainer", reference=True),
    "orpo": TrainerSpec("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer", reference=False),
    "cpo": TrainerSpec("trl.experimental.cpo", "CPOConfig", "CPOTrainer", reference=False),
}
