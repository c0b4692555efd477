"""The quality proxy that picks best.safetensors on any data: a Fréchet distance in the
feature space of a fixed random network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gan_serve import images as gimg
from training import Trainer
from training.avatars import AvatarsDataset
from training.quality import RandomFeatures, feature_stats, frechet_distance


def _avatars(start: int, n: int) -> np.ndarray:
    data = AvatarsDataset(start + n, 32)
    return gimg.to_uint8(np.stack([data[i].numpy() for i in range(start, start + n)]))


def test_the_network_is_the_same_every_time():
    a, b = RandomFeatures(3), RandomFeatures(3)
    assert all(np.array_equal(x.detach().numpy(), y.detach().numpy())
               for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_scoring_leaves_the_training_runs_random_stream_alone():
    """gan-train scores checkpoints between steps: with and without scoring, a seeded run must
    draw the same numbers afterwards."""
    import torch

    torch.manual_seed(7)
    want = torch.rand(4)
    torch.manual_seed(7)
    feature_stats(_avatars(0, 20), batch=10)
    assert torch.equal(torch.rand(4), want)


def test_frechet_distance_of_identical_statistics_is_zero():
    stats = feature_stats(_avatars(0, 200))
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-6 * np.trace(stats[1]))


def test_it_ranks_real_above_blurred_above_collapsed():
    real, held_out = feature_stats(_avatars(0, 400)), _avatars(400, 400)
    blurred = held_out.reshape(400, 8, 4, 8, 4, 3).mean((2, 4)).astype(np.uint8)  # 8x8 blocks
    blurred = blurred.repeat(4, 1).repeat(4, 2)
    collapsed = np.repeat(held_out[:4], 100, axis=0)  # four images, a hundred times each
    d_real, d_blur, d_collapsed = (frechet_distance(real, feature_stats(x))
                                   for x in (held_out, blurred, collapsed))
    assert d_real < d_blur and d_real < d_collapsed
    assert d_real < 0.25 * min(d_blur, d_collapsed)


def test_best_is_chosen_by_the_score_not_the_step(tiny, tmp_path):
    t = Trainer(tiny(steps=8, eval_samples=64, warmup=100))
    t.train()
    best = json.loads((t.run_dir / "best.json").read_text())
    scored = [e for e in t.evals if "frechet_random_features" in e]
    assert [e["step"] for e in scored] == [4, 8]
    assert best["score"] == max(-e["frechet_random_features"] for e in scored)
    assert best["score"] == -best["frechet_random_features"] and best["eval_samples"] == 64


def test_without_evaluation_the_latest_healthy_checkpoint_is_best(tiny):
    t = Trainer(tiny(steps=8, eval_samples=0, warmup=100))
    t.train()
    assert t.best == {"step": 8, "score": None}
