"""Fixture checkpoints in every legacy format, built by the tests in temporary folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import gan_serve
from benchmarks.reference_nets import ExamplesNetG, FcGen, SeedGenerator, randomize, spread_output
from export import export_onnx, export_torchscript, prepare


@dataclass
class Fixture:
    path: Path
    module: nn.Module  # the original, eval mode
    z_dim: int
    flat_z: bool = False  # the original takes (B, z) rather than (B, z, 1, 1)


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.fixture(scope="session")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Fixture]:
    """name -> Fixture: one file per checkpoint format that gan_serve must load."""
    d = tmp_path_factory.mktemp("legacy")
    seed000 = spread_output(randomize(SeedGenerator(), seed=1), 100)
    ex3 = spread_output(randomize(ExamplesNetG(nz=100, ngf=16, nc=3), seed=2), 100)
    ex1 = spread_output(randomize(ExamplesNetG(nz=64, ngf=8, nc=1), seed=3), 64)
    ex_wide = spread_output(randomize(ExamplesNetG(nz=128, ngf=64, nc=3), seed=4), 128)
    fc = randomize(FcGen(), seed=5)  # ends in tanh(x)/2+0.5: its range is fixed by design
    seed001 = {
        "gen": ex3.state_dict(),
        "optim_gen": torch.optim.Adam(ex3.parameters()).state_dict(),
        "dis": {"main.0.weight": torch.zeros(8, 3, 4, 4)},
        "optim_dis": {"state": {}, "param_groups": []},
    }
    prefixed = {"netG": {f"module._orig_mod.{k}": v for k, v in ex1.state_dict().items()}}
    return {
        "seed000": Fixture(_save(seed000.state_dict(), d / "g_epoch_85.pth"), seed000, 100),
        "examples_nc3": Fixture(_save(ex3.state_dict(), d / "netG_epoch_24.pth"), ex3, 100),
        "examples_nc1": Fixture(_save(ex1.state_dict(), d / "netG_mnist.pth"), ex1, 64),
        "examples_ngf64": Fixture(_save(ex_wide.state_dict(), d / "netG_wide.pth"), ex_wide, 128),
        "seed001_dict": Fixture(_save(seed001, d / "checkpoint0227-99.pth"), ex3, 100),
        "prefixed": Fixture(_save(prefixed, d / "ddp_compiled.pth"), ex1, 64),
        "fc_gen": Fixture(_save({"gen": fc.state_dict()}, d / "fc_gen.pth"), fc, 100, flat_z=True),
    }


@pytest.fixture(scope="session")
def small_ckpt(legacy: dict[str, Fixture]) -> Path:
    """A small tutorial-style checkpoint for CLI and determinism tests."""
    return legacy["examples_nc3"].path


@pytest.fixture(scope="session")
def artifacts(legacy, tmp_path_factory) -> dict[str, Path]:
    """fp32/fp16 ONNX and TorchScript exports of the small tutorial checkpoint."""
    d = tmp_path_factory.mktemp("artifacts")
    G = gan_serve.load(legacy["examples_nc3"].path)
    out = {"onnx": d / "g.onnx", "onnx16": d / "g.fp16.onnx", "ts": d / "g.pt", "ts16": d / "g.fp16.pt"}
    export_onnx(prepare(G), out["onnx"])
    export_onnx(prepare(G, fp16=True, fold_bn=True), out["onnx16"])
    export_torchscript(prepare(G), out["ts"])
    export_torchscript(prepare(G, fp16=True, fold_bn=True), out["ts16"])
    return out
