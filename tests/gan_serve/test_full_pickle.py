"""A full-model pickle (torch.save(model)) comes in only through `convert --trust-pickle`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gan_serve
from benchmarks.reference_nets import ExamplesNetG
from gan_serve.commands.cli import app
from tests.gan_serve.tiny_models import MY_MODELS_PY

runner = CliRunner()


@pytest.fixture
def full(tmp_path):
    """A whole tutorial netG pickled, and the same weights as a state dict."""
    torch.manual_seed(3)
    model = ExamplesNetG(nz=16, ngf=8, nc=3).eval()
    torch.save(model, tmp_path / "full.pth")
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    return tmp_path


def test_without_the_flag_the_refusal_stays(full):
    dest = full / "g.safetensors"
    for argv in (["convert", str(full / "full.pth"), str(dest)],
                 ["generate", "-m", str(full / "full.pth"), "-o", str(full / "grid.png")]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 2, res.output
        assert res.stderr.count("\n") == 1 and "refused" in res.stderr and "--trust-pickle" in res.stderr
    assert not dest.exists() and not (full / "grid.png").exists()


@pytest.mark.parametrize("command", ["generate", "serve", "inspect"])
def test_no_other_command_has_the_opt_in(command):
    res = runner.invoke(app, [command, "--trust-pickle"])
    assert res.exit_code == 2 and "No such option: --trust-pickle" in res.output


def test_with_the_flag_it_warns_then_writes_a_native_dcgan(full):
    dest = full / "g.safetensors"
    res = runner.invoke(app, ["convert", str(full / "full.pth"), str(dest), "--trust-pickle"])
    assert res.exit_code == 0, res.output
    assert res.stderr.startswith("warning: --trust-pickle: loading ") and "runs code" in res.stderr
    assert "full-model pickle, DCGAN weights" in res.stdout
    native = gan_serve.load(dest, backend="torch")  # no flags: plain data now
    assert native.spec.arch == "dcgan" and native.loaded.source_format == "native safetensors"
    weights = gan_serve.load(full / "weights.pth", backend="torch")
    assert np.array_equal(native.generate(range(6)), weights.generate(range(6)))


def test_a_class_a_script_defined_is_found_in_the_module_named_by_arch(tmp_path, monkeypatch):
    # train.py pickles __main__.Gen; my_models.py holds a copy of the class
    (tmp_path / "train.py").write_text(MY_MODELS_PY + "\ntorch.save(Gen(), 'full.pth')\n")
    subprocess.run([sys.executable, "train.py"], cwd=tmp_path, check=True)
    (tmp_path / "my_models.py").write_text(MY_MODELS_PY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    args = ["convert", "full.pth", "g.safetensors", "--trust-pickle", "--z-dim", "8"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "Gen" in res.stderr and "--arch my_models:ClassName" in res.stderr
    res = runner.invoke(app, [*args, "--arch", "my_models:Gen", "--output-range", "-1,1"])
    assert res.exit_code == 0, res.output
    G = gan_serve.load("g.safetensors", arch="my_models:Gen")  # a custom class: named again to load
    assert G.spec.z_layout == "flat" and G.generate([0, 1]).shape == (2, 8, 8, 3)
    sys.modules.pop("my_models", None)
