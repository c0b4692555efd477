"""The run's data in files: metrics.jsonl, events.jsonl, and the non-TTY log line with an ETA."""

from __future__ import annotations

import json

from training import Trainer
from training.runlog import duration


def test_metrics_and_events_files_and_an_eta(tiny):
    messages: list[str] = []
    t = Trainer(tiny(steps=6, log_every=2, warmup=100), echo=messages.append)
    t.train()
    rows = [json.loads(line) for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "lr_g", "lr_d", "images_per_s"} <= rows[0].keys()
    assert rows[0]["lr_g"] == t.cfg.lr_g
    events = (t.run_dir / "events.jsonl").read_text().splitlines()
    assert all(json.loads(line)["note"] == "inside the warm-up" for line in events)  # notes only
    assert any(m.startswith("step 4/6") and "img/s  ETA " in m for m in messages)  # pytest: no TTY


def test_events_file_exists_from_the_start(tiny):
    seen: list[str] = []
    t = Trainer(tiny(steps=1), hooks=(lambda trainer, step: seen.append(
        (trainer.run_dir / "events.jsonl").read_text()),))
    t.train()
    assert seen == [""]  # present and empty while nothing has happened


def test_a_resumed_run_rewrites_metrics_without_replayed_steps(tiny):
    Trainer(tiny(steps=4, log_every=1)).train()
    t = Trainer(tiny(steps=6, log_every=1), resume=True)
    t.train()
    steps = [json.loads(line)["step"] for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_duration():
    assert (duration(45), duration(750), duration(3720)) == ("45s", "12m30s", "1h02m")
