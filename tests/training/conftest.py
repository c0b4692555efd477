from __future__ import annotations

import dataclasses

import pytest

from training import TrainConfig


@pytest.fixture()
def tiny(tmp_path):
    """A seconds-long config: 32x32 avatars, widths 8, batch 8."""
    def make(**kw: object) -> TrainConfig:
        base = TrainConfig(data="builtin:avatars", out=str(tmp_path / "run"), resolution=32,
                           g_width=8, d_width=8, batch_size=8, steps=12, dataset_size=256,
                           ckpt_every=4, sample_every=4, log_every=1, window=10, warmup=0,
                           ema=0.0, on_failure="warn")
        return dataclasses.replace(base, **kw)
    return make
