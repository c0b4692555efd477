"""A state.pt that loads (weights_only) but declares sizes, types or values gan-train never writes:
damaged, like a corrupt one. --resume falls back to the newest intact checkpoint with a note, or
says in one line that none is intact; python -m training.pack likewise. Nothing is built from it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gan_serve.errors import CheckpointError
from training import TrainConfig, Trainer
from training import models as training_models
from training.checkpoints import checkpoints, latest_intact, load_state
from training.cli import app
from training.pack import main as pack_main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("statecheck") / "run"
    cfg = TrainConfig(data="builtin:avatars", out=str(out), resolution=32, g_width=8, d_width=8, batch_size=8,
                      steps=4, dataset_size=64, ckpt_every=2, sample_every=100, log_every=1, warmup=0,
                      on_failure="warn", eval_samples=0, ema=0.5, keep=5)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and spares the shared cores
    try:
        Trainer(cfg, echo=lambda m: None).train()
    finally:
        torch.set_num_threads(before)
    assert [p.name for p in checkpoints(out)] == ["step_0000002", "step_0000004"]
    return out


def _config(**changes: object) -> Callable[[dict], None]:
    def edit(s: dict) -> None:
        s["config"] = json.dumps({**json.loads(s["config"]), **changes})
    return edit


def _first(sd: dict) -> str:
    return next(k for k, v in sd.items() if v.dim() == 4)  # a convolution's weight


def _stride0(s: dict) -> None:  # the shape the config gives, in the bytes of one element
    k = _first(s["G"])
    s["G"][k] = torch.zeros(1).expand(s["G"][k].shape)


def _huge_moment(s: dict) -> None:  # ~40 TB declared by a 2-byte storage
    s["opt_g"]["state"][0]["exp_avg"] = torch.zeros(1, dtype=torch.bfloat16).expand(100_000, 100_000, 4, 4)


def _set(*path: object, value: object) -> Callable[[dict], None]:
    def edit(s: dict) -> None:
        target = s
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


HOSTILE = {  # what is wrong -> (the edit, what the refusal names)
    "step as a string": (_set("step", value="4"), "step must be an integer"),
    "negative step": (_set("step", value=-1), "step must be an integer from 0"),
    "step past the run's end": (_set("step", value=10**12), "step must be an integer from 0 to 4"),
    "version as a bool": (_set("version", value=True), "version must be an integer"),
    "a config field of the wrong type": (_config(g_width="8"), "g_width must be int"),
    "a width of 100,000 (5 TB)": (_config(g_width=100_000, d_width=100_000), "--g-width and --d-width"),
    "the bomb limit switched off": (_config(max_image_pixels=10**15), "--max-image-pixels must be from 1"),
    "an infinite learning rate": (_config(lr_g=float("inf")), "must be finite"),
    "2,000 workers": (_config(workers=2000), "--workers must be <="),
    "a config nested 100,000 deep": (_set("config", value="[" * 100_000 + "]" * 100_000),
                                     "config is not readable"),
    "a config that is a list": (_set("config", value="[1]"), "config must be a JSON object"),
    "a missing optimizer": (lambda s: s.pop("opt_g"), "missing opt_g"),
    "a stride-0 weight": (_stride0, "is a stride-0 expansion"),  # refused by the file reader
    "a 40 TB stride-0 Adam moment": (_huge_moment, "stride-0 expansion to (100000, 100000, 4, 4)"),
    "a sparse weight": (lambda s: s["D"].update(x=torch.zeros(2, 2).to_sparse()), "sparse tensor"),
    "G with a missing key": (lambda s: s["G"].pop(_first(s["G"])), "G does not hold the weights"),
    "a sparse EMA weight": (lambda s: s["G_ema"].update({_first(s["G"]): s["G"][_first(s["G"])].to_sparse()}),
                            "sparse tensor"),
    "a complex weight": (lambda s: s["D"].update({_first(s["D"]): s["D"][_first(s["D"])].to(torch.cfloat)}),
                         "expected a float"),
    "amsgrad switched on": (lambda s: s["opt_d"]["param_groups"][0].update(amsgrad=True),
                            "amsgrad must be False"),
    "params as a tensor": (lambda s: s["opt_g"]["param_groups"][0].update(params=torch.arange(3)),
                           "must list its"),
    "a switch that is a tensor": (lambda s: s["opt_g"]["param_groups"][0].update(amsgrad=torch.ones(2)),
                                  "amsgrad must be a plain value"),
    "betas as text": (lambda s: s["opt_d"]["param_groups"][0].update(betas="x"), "betas must be two numbers"),
    "a moment for no parameter": (lambda s: s["opt_d"]["state"].update({999: {}}), "parameter numbers"),
    "a NaN lr scale": (_set("lr_scale", value=float("nan")), "lr_scale must be a number in (0, 1]"),
    "negative rollbacks": (_set("rollbacks", value=-1), "rollbacks must be an integer"),
    "healthy as text": (_set("healthy", value="yes"), "healthy must be true or false"),
    "a scaler of text": (_set("scaler_g", value={"scale": "x"}), "scaler_g must be a GradScaler state"),
    "history of numbers": (_set("history", value="[1, 2]"), "history must hold objects of numbers"),
    "a history row without losses": (_set("history", value='[{"step": 1}]'), "history rows must hold d_fake"),
    "an event of the wrong fields": (_set("events", value='[{"step": 1}]'), "events must be objects"),
    "a monitor of text": (_set("monitor", value='{"d_loss": "abc"}'), "monitor.d_loss must be a list"),
    "best with a text step": (_set("best", value='{"step": "2", "score": null}'), "best must hold"),
}


def _copy_with(run_dir: Path, tmp_path: Path, edit: Callable[[dict], None], folders: int = 1) -> Path:
    """A copy of the run whose newest `folders` checkpoints have `edit` applied to their state."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    for folder in checkpoints(out)[-folders:]:
        path = folder / "state.pt"
        s = torch.load(path, weights_only=True)
        edit(s)
        torch.save(s, path)
    return out


