"""benchmarks/false_alarms.py: a healthy run of a candidate recipe (--flags) trains with those
flags and records them, and the table names the recipe of each healthy row."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks import false_alarms
from training import TrainConfig


def _args(**kw) -> argparse.Namespace:
    base = {"mode": "healthy", "set": "photos", "seed": 0, "steps": 12, "width": 8, "flags": "",
            "fault": "collapse", "at": 400}
    return argparse.Namespace(**{**base, **kw})


def test_a_candidate_recipe_trains_with_its_flags_and_is_named_in_the_table(tmp_path, monkeypatch,
                                                                             capsys) -> None:
    monkeypatch.setattr(false_alarms, "RESULTS", tmp_path / "false_alarms.jsonl")
    default = false_alarms.run(_args())
    candidate = false_alarms.run(_args(flags="--lr-g 3e-4 --lr-d 1e-4 --ckpt-every 6"))
    defaults = TrainConfig()
    assert (default["lr_g"], default["lr_d"], default["flags"]) == (defaults.lr_g, defaults.lr_d, "")
    assert (candidate["lr_g"], candidate["lr_d"]) == (3e-4, 1e-4)
    assert [c["step"] for c in candidate["checkpoints"]] == [6, 12]  # --ckpt-every reached the run
    assert candidate["final_step"] == 12 and candidate["failures"] == []
    rows = [json.loads(line) for line in (tmp_path / "false_alarms.jsonl").read_text().splitlines()]
    assert [r["flags"] for r in rows] == ["", "--lr-g 3e-4 --lr-d 1e-4 --ckpt-every 6"]
    false_alarms.table()
    out = capsys.readouterr().out
    assert "| photos | 0 | 8 | yes | defaults | 12 |" in out
    assert "| `--lr-g 3e-4 --lr-d 1e-4 --ckpt-every 6` | 12 |" in out


def test_an_unknown_flag_is_refused_before_training(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(false_alarms, "RESULTS", tmp_path / "false_alarms.jsonl")
    with pytest.raises(SystemExit, match="unknown gan-train flag --lr-typo"):
        false_alarms.run(_args(flags="--lr-typo 1"))
    assert not (tmp_path / "false_alarms.jsonl").exists()
