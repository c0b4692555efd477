"""`gan-export` on the command line: outputs, verify, and every bad input."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from export.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_onnx_default_name_in_the_current_folder(legacy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run("onnx", legacy["examples_nc1"].path, "--fp16")
    assert res.exit_code == 0, res.output
    assert "verified" in res.stdout and (tmp_path / "netG_mnist.fp16.onnx").exists()
    res = run("verify", tmp_path / "netG_mnist.fp16.onnx", legacy["examples_nc1"].path)
    assert res.exit_code == 0 and "verified" in res.stdout and "(fp16)" in res.stdout


def test_verify_fails_for_the_wrong_checkpoint(legacy, artifacts):
    res = run("verify", artifacts["onnx"], legacy["seed001_dict"].path)
    assert res.exit_code == 0  # same weights: seed001_dict holds examples_nc3 under 'gen'
    res = run("verify", artifacts["ts"], legacy["seed000"].path, "--trust-code")
    assert res.exit_code in (1, 2) and "TorchScript" not in res.stderr
    res = run("verify", artifacts["ts"], legacy["examples_nc3"].path, "--trust-code")
    assert res.exit_code == 0 and "verified" in res.stdout


@pytest.mark.parametrize("args,match", [
    (["onnx", "{missing}"], "no such file"),
    (["onnx", "{notes}"], "not a checkpoint"),
    (["onnx", "{ckpt}", "--max-batch", "0"], "--max-batch must be at least 1"),
    (["onnx", "{ckpt}", "--opset", "3"], "--opset must be from 7"),
    (["onnx", "{ckpt}", "-o", "/no/such/dir/g.onnx"], "does not exist"),
    (["torchscript", "{ckpt}", "--device", "cuda"], "no CUDA GPU"),
    (["triton", "{ckpt}", "--max-batch", "0"], "--max-batch must be at least 1"),
    (["verify", "{ckpt}", "{ckpt}"], "not an exported artifact"),
    (["verify", "{notonnx}", "{ckpt}"], "not a readable ONNX model"),
    (["onnx", "{onnxfile}"], "it is an ONNX file"),
    (["all", "{ckpt}", "-o", "/no/such/dir/out"], "does not exist"),
    (["all", "{missing}", "-o", "new"], "no such file"),  # and no folder "new" either
])
def test_bad_input(args, match, legacy, tmp_path, monkeypatch, artifacts):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; the case covers machines without one")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.pth").write_text("not a model")
    (tmp_path / "x.onnx").write_text("not onnx either")
    paths = {"missing": tmp_path / "nope.pth", "notes": tmp_path / "notes.pth",
             "ckpt": legacy["examples_nc1"].path, "notonnx": tmp_path / "x.onnx",
             "onnxfile": artifacts["onnx"]}
    before = set(tmp_path.iterdir())
    res = run(*[a.format(**paths) for a in args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.stderr
    assert set(tmp_path.iterdir()) == before  # nothing half-written


def test_all_creates_its_output_folder_like_triton(legacy, tmp_path):
    res = run("all", legacy["examples_nc1"].path, "-o", tmp_path / "artifacts")
    assert res.exit_code == 0, res.output
    made = {p.name for p in (tmp_path / "artifacts").iterdir()}
    assert made == {"netG_mnist.onnx", "netG_mnist.fp16.onnx", "netG_mnist.pt", "triton_repo"}
    res = run("all", legacy["examples_nc1"].path, "-o", tmp_path / "artifacts" / "netG_mnist.pt")
    assert res.exit_code == 2 and "is not a folder" in res.stderr