def test_the_runs_own_states_and_the_committed_packed_state_pass(run_dir):
    for folder in checkpoints(run_dir):
        assert load_state(folder)["step"] in (2, 4)
    committed, = (Path(__file__).resolve().parents[2] / "runstate" / "avatars" / "ckpt").iterdir()
    assert load_state(committed)["step"] == int(committed.name.removeprefix("step_"))  # packed: fp16, bf16


@pytest.mark.parametrize("what", list(HOSTILE))
def test_a_hostile_latest_state_is_damaged_and_resume_falls_back(run_dir, tmp_path, what, monkeypatch):
    edit, named = HOSTILE[what]
    out = _copy_with(run_dir, tmp_path, edit)
    built: list[int] = []
    real_build = training_models.build
    monkeypatch.setattr(training_models, "build", lambda cfg: built.append(cfg.g_width) or real_build(cfg))
    # the file reader (gan_serve.torchfile) refuses views and layouts before the state check runs
    refused = "is not a usable gan-train state|nothing was allocated|before anything was allocated"
    with pytest.raises(CheckpointError, match=refused) as exc:
        load_state(checkpoints(out)[-1])
    assert named in str(exc.value) and "\n" not in str(exc.value)
    notes: list[str] = []
    assert latest_intact(out, notes.append) == checkpoints(out)[0]
    assert len(notes) == 1 and "skipped damaged checkpoint(s) step_0000004" in notes[0]
    assert "resuming from step_0000002, the newest intact one" in notes[0]
    assert all(w == 8 for w in built)  # nothing was built from the hostile config, not even on meta


def test_resume_continues_from_the_intact_checkpoint(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _copy_with(run_dir, tmp_path, HOSTILE["step as a string"][0])
    res = CliRunner().invoke(app, ["--out", str(out), "--resume", "--steps", "3"])
    assert res.exit_code == 0, res.output
    assert "skipped damaged checkpoint(s) step_0000004" in res.stderr and "at step 2" in res.stderr
    assert load_state(out / "ckpt" / "step_0000003")["step"] == 3  # the damaged step_4 stays as it was


@pytest.mark.parametrize("what", ["a width of 100,000 (5 TB)", "a 40 TB stride-0 Adam moment",
                                  "negative step"])
def test_no_intact_state_is_one_line_for_resume_and_pack(run_dir, tmp_path, what, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = _copy_with(run_dir, tmp_path, HOSTILE[what][0], folders=2)
    res = CliRunner().invoke(app, ["--out", str(out), "--resume", "--steps", "6"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no intact checkpoint"), lines
    assert HOSTILE[what][1] in lines[0]
    with pytest.raises(SystemExit) as exc:
        pack_main([str(out), str(tmp_path / "packed")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: no intact checkpoint"), err
