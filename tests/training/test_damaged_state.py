"""A damaged or refused state.pt: one line, and --resume falls back to the newest intact checkpoint."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from training.checkpoints import checkpoints, load_state
from training.cli import app

ARGS = ["--data", "builtin:avatars", "--resolution", "32", "--g-width", "8", "--d-width", "8",
        "--batch-size", "8", "--dataset-size", "64", "--ckpt-every", "2", "--sample-every", "100",
        "--keep", "5"]
MARKER = "pwned.marker"


class Payload:
    """A pickle that would run code: os.system-like, refused by weights_only loading."""

    def __reduce__(self):
        return (Path(MARKER).write_text, ("ran",))


def train(out: Path, *extra: str):
    return CliRunner().invoke(app, [*ARGS, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("damaged") / "run"
    res = train(out, "--steps", "4")
    assert res.exit_code == 0, res.output
    assert [p.name for p in checkpoints(out)] == ["step_0000002", "step_0000004"]
    return out


def damage(state: Path, how: str) -> None:
    if how == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])
    elif how == "refused pickle":
        torch.save({"version": 1, "step": 4, "G": Payload()}, state)
    elif how == "not a state":
        torch.save(collections.OrderedDict(a=torch.zeros(1)), state)


@pytest.mark.parametrize("how", ["truncated", "refused pickle", "not a state"])
def test_resume_skips_a_damaged_latest_checkpoint_and_says_so(run_dir, tmp_path, how, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    damage(out / "ckpt" / "step_0000004" / "state.pt", how)
    res = train(out, "--resume", "--steps", "6")
    assert res.exit_code == 0, res.output
    assert "skipped damaged checkpoint(s) step_0000004" in res.stderr
    assert "resuming from step_0000002, the newest intact one" in res.stderr
    assert "resumed" in res.stderr and "at step 2" in res.stderr
    assert load_state(checkpoints(out)[-1])["step"] == 6
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("how", ["truncated", "refused pickle"])
def test_no_intact_checkpoint_is_one_line(run_dir, tmp_path, how, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    for folder in checkpoints(out):
        damage(folder / "state.pt", how)
    for args in (["--resume", "--steps", "6"], ["--init-from", str(out), "--steps", "1"]):
        target = out if args[0] == "--resume" else tmp_path / "new"
        res = train(target, *args)
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "Traceback" not in res.output
    assert not (tmp_path / MARKER).exists()
