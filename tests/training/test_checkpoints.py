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


def test_a_step_count_best_from_an_older_version_is_replaced_by_a_real_score(tiny):
    """Before the quality proxy, best.json of a run without a score held the step count as the
    score ("best: step 300, score 300.0"); a resumed run must not compare real scores with it."""
    import json

    import torch

    cfg = tiny(steps=4, warmup=100)  # inside the warm-up: every checkpoint counts as healthy
    Trainer(cfg, echo=lambda m: None).train()
    run = Path(cfg.out)
    state_file = run / "ckpt" / "step_0000004" / "state.pt"
    state = torch.load(state_file, weights_only=True)
    state["best"] = json.dumps({"step": 4, "score": 4.0})  # what the older version saved
    torch.save(state, state_file)
    Trainer(tiny(steps=8, warmup=100, eval_samples=32), resume=True, echo=lambda m: None).train()
    best = json.loads((run / "best.json").read_text())
    assert best["step"] == 8 and best["score"] != 8.0 and "frechet" in json.dumps(best).lower()


def test_resume_reads_the_state_once(tiny, monkeypatch):
    import gan_serve.checkpoint

    cfg = tiny(steps=4)
    Trainer(cfg, echo=lambda m: None).train()
    reads: list[str] = []
    real_load = gan_serve.checkpoint.safe_torch_load
    monkeypatch.setattr(gan_serve.checkpoint, "safe_torch_load",
                        lambda path: reads.append(path.parent.name) or real_load(path))
    t = Trainer(tiny(steps=8), resume=True, echo=lambda m: None)
    t.train()
    assert reads == ["step_0000004"] and t.step == 8  # its config and its state: one read
