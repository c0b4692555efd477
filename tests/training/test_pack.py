"""A packed run state (fp16 weights, bf16 Adam moments) resumes: the run continues from its step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gan_serve.errors import CheckpointError
from training import Trainer
from training.checkpoints import load_state
from training.pack import main, pack_run, pack_state


def test_a_packed_run_is_smaller_and_resumes(tiny, tmp_path):
    cfg = tiny(steps=4)
    Trainer(cfg, echo=lambda m: None).train()
    run = Path(cfg.out)
    packed = pack_run(run, tmp_path / "packed")
    full, half = run / "ckpt" / packed.name / "state.pt", packed / "state.pt"
    assert half.stat().st_size < 0.7 * full.stat().st_size
    s = load_state(packed)
    assert s["G"][next(iter(s["G"]))].dtype == torch.float16
    moments = next(iter(s["opt_g"]["state"].values()))
    assert moments["exp_avg_sq"].dtype == torch.bfloat16
    before = load_state(run / "ckpt" / packed.name)
    for k, v in before["G"].items():  # fp16 rounding only
        if v.is_floating_point():
            assert torch.allclose(s["G"][k].float(), v, rtol=1e-3, atol=1e-4), k

    cont = tmp_path / "continued"
    shutil.copytree(tmp_path / "packed", cont)
    t = Trainer(tiny(steps=8, out=str(cont)), resume=True, echo=lambda m: None)
    t.train()
    assert t.step == 8 and all(p.dtype == torch.float32 for p in t.G.parameters())
    assert min(h["step"] for h in t.history) < 4  # the packed run's history came along
    for group in t.opt_g.state.values():
        assert group["exp_avg_sq"].dtype == torch.float32 and torch.isfinite(group["exp_avg"]).all()
    assert json.loads(load_state(cont / "ckpt" / "step_0000008")["config"])["out"] == str(cont)


def test_values_beyond_fp16_are_refused():
    state = {"G": {"w": torch.tensor([1e6])}, "opt_g": {"state": {}}, "opt_d": {"state": {}}}
    with pytest.raises(CheckpointError, match="beyond fp16"):
        pack_state(state)


def test_no_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "run"), str(tmp_path / "out")])
    assert exc.value.code == 2 and "no checkpoint to pack" in capsys.readouterr().err
