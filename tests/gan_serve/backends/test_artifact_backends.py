"""Serving exported artifacts: ONNX Runtime and TorchScript behind the same Generator API."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

import gan_serve
from gan_serve.commands.cli import app
from gan_serve.errors import CheckpointError, InputError


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def reference(legacy):
    return gan_serve.load(legacy["examples_nc3"].path, backend="torch")  # fp32 eager


def test_onnx_fp32_matches_torch_within_one_step(artifacts, reference):
    G = gan_serve.load(artifacts["onnx"])
    assert G.backend == "onnx/cpu/fp32" and G.loaded.source_format == "ONNX (CPUExecutionProvider)"
    assert G.spec == reference.spec and G.module is None
    a, b = G.generate(range(42, 42 + 24)), reference.generate(range(42, 42 + 24))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_onnx_fp16_on_the_cpu_provider_meets_the_fp16_tolerance(artifacts, reference):
    G = gan_serve.load(artifacts["onnx16"])
    assert G.backend == "onnx/cpu/fp16"
    a, b = G.generate(range(32)), reference.generate(range(32))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 3 and psnr(a, b) >= 35


def test_onnx_images_do_not_depend_on_batch(artifacts):
    G = gan_serve.load(artifacts["onnx"])
    batch = G.generate(range(100, 120))
    for i in (0, 7, 8, 19):
        assert np.array_equal(batch[i], G.generate([100 + i])[0])


def test_same_seed_same_png_from_torch_and_onnx_on_the_command_line(artifacts, legacy, tmp_path):
    runner = CliRunner()
    for name, model in (("t", legacy["examples_nc3"].path), ("o", artifacts["onnx"])):
        res = runner.invoke(app, ["generate", "-m", str(model), "--seed", "42", "--n", "16",
                                  "-o", str(tmp_path / f"{name}.png")])
        assert res.exit_code == 0, res.output
    t, o = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in "to")
    assert np.abs(t.astype(int) - o.astype(int)).max() <= 1
    assert "onnx/cpu/fp32" in Image.open(tmp_path / "o.png").text["gan_serve.backend"]


def test_precision_is_the_artifacts_own(artifacts):
    with pytest.raises(InputError, match="exported as fp16"):
        gan_serve.load(artifacts["onnx16"], precision="fp32")
    with pytest.raises(InputError, match="cannot run"):
        gan_serve.load(artifacts["onnx"], backend="torchscript")


def test_cuda_device_is_checked_against_what_ort_really_got(artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and _has_gpu():
        pytest.skip("this machine has a GPU; the test covers onnxruntime-gpu without one")
    with pytest.raises(InputError, match="ONNX Runtime runs on CPUExecutionProvider"):
        gan_serve.load(artifacts["onnx"], device="cuda")
    with pytest.raises(InputError, match="--device tensorrt was asked for"):
        gan_serve.load(artifacts["onnx16"], device="tensorrt", precision="fp16")
    assert gan_serve.load(artifacts["onnx"], device="auto").backend == "onnx/cpu/fp32"


def _has_gpu() -> bool:
    return os.path.exists("/dev/nvidia0")


def test_onnx_that_is_not_a_generator(tmp_path):
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "relu.onnx")
    with pytest.raises(CheckpointError, match="not a generator ONNX model.*input x"):
        gan_serve.load(tmp_path / "relu.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        gan_serve.load(tmp_path / "junk.onnx")


def test_onnx_without_gan_serve_metadata_says_how_to_export(artifacts, tmp_path):
    model = onnx.load(str(artifacts["onnx"]))
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "bare.onnx")
    with pytest.raises(CheckpointError, match="gan-export"):
        gan_serve.load(tmp_path / "bare.onnx")


def test_onnx_serving_path_runs_without_torch(artifacts, tmp_path):
    """A slim deployment: importing torch fails, and an .onnx grid is still generated."""
    script = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not installed in this deployment")
        sys.meta_path.insert(0, NoTorch())
        from gan_serve.commands.cli import main
        sys.argv = ["gan-serve", "generate", "-m", {str(artifacts['onnx'])!r}, "--seed", "42",
                    "--n", "9", "-o", {str(tmp_path / 'g.png')!r}]
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch imported"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr
    G = gan_serve.load(artifacts["onnx"])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO((tmp_path / "g.png").read_bytes()))),
                          G.grid(range(42, 51)))


def test_torchscript_served_and_batch_independent(artifacts, reference):
    G = gan_serve.load(artifacts["ts"], backend="torchscript", trust_code=True)
    assert G.backend == "torchscript/cpu/fp32"
    assert np.array_equal(G.generate(range(10)), reference.generate(range(10)))


def test_gpu_device_without_a_gpu_is_one_line_on_the_command_line(artifacts, tmp_path):
    if _has_gpu():
        pytest.skip("this machine has a GPU; the test covers onnxruntime-gpu without one")
    res = CliRunner().invoke(app, ["generate", "-m", str(artifacts["onnx16"]), "--device", "tensorrt",
                                   "--precision", "fp16", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "error: --device tensorrt was asked for, but ONNX Runtime runs on CPUExecutionProvider: "
        "no usable GPU or TensorRT libraries here; use --device cpu"]
    assert res.stdout == ""
