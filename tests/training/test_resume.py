"""kill -9 at any moment, --resume, and the run continues bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import gan_serve
from training.checkpoints import checkpoints, load_state

ARGS = ["--data", "builtin:avatars", "--resolution", "32", "--g-width", "8", "--d-width", "8",
        "--batch-size", "8", "--steps", "40", "--dataset-size", "256", "--ckpt-every", "2",
        "--sample-every", "100", "--log-every", "1", "--keep", "20", "--ema", "0.9",
        "--instance-noise", "0.1", "--pack", "2"]  # both draw or reshape: resume must replay them
DECAY = ("--lr-decay-from", "20")  # and the lr schedule, a function of the step


def run(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run
    return subprocess.Popen([sys.executable, "-m", "training", *ARGS, "--out", str(out), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_run_resumes_bit_for_bit(tmp_path):
    full = run(tmp_path / "full", *DECAY)
    assert full.wait(240) == 0, full.stderr.read().decode()[-2000:]

    victim = run(tmp_path / "killed", *DECAY)
    deadline = time.time() + 240
    while len(checkpoints(tmp_path / "killed")) < 3 and time.time() < deadline and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)  # mid-run, possibly mid-checkpoint
    assert victim.wait() == -signal.SIGKILL, victim.stderr.read().decode()[-2000:]  # killed, not finished
    stopped_at = load_state(checkpoints(tmp_path / "killed")[-1])["step"]
    assert 0 < stopped_at < 40

    resumed = run(tmp_path / "killed", "--resume", *DECAY)
    assert resumed.wait(240) == 0, resumed.stderr.read().decode()[-2000:]
    a = load_state(checkpoints(tmp_path / "full")[-1])
    b = load_state(checkpoints(tmp_path / "killed")[-1])
    assert a["step"] == b["step"] == 40
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    for key in ("opt_g", "opt_d"):
        for pid, st in a[key]["state"].items():
            assert all(torch.equal(st[k], b[key]["state"][pid][k]) for k in st)


def test_served_checkpoint_equals_the_preview_grid(tmp_path):
    proc = run(tmp_path / "r", "--steps", "4", "--sample-every", "4")
    assert proc.wait(240) == 0, proc.stderr.read().decode()[-2000:]
    ckpt = checkpoints(tmp_path / "r")[-1] / "generator.safetensors"
    G = gan_serve.load(ckpt, backend="torch")  # previews are fp32 eager; auto may pick bf16
    assert G.spec.training["step"] == 4 and G.spec.training["data"].startswith("builtin:avatars")
    assert G.spec.training["config"]["batch_size"] == 8  # the TrainConfig travels with the weights
    from gan_serve import images as gimg

    preview = (tmp_path / "r" / "samples" / "step_0000004.png").read_bytes()
    assert preview == gimg.encode_image(G.grid(range(64)))
    # and pixel for pixel what `gan-serve generate --seed 0 --n 64` writes for that checkpoint
    from PIL import Image
    from typer.testing import CliRunner

    from gan_serve.commands.cli import app as serve_app

    res = CliRunner().invoke(serve_app, ["generate", "--model", str(ckpt), "--seed", "0", "--n", "64",
                                         "--backend", "torch", "-o", str(tmp_path / "grid.png")])
    assert res.exit_code == 0, res.output
    served = np.asarray(Image.open(tmp_path / "grid.png"))
    assert np.array_equal(served, np.asarray(Image.open(tmp_path / "r" / "samples" / "step_0000004.png")))
