"""gan-train: a compact DCGAN trainer with right defaults and a health monitor.

    from training import TrainConfig, Trainer
    Trainer(TrainConfig(data="builtin:avatars", out="runs/a", steps=2000)).train()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import TrainConfig

if TYPE_CHECKING:
    from .loop import Trainer
    from .monitor import TrainingFailure

__all__ = ["TrainConfig", "Trainer", "TrainingFailure"]


def __getattr__(name: str) -> Any:
    # Trainer and TrainingFailure import torch: loaded on first use, so `gan-train --help` is quick
    if name == "Trainer":
        from .loop import Trainer

        return Trainer
    if name == "TrainingFailure":
        from .monitor import TrainingFailure

        return TrainingFailure
    raise AttributeError(f"module 'training' has no attribute {name!r}")
