"""Scoring a checkpoint's generator: which one becomes best.safetensors.

builtin:avatars at 64x64 RGB has a ground truth (training.avatars decodes every sample into
one of 240 modes), so its checkpoints are scored by modes covered x share of good samples
on `eval_samples` seeds, and a collapse onto few modes is reported. Other data has no cheap
trustworthy quality measure on a CPU, so the latest healthy checkpoint is the best one
(a checkpoint written after a detector fired never is).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gan_serve.generator import Generator

if TYPE_CHECKING:
    from .loop import Trainer

EVAL_SEED0 = 10_000  # evaluation seeds start here, apart from the preview grid's 0..63


def avatars_metric_applies(trainer: Trainer) -> bool:
    cfg = trainer.cfg
    return (cfg.data == "builtin:avatars" and trainer.data_label == cfg.data and cfg.resolution == 64
            and cfg.channels == 3 and cfg.eval_samples > 0)


def score(trainer: Trainer, G: Generator) -> dict:
    """{"score": float, "metrics": {...}, "events": [event dicts]} for the current checkpoint."""
    if not avatars_metric_applies(trainer):
        return {"score": float(trainer.step), "metrics": {}, "events": []}
    from .avatars import evaluate_generator

    report = evaluate_generator(G, n=trainer.cfg.eval_samples, seed0=EVAL_SEED0)
    good = round(report.high_quality * report.samples)
    event = trainer.monitor.check_coverage(trainer.step, report.modes_covered, report.modes_total, good)
    metrics = {"coverage": report.coverage, "modes_covered": report.modes_covered,
               "high_quality": report.high_quality, "kl_to_uniform":
               report.kl_to_uniform if math.isfinite(report.kl_to_uniform) else None,
               "eval_samples": report.samples}
    return {"score": report.coverage * report.high_quality, "metrics": metrics,
            "events": [event.to_dict()] if event is not None else []}
