"""A run killed mid-write leaves temp files; the next run in that folder (--resume) removes them."""

from __future__ import annotations

from pathlib import Path

from tests.gan_serve.test_fsutil import killed_writer
from training import Trainer


def test_resume_cleans_what_a_killed_run_left(tiny):
    cfg = tiny(steps=4)
    Trainer(cfg, echo=lambda m: None).train()
    run = Path(cfg.out)
    left = [killed_writer(run / "curves.png"), killed_writer(run / "samples" / "step_0000004.png"),
            killed_writer(run / "best.safetensors")]
    Trainer(tiny(steps=8), resume=True, echo=lambda m: None).train()
    assert not any(p.exists() for p in left)
    assert not list(run.rglob("*.tmp"))
