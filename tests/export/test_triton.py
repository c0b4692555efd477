"""The Triton repository: configs read back by Triton's own protobuf, the Python models'
`execute` under a stand-in for triton_python_backend_utils, and the seed ensemble's pixels
against `gan-serve generate`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from typer.testing import CliRunner

import gan_serve
import gan_serve.runtime
from export import read_config, recipe_files
from export.cli import app
from export.onnx import onnx_io
from export.triton_server import first_error
from gan_serve.backends import CPU_MICRO_BATCH
from gan_serve.commands.cli import app as serve_app
from gan_serve.images import to_uint8
from gan_serve.latents import latents_for_seeds
from tests.export import triton_stand_in as tsi

runner = CliRunner()
SEEDS = [0, 1, 7, 42, 4096, 2**32 - 1]


@pytest.fixture(scope="module")
def repo(legacy, tmp_path_factory):
    """A repository exported from the small RGB checkpoint under the name "m"."""
    out = tmp_path_factory.mktemp("triton") / "repo"
    res = runner.invoke(app, ["triton", str(legacy["examples_nc3"].path), "-o", str(out), "--name", "m",
                              "--max-batch", "16"])
    assert res.exit_code == 0, res.output
    assert "m_by_seed (ensemble: seeds -> uint8 pixels)" in res.stdout
    return out


def _config(repo, name):
    return read_config((repo / name / "config.pbtxt").read_text())


def test_onnx_config_matches_the_model(legacy, tmp_path):
    res = runner.invoke(app, ["triton", str(legacy["examples_nc1"].path), "-o", str(tmp_path / "repo"),
                              "--name", "mnist", "--max-batch", "32", "--generator-backend", "onnxruntime"])
    assert res.exit_code == 0, res.output
    cfg = _config(tmp_path / "repo", "mnist")
    assert cfg.name == "mnist" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 32
    (z_in,), (img_out,) = onnx_io(tmp_path / "repo" / "mnist" / "1" / "model.onnx")
    assert (cfg.input[0].name, list(cfg.input[0].dims)) == (z_in[0], z_in[2][1:])
    assert (cfg.output[0].name, list(cfg.output[0].dims)) == (img_out[0], [1, 64, 64])
    db = cfg.dynamic_batching
    queue_delay_us = db.max_queue_delay_microseconds  # a configured bound read back, not a measured time
    assert queue_delay_us > 0 and db.default_queue_policy.max_queue_size > 0
    assert max(db.preferred_batch_size) <= 32
    pixels = _config(tmp_path / "repo", "mnist_pixels")
    assert list(pixels.input[0].dims) == [1, 64, 64] and list(pixels.output[0].dims) == [64, 64, 1]
    assert sorted(p.name for p in (tmp_path / "repo" / "mnist" / "1").iterdir()) == ["model.onnx"]


def test_the_default_generator_runs_onnx_runtime_in_a_python_model(repo):
    cfg = _config(repo, "m")
    assert (cfg.backend, cfg.platform) == ("python", "")
    assert {k: v.string_value for k, v in cfg.parameters.items()} == {
        "role": "generator", "micro_batch": str(CPU_MICRO_BATCH)}  # gan-serve's own CPU passes
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("z", [100])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("images", [3, 64, 64])]
    assert cfg.dynamic_batching.max_queue_delay_microseconds > 0 and cfg.max_batch_size == 16
    files = sorted(p.name for p in (repo / "m" / "1").iterdir())
    assert files == ["gan_serve_recipe", "model.onnx", "model.py"]


def test_an_unknown_generator_backend_is_one_line(legacy, tmp_path):
    res = runner.invoke(app, ["triton", str(legacy["examples_nc1"].path), "-o", str(tmp_path / "repo"),
                              "--generator-backend", "tensorrt"])
    assert res.exit_code == 2 and not (tmp_path / "repo").exists()
    assert res.output.strip() == "error: --generator-backend must be python or onnxruntime, got 'tensorrt'"


def test_the_generator_model_runs_gan_serves_micro_batches(repo):
    model = tsi.load_python_model(repo / "m")
    z = latents_for_seeds(SEEDS * 5, 100)  # 30 rows: one full pass of 16 and one padded pass
    (response,) = model.execute([tsi.InferenceRequest([tsi.Tensor("z", z)])])
    got = response.output_tensors[0].as_numpy()
    options = model.session.get_session_options()  # gan-serve's thread choices (gan_serve.runtime)
    assert options.intra_op_num_threads == gan_serve.runtime.thread_count()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    G = gan_serve.load(repo / "m" / "1" / "model.onnx")
    assert G.runner.micro_batch == CPU_MICRO_BATCH
    want = np.concatenate([G.runner.run(np.pad(z[i : i + 16], ((0, 16 - len(z[i : i + 16])), (0, 0))))
                           [: len(z[i : i + 16])] for i in (0, 16)])
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()


def test_read_config_refuses_what_triton_would(repo):
    text = (repo / "m" / "config.pbtxt").read_text()
    assert read_config(text).name == "m"
    with pytest.raises(text_format.ParseError, match="max_batch_sise"):
        read_config(text.replace("max_batch_size", "max_batch_sise"))
    latents = (repo / "m_latents" / "config.pbtxt").read_text()
    with pytest.raises(text_format.ParseError, match="KIND_ANY"):
        read_config(latents.replace("KIND_CPU", "KIND_ANY"))


def test_ensemble_steps_name_the_inputs_and_outputs_of_their_models(repo):
    ensemble = _config(repo, "m_by_seed")
    assert ensemble.platform == "ensemble" and (repo / "m_by_seed" / "1").is_dir()
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["m_latents", "m", "m_pixels"]
    produced = {t.name for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        cfg = _config(repo, step.model_name)
        assert cfg.max_batch_size == ensemble.max_batch_size == 16
        assert set(step.input_map) == {t.name for t in cfg.input}
        assert set(step.output_map) == {t.name for t in cfg.output}
        assert set(step.input_map.values()) <= produced
        produced |= set(step.output_map.values())
    assert {t.name for t in ensemble.output} <= produced
    assert [t.optional for t in ensemble.input] == [False, True]  # psi may be left out
    for name in ("m_latents", "m_pixels"):
        assert _config(repo, name).backend == "python"
        assert sorted(p.name for p in (repo / name / "1").iterdir()) == ["gan_serve_recipe", "model.py"]


def _generate(tmp_path, onnx, seeds, psi):
    out = tmp_path / f"psi{psi}"
    res = runner.invoke(serve_app, ["generate", "-m", str(onnx), "--seeds", ",".join(map(str, seeds)),
                                    "--psi", str(psi), "--individual", str(out),
                                    "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    by_seed = {int(p.stem[4:]): p for p in out.iterdir()}
    return np.stack([np.asarray(Image.open(by_seed[s])) for s in seeds])


@pytest.mark.parametrize("psi", [None, 1.0, 0.7])
def test_ensemble_pixels_equal_gan_serve_generate_byte_for_byte(repo, tmp_path, legacy, psi):
    inputs = {"seeds": np.array(SEEDS, np.int64)[:, None]}
    if psi is not None:
        inputs["psi"] = np.full((len(SEEDS), 1), psi, np.float32)
    pixels = tsi.run_ensemble(repo, "m_by_seed", inputs)["pixels"]
    assert pixels.dtype == np.uint8 and pixels.shape == (len(SEEDS), 64, 64, 3)
    cli = _generate(tmp_path, repo / "m" / "1" / "model.onnx", SEEDS, 1.0 if psi is None else psi)
    assert pixels.tobytes() == cli.tobytes()  # the same ONNX file through gan-serve
    eager = gan_serve.load(legacy["examples_nc3"].path, backend="torch")  # fp32
    torch_pixels = eager.generate(SEEDS, 1.0 if psi is None else psi)
    assert np.abs(pixels.astype(int) - torch_pixels.astype(int)).max() <= 1  # the export tolerance


def test_latents_model_answers_each_request_on_its_own(repo):
    model = tsi.load_python_model(repo / "m_latents")
    good = tsi.InferenceRequest([tsi.Tensor("seeds", np.array([[3], [4]], np.int64)),
                                 tsi.Tensor("psi", np.array([[1.0], [0.5]], np.float32))])
    negative = tsi.InferenceRequest([tsi.Tensor("seeds", np.array([[-1]], np.int64))])
    too_big = tsi.InferenceRequest([tsi.Tensor("seeds", np.array([[2**32]], np.int64))])
    bad_psi = tsi.InferenceRequest([tsi.Tensor("seeds", np.array([[5]], np.int64)),
                                    tsi.Tensor("psi", np.array([[3.0]], np.float32))])
    ok, neg, big, psi = model.execute([good, negative, too_big, bad_psi])
    z = latents_for_seeds([3, 4], 100)
    assert not ok.has_error() and ok.output_tensors[0].name() == "z"
    assert ok.output_tensors[0].as_numpy().tobytes() == np.stack([z[0], z[1] * np.float32(0.5)]).tobytes()
    assert neg.error.message() == "seed -1 is outside [0, 4294967295]"
    assert big.error.message() == "seed 4294967296 is outside [0, 4294967295]"
    assert psi.error.message() == "truncation psi must be in [0.0, 2.0] (1 = off), got 3.0"


def test_pixels_model_uses_the_output_range(repo, legacy, tmp_path):
    model = tsi.load_python_model(repo / "m_pixels")
    images = np.array([-1.0, -0.5, 0.0, 1.0, 2.0, -3.0], np.float32).reshape(1, 1, 2, 3)
    images = np.repeat(images, 3, axis=1)
    (response,) = model.execute([tsi.InferenceRequest([tsi.Tensor("images", images)])])
    assert response.output_tensors[0].as_numpy()[0, :, :, 0].tolist() == [[0, 64, 128], [255, 255, 0]]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pixels_model_refuses_nan_like_gan_serve(repo, bad):
    model = tsi.load_python_model(repo / "m_pixels")
    good = np.zeros((1, 3, 64, 64), np.float32)
    images = good.copy()
    images[0, 1, 5, 7] = bad
    ok, refused = model.execute([tsi.InferenceRequest([tsi.Tensor("images", good)]),
                                 tsi.InferenceRequest([tsi.Tensor("images", images)])])
    assert not ok.has_error() and ok.output_tensors[0].as_numpy().shape == (1, 64, 64, 3)
    assert refused.output_tensors == [] and refused.error.message() == (
        "the generator produced NaN or infinite values; no pixels were returned "
        "(`gan-serve inspect` checks its weights)")


def test_recipe_package_is_gan_serves_own_code_and_needs_numpy_only(repo):
    folder = repo / "m_latents" / "1" / "gan_serve_recipe"
    assert (folder / "latents.py").read_bytes() == Path(gan_serve.latents.__file__).read_bytes()
    assert (folder / "errors.py").read_bytes() == Path(gan_serve.errors.__file__).read_bytes()
    assert (folder / "runtime.py").read_bytes() == Path(gan_serve.runtime.__file__).read_bytes()
    assert sorted(recipe_files()) == sorted(f"gan_serve_recipe/{p.name}" for p in folder.iterdir())
    for path in folder.iterdir():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                top = module.split(".")[0]
                assert top == "numpy" or top in sys.stdlib_module_names, f"{path.name} imports {module}"
    recipe = tsi.load_python_model(repo / "m_latents").recipe
    z = recipe.truncate(recipe.latents_for_seeds(SEEDS, 128), 0.7)
    assert z.tobytes() == gan_serve.latents.truncate(latents_for_seeds(SEEDS, 128), 0.7).tobytes()
    x = np.linspace(-1.5, 1.5, 2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert recipe.to_uint8(x, (-1.0, 1.0)).tobytes() == to_uint8(x, (-1.0, 1.0)).tobytes()


def test_without_tritonclient_the_command_names_the_extra(legacy, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # import fails as if not installed
    res = runner.invoke(app, ["triton", str(legacy["examples_nc1"].path), "-o", str(tmp_path / "repo")])
    assert res.exit_code == 2 and not (tmp_path / "repo").exists()
    assert res.output.strip().splitlines() == [
        "error: a Triton repository needs tritonclient[grpc] (the triton extra): "
        'pip install -e ".[triton]" in a clone, or pip install "gan-serve[triton]"']


def test_the_launcher_without_nvidia_pytriton_is_one_line(repo, tmp_path, monkeypatch):
    res = runner.invoke(app, ["triton-serve", str(repo), "--pytriton", str(tmp_path)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    binary = tmp_path / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    assert res.output.startswith("error: the Triton launcher needs the tritonserver binary of "
                                 f"nvidia-pytriton (no {binary} found): ")
    assert 'pip install "gan-serve[tritonserver]"' in res.output and "--pytriton DIR" in res.output
    monkeypatch.setitem(sys.modules, "pytriton", None)  # find_spec raises as if it were not installed
    res = runner.invoke(app, ["triton-serve", str(repo)])
    assert res.exit_code == 2 and "nvidia-pytriton (not installed here)" in res.output


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_the_launcher_refuses_a_folder_that_is_no_repository(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["triton-serve", str(tmp_path / folder), "--pytriton", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: no such model repository: {str(tmp_path / 'missing')!r} (gan-export triton writes one)"
        if folder == "missing" else f"error: {str(tmp_path / 'empty')!r} holds no model "
        "(no <model>/config.pbtxt): gan-export triton writes a repository"]


def test_first_error_skips_a_cpu_machines_gpu_noise():
    in_use = "failed to start GRPC service: Unavailable - Socket '127.0.0.1:1' already in use"
    log = "\n".join([
        'W1206 20:50:41.918992 10460 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory"',
        'E1206 20:50:41.919117 10460 server.cc:241] "CudaDriverHelper has not been initialized."',
        f'E1206 20:51:21.816951 11390 main.cc:245] "{in_use} "'])
    assert first_error(log) == in_use
    assert first_error("") == "it printed nothing"
