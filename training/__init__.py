"""gan-train: a compact DCGAN trainer with right defaults and a health monitor.

    from training import TrainConfig, Trainer
    Trainer(TrainConfig(data="builtin:avatars", out="runs/a", steps=2000)).train()
"""

from .config import TrainConfig
from .loop import Trainer
from .monitor import TrainingFailure

__all__ = ["TrainConfig", "Trainer", "TrainingFailure"]
