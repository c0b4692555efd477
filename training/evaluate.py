"""Scoring a checkpoint's generator: which one becomes best.safetensors (higher score wins).

builtin:avatars at 64x64 RGB has a ground truth (training.avatars decodes every sample into
one of 240 modes), so its checkpoints are scored by modes covered x share of good samples on
`eval_samples` seeds. Any other data is scored by minus the Fréchet distance between the
feature statistics of `eval_samples` real and generated images in a fixed random network
(quality.py; why that ranks checkpoints: TRAINING.md). With --eval-samples 0 nothing is scored
and the latest healthy checkpoint is the best one; the step count is never a score.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gan_serve.generator import Generator

from .config import TrainConfig
from .quality import feature_stats, frechet_distance

EVAL_SEED0 = 10_000  # evaluation seeds start here, apart from the preview grid's 0..63


def avatars_metric_applies(cfg: TrainConfig, data_label: str) -> bool:
    return (cfg.data == "builtin:avatars" and data_label == cfg.data and cfg.resolution == 64
            and cfg.channels == 3)


def score(G: Generator, cfg: TrainConfig, data_label: str, real_stats: Callable[[], tuple]) -> dict:
    """{"score": float or None, "metrics": {...}} for a checkpoint's served generator.
    `real_stats()` gives the real images' feature statistics (computed once, when needed)."""
    n = cfg.eval_samples
    if n == 0:
        return {"score": None, "metrics": {}}
    if avatars_metric_applies(cfg, data_label):
        from .avatars import evaluate_generator

        report = evaluate_generator(G, n=n, seed0=EVAL_SEED0)
        metrics = {"coverage": report.coverage, "modes_covered": report.modes_covered,
                   "modes_total": report.modes_total, "good": round(report.high_quality * report.samples),
                   "high_quality": report.high_quality, "kl_to_uniform":
                   report.kl_to_uniform if math.isfinite(report.kl_to_uniform) else None,
                   "eval_samples": report.samples}
        return {"score": report.coverage * report.high_quality, "metrics": metrics}
    fd = frechet_distance(real_stats(), feature_stats(G.generate(range(EVAL_SEED0, EVAL_SEED0 + n))))
    return {"score": -fd, "metrics": {"frechet_random_features": fd, "eval_samples": n}}
