"""Model files never run code unless the user asks: TorchScript only with --backend torchscript
--trust-code, a custom class only when the user names it with --arch."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gan_serve
from export.cli import app as export_app
from gan_serve.checkpoint import save_native
from gan_serve.commands.cli import app
from gan_serve.discriminator import load_discriminator
from gan_serve.errors import UnsafeCheckpointError
from gan_serve.http.app import load_models
from gan_serve.http.settings import ServeSettings
from gan_serve.spec import DCGANConfig, ModelSpec, artifact_metadata
from training.cli import app as train_app

PRECIOUS = b"the user's file\n" * 4
runner = CliRunner()


class Overwriter(torch.nn.Module):
    """A TorchScript 'generator' whose forward overwrites the file at `path` with zeros."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.path, True, 4)  # shared=True: a writable map of the file
        t.fill_(0.0)
        return torch.zeros(z.shape[0], 3, 8, 8) + t[0]  # uses t, so the write is kept


@pytest.fixture()
def evil(tmp_path: Path) -> dict[str, Path]:
    """The victim file and the same TorchScript program under several names."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(PRECIOUS)
    spec = ModelSpec(config=DCGANConfig(z_dim=4, widths=[8]).to_dict(), z_dim=4, img_resolution=8,
                     channels=3, z_layout="flat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(Overwriter(str(victim)))
        ts = tmp_path / "g_epoch_85.pth"
        torch.jit.save(scripted, str(ts), _extra_files=artifact_metadata(spec, "fp32", "0" * 64))
    names = {"pth": ts, "pt": tmp_path / "model.pt", "safetensors": tmp_path / "model.safetensors",
             "bin": tmp_path / "weights.bin"}
    for p in names.values():
        if p != ts:
            p.write_bytes(ts.read_bytes())
    return {"victim": victim, **names}


def refused_in_one_line(res: object) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "TorchScript" in lines[0] and "runs code from the file" in lines[0]
    assert "--trust-code" in lines[0]
    return lines[0]


@pytest.mark.parametrize("name", ["pth", "pt", "safetensors", "bin"])
def test_the_python_api_refuses_torchscript_whatever_its_name(evil, name):
    for kwargs in ({}, {"backend": "torch"}, {"backend": "torchscript"}, {"trust_code": True}):
        with pytest.raises(UnsafeCheckpointError, match="runs code from the file"):
            gan_serve.load(evil[name], **kwargs).generate([0])
    assert evil["victim"].read_bytes() == PRECIOUS


@pytest.mark.parametrize("args", [
    ["generate", "-m", "{ts}", "-o", "{tmp}/g.png"],
    ["generate", "-m", "{ts}", "--backend", "torchscript", "-o", "{tmp}/g.png"],
    ["interpolate", "-m", "{ts}", "--from", "0", "--to", "1", "-o", "{tmp}/i.png"],
    ["inspect", "{ts}"],
    ["convert", "{ts}", "{tmp}/out.safetensors"],
    ["generate", "--rank-with", "{ts}", "--candidates", "16", "--n", "2", "-o", "{tmp}/r.png"],
    ["serve", "-m", "{ts}", "--port", "1"],
])
def test_every_gan_serve_command_refuses_it_in_one_line(evil, tmp_path, args):
    argv = [a.format(ts=evil["pth"], tmp=tmp_path) for a in args]
    refused_in_one_line(runner.invoke(app, argv))
    assert evil["victim"].read_bytes() == PRECIOUS
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "out.safetensors").exists()


def test_export_training_discriminator_and_http_refuse_it(evil, tmp_path, small_ckpt):
    ts = str(evil["pth"])
    refused_in_one_line(runner.invoke(export_app, ["onnx", ts, "-o", str(tmp_path / "g.onnx")]))
    refused_in_one_line(runner.invoke(export_app, ["verify", ts, str(small_ckpt)]))
    refused_in_one_line(runner.invoke(train_app, ["--dry-run", "--init-from", ts,
                                                  "--out", str(tmp_path / "run")]))
    with pytest.raises(UnsafeCheckpointError, match="runs code from the file"):
        load_discriminator(evil["pth"])
    with pytest.raises(UnsafeCheckpointError, match="runs code from the file"):
        load_models(ServeSettings(models=[ts]))
    with pytest.raises(UnsafeCheckpointError, match="runs code from the file"):
        load_models(ServeSettings(models=[ts], backend="torchscript"))  # no trust_code
    assert evil["victim"].read_bytes() == PRECIOUS


def test_with_the_explicit_opt_in_it_loads_and_runs(evil):
    G = gan_serve.load(evil["pth"], backend="torchscript", trust_code=True)
    G.generate([0])
    assert evil["victim"].read_bytes() != PRECIOUS  # the payload is real: only the opt-in ran it


def test_the_opt_in_runs_an_exported_artifact_everywhere(artifacts, legacy, tmp_path):
    reference = gan_serve.load(legacy["examples_nc3"].path, backend="torch")  # fp32 eager
    res = runner.invoke(app, ["generate", "-m", str(artifacts["ts"]), "--backend", "torchscript",
                              "--trust-code", "--seeds", "0-3", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    (G,) = load_models(ServeSettings(models=[str(artifacts["ts"])], backend="torchscript",
                                     trust_code=True)).values()
    assert np.array_equal(G.generate(range(4)), reference.generate(range(4)))


# -- --arch: a file's metadata never imports a module -----------------------------------------
EVILMOD = """
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("evilmod ran")
import torch
class G(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3 * 8 * 8)
    def forward(self, z):
        return self.fc(z.flatten(1)).reshape(-1, 3, 8, 8)
"""


@pytest.fixture()
def evilmod(tmp_path, monkeypatch) -> Path:
    """evilmod.py on sys.path and in the cwd; importing it writes imported.marker."""
    (tmp_path / "evilmod.py").write_text(EVILMOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("evilmod", None)


def _native_file(path: Path, arch: str) -> Path:
    module = torch.nn.Module()
    module.fc = torch.nn.Linear(4, 3 * 8 * 8)
    spec = ModelSpec(arch=arch, z_dim=4, img_resolution=8, channels=3, z_layout="flat")
    return save_native(module, spec, path)


@pytest.mark.parametrize("arch", ["evilmod:G", "this:Foo", "os:system"])
def test_metadata_naming_a_module_imports_nothing(evilmod, arch, capsys):
    path = _native_file(evilmod / "model.safetensors", arch)
    with pytest.raises(UnsafeCheckpointError, match="never imports code"):
        gan_serve.load("model.safetensors")
    res = runner.invoke(app, ["inspect", str(path)])
    assert res.exit_code == 2 and "--arch" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (evilmod / "imported.marker").exists() and "evilmod" not in sys.modules
    assert "Beautiful is better than ugly" not in capsys.readouterr().out + res.output


def test_the_users_own_arch_is_imported_and_only_that_one(evilmod):
    path = _native_file(evilmod / "model.safetensors", "this:Foo")
    G = gan_serve.load(path, arch="evilmod:G", output_range=(-1, 1))
    assert (evilmod / "imported.marker").exists()  # the user named it: intended
    assert G.generate([0]).shape == (1, 8, 8, 3) and G.spec.arch == "evilmod:G"
    assert "this" not in sys.modules
