from __future__ import annotations

import dataclasses

import pytest
import torch

from training import TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and do not fight other processes for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny(tmp_path):
    """A seconds-long config: 32x32 avatars, widths 8, batch 8, every check from step 0, no
    quality score (best.safetensors: the latest healthy checkpoint); the classic DCGAN maths
    (BCE, BatchNorm D, no packing), which the provoked failures are tuned to."""
    def make(**kw: object) -> TrainConfig:
        base = TrainConfig(data="builtin:avatars", out=str(tmp_path / "run"), resolution=32,
                           g_width=8, d_width=8, batch_size=8, steps=12, dataset_size=256,
                           ckpt_every=4, sample_every=4, log_every=1, window=10, warmup=0,
                           ema=0.0, on_failure="warn", eval_samples=0, loss="ns", d_batch_norm=True,
                           spectral_norm=False, pack=1)
        return dataclasses.replace(base, **kw)
    return make
