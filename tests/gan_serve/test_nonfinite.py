"""NaN or Inf weights: inspect names them, generate and serve refuse, no NaN-derived pixel is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gan_serve
from benchmarks.reference_nets import ExamplesNetG
from gan_serve.commands.cli import app
from gan_serve.errors import CheckpointError
from gan_serve.http.app import load_models
from gan_serve.http.settings import ServeSettings

runner = CliRunner()


@pytest.fixture()
def broken(tmp_path: Path) -> Path:
    """pytorch/examples netG with one NaN weight and three Inf running variances."""
    sd = ExamplesNetG(nz=16, ngf=4, nc=3).state_dict()
    sd["main.0.weight"].view(-1)[5] = float("nan")
    sd["main.1.running_var"][:3] = float("inf")
    path = tmp_path / "netG_nan.pth"
    torch.save(sd, path)
    return path


def test_loading_names_the_tensors_and_refuses(broken):
    with pytest.raises(CheckpointError) as err:
        gan_serve.load(broken)
    msg = str(err.value)
    assert "non-finite weights" in msg and "main.0.weight: 1 NaN" in msg
    assert "main.1.running_var: 3 Inf" in msg and "\n" not in msg


def test_generate_interpolate_and_serve_refuse_in_one_line(broken, tmp_path):
    for args in (["generate", "-m", str(broken), "-o", str(tmp_path / "g.png")],
                 ["interpolate", "-m", str(broken), "--from", "0", "--to", "1",
                  "-o", str(tmp_path / "i.png")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and "non-finite weights" in res.stderr
    assert not list(tmp_path.glob("*.png"))
    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_models(ServeSettings(models=[str(broken)]))


def test_inspect_reports_them_instead_of_healthy(broken):
    res = runner.invoke(app, ["inspect", str(broken)])
    assert res.exit_code == 0, res.output
    assert "BROKEN: NaN/Inf in 2 tensor(s)" in res.stdout and "healthy" not in res.stdout
    assert "main.0.weight: 1 NaN" in res.stdout and "main.1.running_var: 3 Inf" in res.stdout
    report = json.loads(runner.invoke(app, ["inspect", str(broken), "--json"]).stdout)
    assert report["nonfinite_weights"] == {"main.0.weight": "1 NaN", "main.1.running_var": "3 Inf"}
    assert report["health"] is None


class NaNOut(torch.nn.Module):
    """Finite weights, NaN output for every other latent: the runtime check's case."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.ConvTranspose2d(4, 3, 8)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv(z.reshape(-1, 4, 1, 1))
        return torch.where(z[:, :1, None, None] > 0, x, torch.log(-torch.ones_like(x)))


def test_no_image_holds_nan_derived_pixels():
    G = gan_serve.Generator.from_module(NaNOut(), z_dim=4)
    with pytest.raises(CheckpointError, match="produced NaN or infinite values"):
        G.generate(range(16))


def test_inspect_reports_finite_weights_that_overflow_instead_of_exiting(tmp_path):
    """Every weight finite (1e30 fits float32), every image NaN: inspect says so, exit 0."""
    sd = ExamplesNetG(nz=16, ngf=4, nc=3).state_dict()
    sd["main.0.weight"].fill_(1e30)
    sd["main.3.weight"].fill_(1e30)
    path = tmp_path / "netG_overflow.pth"
    torch.save(sd, path)
    res = runner.invoke(app, ["inspect", str(path), "--samples", "16"])
    assert res.exit_code == 0, res.output
    assert "output        BROKEN: the weights are finite, but seeds 0-15 give NaN or Inf" in res.stdout
    assert "healthy" not in res.stdout and "non-finite weights" not in res.stdout
    report = json.loads(runner.invoke(app, ["inspect", str(path), "--json", "--samples", "16"]).stdout)
    assert report["nonfinite_weights"] == {} and report["health"] is None
    assert "give NaN or Inf" in report["output_fault"]
    res = runner.invoke(app, ["generate", "-m", str(path), "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and "produced NaN or infinite values" in res.stderr
