"""gan-train on the command line: the dry run, bad input, and DDP with torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gan_serve
from training.checkpoints import checkpoints, load_state
from training.cli import app


def test_dry_run_trains_one_step_end_to_end(tmp_path):
    res = CliRunner().invoke(app, ["--dry-run", "--out", str(tmp_path / "dry")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "dry" / "best.safetensors").exists() and (tmp_path / "dry" / "report.html").exists()
    assert gan_serve.load(tmp_path / "dry" / "best.safetensors").img_resolution == 32


@pytest.mark.parametrize("args,match", [
    (["--resolution", "48"], "--resolution must be 32, 64 or 128"),
    (["--loss", "wgan"], "--loss must be one of"),
    (["--data", "/no/such/folder"], "neither a folder"),
    (["--on-failure", "panic"], "--on-failure must be one of"),
])
def test_bad_input_is_one_line(args, match, tmp_path):
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0]


def test_ddp_with_two_cpu_processes(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "training",
           "--data", "builtin:avatars", "--resolution", "32", "--g-width", "8", "--d-width", "8",
           "--batch-size", "4", "--steps", "4", "--ckpt-every", "2", "--dataset-size", "64",
           "--sample-every", "100", "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = [load_state(c) for c in checkpoints(out)]
    assert [s["step"] for s in states] == [2, 4]
    assert gan_serve.load(checkpoints(out)[-1] / "generator.safetensors").z_dim == 100
