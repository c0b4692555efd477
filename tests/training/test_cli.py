"""gan-train on the command line: the dry run, bad input, resume rules, TensorBoard, and DDP
with a real `torchrun --nproc_per_node 2` on the CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gan_serve
from training import TrainConfig, Trainer
from training.checkpoints import checkpoints, load_state
from training.cli import app, main


def test_every_field_is_a_flag_with_its_metadata_help():
    import dataclasses

    text = " ".join(CliRunner().invoke(app, ["--help"], terminal_width=4000).output.split())
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"].strip(), f"{f.name} has no help"
        assert "--" + f.name.replace("_", "-") in text
    assert "Adam learning rate of G (4x the DCGAN paper's 2e-4" in text  # lr_g's help, from its metadata


def test_dry_run_trains_one_step_end_to_end(tmp_path):
    res = CliRunner().invoke(app, ["--dry-run", "--out", str(tmp_path / "dry")])
    assert res.exit_code == 0, res.output
    run = tmp_path / "dry"
    assert (run / "best.safetensors").exists() and (run / "report.html").exists()
    assert (run / "samples" / "step_0000001.png").exists() and "done: step 1" in res.stderr
    assert gan_serve.load(run / "best.safetensors").img_resolution == 32


def test_bf16_on_a_cpu_without_bf16_hardware_is_noted(tmp_path, monkeypatch):
    from gan_serve.backends import torch_backend

    monkeypatch.setattr(torch_backend, "cpu_bf16_is_native", lambda: False)
    res = CliRunner().invoke(app, ["--dry-run", "--precision", "bf16", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "bf16 is emulated" in res.stderr and "use --precision fp32" in res.stderr
    res = CliRunner().invoke(app, ["--dry-run", "--out", str(tmp_path / "f")])  # auto picks fp32 here
    assert res.exit_code == 0 and "bf16 is emulated" not in res.stderr
    assert "precision auto: fp32 (this CPU" in res.stderr and "has no AMX or AVX512-BF16" in res.stderr


@pytest.mark.parametrize("args,match", [
    (["--resolution", "48"], "--resolution must be 32, 64 or 128"),
    (["--loss", "wgan"], "--loss must be one of ns, hinge, lsgan"),
    (["--data", "/no/such/folder"], "neither a folder"),
    (["--data", "builtin:cats"], "there is builtin:avatars"),
    (["--on-failure", "panic"], "--on-failure must be one of"),
    (["--batch-size", "1"], "--batch-size must be >= 2"),
    (["--dry-run", "--sync-bn", "--device", "cpu"], None),  # single process: nothing to sync, runs
])
def test_bad_input_is_one_line_and_exit_2(args, match, tmp_path):
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    if match is None:
        assert res.exit_code == 0, res.output
        return
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0]


@pytest.mark.parametrize("args,match", [(["--steps", "abc"], "Invalid value for '--steps'"),
                                        (["--bogus"], "No such option: --bogus")])
def test_malformed_flags_are_one_line_too(args, match, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gan-train", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and match in err[0]


def test_an_existing_run_needs_resume_and_keeps_its_config(tmp_path):
    out = str(tmp_path / "r")
    assert CliRunner().invoke(app, ["--dry-run", "--out", out]).exit_code == 0
    again = CliRunner().invoke(app, ["--dry-run", "--out", out])
    assert again.exit_code == 2 and "pass --resume to continue it" in again.stderr
    clash = CliRunner().invoke(app, ["--dry-run", "--out", out, "--resume", "--lr-g", "0.001"])
    saved = TrainConfig().lr_g
    assert clash.exit_code == 2 and f"--lr-g 0.001 differs from the resumed run's {saved}" in clash.stderr
    longer = CliRunner().invoke(app, ["--out", out, "--resume", "--steps", "2", "--resolution", "32"])
    assert longer.exit_code == 0, longer.output
    state = load_state(checkpoints(Path(out))[-1])
    assert state["step"] == 2 and json.loads(state["config"])["g_width"] == 8  # the saved run's G
    assert "note: --steps" not in longer.stderr  # no schedule depends on the last step here


def test_a_longer_resume_says_which_schedules_it_moves(tmp_path):
    out = str(tmp_path / "r")
    args = ["--dry-run", "--out", out, "--instance-noise", "0.1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    longer = CliRunner().invoke(app, ["--out", out, "--resume", "--steps", "2", "--resolution", "32"])
    assert longer.exit_code == 0, longer.output
    assert "note: --steps 2 instead of 1 also moves the instance noise fade" in longer.stderr


def test_tensorboard_when_installed(tiny, monkeypatch):
    logged: list[tuple] = []

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter
        def __init__(self, logdir: str) -> None:
            logged.append(("dir", logdir))

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            logged.append((tag, step))

        def add_text(self, tag: str, text: str, step: int) -> None:
            logged.append((tag, step))

        def close(self) -> None:
            logged.append(("closed",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    Trainer(tiny(steps=2, tensorboard=True)).train()
    assert logged[0][0] == "dir" and ("train/d_loss", 2) in logged and logged[-1] == ("closed",)


def test_tensorboard_missing_is_a_clear_error(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    from gan_serve.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r'--tensorboard needs tensorboard \(the tensorboard '
                       r'extra\): pip install -e "\.\[tensorboard\]" in a clone, or pip install '
                       r'"gan-serve\[tensorboard\]"'):
        Trainer(tiny(steps=1, tensorboard=True)).train()


def test_ddp_with_two_cpu_processes(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    torchrun = str(torchrun) if torchrun.exists() else shutil.which("torchrun")
    out = tmp_path / "ddp"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "training",
           "--data", "builtin:avatars", "--resolution", "32", "--g-width", "8", "--d-width", "8",
           "--batch-size", "4", "--steps", "4", "--ckpt-every", "2", "--dataset-size", "64",
           "--sample-every", "2", "--log-every", "1", "--r1-gamma", "1", "--device", "cpu",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(2 process(es))" in proc.stderr and proc.stderr.count("done: step 4") == 1  # rank 0 speaks
    states = [load_state(c) for c in checkpoints(out)]
    assert [s["step"] for s in states] == [2, 4]
    spec = gan_serve.load(checkpoints(out)[-1] / "generator.safetensors").spec
    assert spec.training["images_seen"] == 4 * 4 * 2  # steps x batch x processes
    assert TrainConfig.from_dict(json.loads(states[-1]["config"])).batch_size == 4
