"""A real tritonserver (the one inside the nvidia-pytriton wheel, Triton 2.51.0) on a repository
that `gan-export triton` wrote: `<name>_by_seed` over HTTP and gRPC (tritonclient) returns
`gan-serve generate`'s pixels byte for byte, bad inputs get Triton errors while it keeps serving,
and the launcher leaves no process behind.

nvidia-pytriton 0.7.0 pins numpy < 2 for its Python API, which would downgrade this environment's
numpy; only its binary runs here, so unless the wheel is installed already the module installs it
with `pip install --no-deps --target` into a temporary folder (about 7 s from pip's cache). One
server serves the module's tests; three more start for the launcher's failure and stop paths.
Marked `triton` (CI runs it; deselect with -m 'not triton'). About a minute.
"""

from __future__ import annotations

import ipaddress
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from export.cli import app
from export.triton_server import PYTRITON, TritonInstall, TritonServer, free_port
from gan_serve.commands.cli import app as serve_app
from gan_serve.errors import CheckpointError, MissingExtraError

pytestmark = pytest.mark.triton

runner = CliRunner()
CLIENTS = {"http": httpclient, "grpc": grpcclient}
SEEDS = [0, 2**32 - 1, *range(1, 63)]  # 64 seeds: the ends of the seed range and a full batch


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> TritonInstall:
    try:
        return TritonInstall.find()
    except MissingExtraError:
        target = tmp_path_factory.mktemp("pytriton")
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                              "--target", str(target), PYTRITON], capture_output=True, text=True, timeout=600)
        assert pip.returncode == 0, pip.stderr[-3000:]
        return TritonInstall.find(target)


def _export(legacy, out: Path, *flags: str) -> Path:
    ckpt = str(legacy["examples_nc3"].path)
    res = runner.invoke(app, ["triton", ckpt, "-o", str(out), "--name", "m", *flags])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def repo(legacy, tmp_path_factory) -> Path:
    return _export(legacy, tmp_path_factory.mktemp("triton") / "repo")  # the default: python generator


@pytest.fixture(scope="module")
def server(repo, install):
    with TritonServer(repo, install) as running:
        yield running


@pytest.fixture(scope="module")
def expected(repo, tmp_path_factory) -> dict[float, dict[int, np.ndarray]]:
    """psi -> seed -> the pixels `gan-serve generate` writes for the repository's model.onnx."""
    out = {}
    for psi in (1.0, 0.7):
        folder = tmp_path_factory.mktemp(f"generate{psi}")
        res = runner.invoke(serve_app, ["generate", "-m", str(repo / "m" / "1" / "model.onnx"), "--seeds",
                                        ",".join(map(str, SEEDS)), "--psi", str(psi), "--individual",
                                        str(folder / "each"), "-o", str(folder / "grid.png")])
        assert res.exit_code == 0, res.output
        out[psi] = {int(p.stem[4:]): np.asarray(Image.open(p)) for p in (folder / "each").iterdir()}
    return out


def _infer(server, protocol: str, model: str, **inputs: np.ndarray) -> np.ndarray:
    """One request to `model` with numpy `inputs` (datatype from their dtype); its first output."""
    client_module = CLIENTS[protocol]
    client = client_module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    types = {np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32", np.dtype(np.float32): "FP32",
             np.dtype(np.float64): "FP64"}
    wire = []
    for name, array in inputs.items():
        wire.append(client_module.InferInput(name, list(array.shape), types[array.dtype]))
        wire[-1].set_data_from_numpy(array)
    output = {"m_by_seed": "pixels", "m_pixels": "pixels"}[model]
    result = client.infer(model, wire, outputs=[client_module.InferRequestedOutput(output)])
    return result.as_numpy(output)


def _by_seed(server, protocol: str, seeds: list[int], psi: float | None) -> np.ndarray:
    inputs = {"seeds": np.array(seeds, np.int64)[:, None]}
    if psi is not None:
        inputs["psi"] = np.full((len(seeds), 1), psi, np.float32)
    return _infer(server, protocol, "m_by_seed", **inputs)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("psi", [None, 1.0, 0.7])
def test_by_seed_equals_gan_serve_generate_byte_for_byte(server, expected, protocol, psi):
    want = expected[1.0 if psi is None else psi]
    for seeds in ([0], [2**32 - 1], SEEDS):  # batch sizes 1 and 64 (the repository's max_batch)
        pixels = _by_seed(server, protocol, seeds, psi)
        assert pixels.dtype == np.uint8 and pixels.shape == (len(seeds), 64, 64, 3)
        assert pixels.tobytes() == np.stack([want[s] for s in seeds]).tobytes()


def test_concurrent_requests_batched_together_keep_their_pixels(server, expected):
    # Triton's dynamic batcher merges these; the generator's fixed micro-batch keeps every image's bytes
    batches = [SEEDS[i : i + n] for i, n in ((0, 1), (1, 5), (6, 16), (22, 3), (25, 39), (3, 17))]
    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(lambda b: _by_seed(server, "grpc", b, 0.7), batches))
    for seeds, pixels in zip(batches, answers, strict=True):
        assert pixels.tobytes() == np.stack([expected[0.7][s] for s in seeds]).tobytes()


BAD = {  # name -> (inputs, the error Triton answers with)
    "negative seed": ({"seeds": np.array([[-1]], np.int64)}, "seed -1 is outside [0, 4294967295]"),
    "seed past 2**32-1": ({"seeds": np.array([[2**32]], np.int64)},
                          "seed 4294967296 is outside [0, 4294967295]"),
    "NaN psi": ({"seeds": np.array([[1]], np.int64), "psi": np.array([[math.nan]], np.float32)},
                "truncation psi must be in [0.0, 2.0] (1 = off), got nan"),
    "psi 3": ({"seeds": np.array([[1]], np.int64), "psi": np.array([[3.0]], np.float32)},
              "truncation psi must be in [0.0, 2.0] (1 = off), got 3.0"),
    "int32 seeds": ({"seeds": np.array([[1]], np.int32)}, "expects 'INT64'"),
    "float64 psi": ({"seeds": np.array([[1]], np.int64), "psi": np.array([[0.5]], np.float64)},
                    "expects 'FP32'"),
    "batch over max_batch": ({"seeds": np.arange(65, dtype=np.int64)[:, None]}, "batch-size must be <= 64"),
}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_triton_error_and_the_server_keeps_serving(server, expected, protocol, case):
    inputs, message = BAD[case]
    with pytest.raises(InferenceServerException) as refused:
        _infer(server, protocol, "m_by_seed", **inputs)
    assert message in refused.value.message()
    assert _by_seed(server, protocol, [5], None).tobytes() == expected[1.0][5].tobytes()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_the_pixels_model_refuses_nan_like_gan_serve(server, protocol, bad):
    images = np.zeros((2, 3, 64, 64), np.float32)
    pixels = _infer(server, protocol, "m_pixels", images=images)
    assert pixels.tobytes() == np.full((2, 64, 64, 3), 128, np.uint8).tobytes()
    images[1, 2, 3, 4] = bad
    with pytest.raises(InferenceServerException) as refused:
        _infer(server, protocol, "m_pixels", images=images)
    assert "the generator produced NaN or infinite values; no pixels were returned" in refused.value.message()


def _processes_naming(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (our temporary repository's path)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (proc / "status").read_text().splitlines()
            state = next(line for line in status if line.startswith("State"))
        except (OSError, StopIteration):
            continue
        if text in cmdline and "zombie" not in state and int(proc.name) != os.getpid():
            found.append(cmdline)
    return found


def _gone(text: str, seconds: float = 15.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _processes_naming(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_the_onnxruntime_variant_fails_in_one_line_on_the_pip_triton(legacy, install, tmp_path):
    repo = _export(legacy, tmp_path / "ort_repo", "--generator-backend", "onnxruntime")
    with pytest.raises(CheckpointError) as failed:
        TritonServer(repo, install).start()
    assert "unable to find backend library for backend 'onnxruntime'" in str(failed.value)
    assert "export with gan-export triton --generator-backend python" in str(failed.value)
    assert "\n" not in str(failed.value) and _gone(str(repo)) == []


def _listening(ports: list[int]) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets listening on `ports`, from /proc/net (no ss needed);
    an IPv4-mapped IPv6 address is given as its IPv4 address."""
    found = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port = local.split(":")
            if state == "0A" and int(port, 16) in ports:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in the host's (little-endian) order
                ip = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
                ip = getattr(ip, "ipv4_mapped", None) or ip
                found.append((str(ip), int(port, 16)))
    return found


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_launcher_serves_on_loopback_and_leaves_no_process(repo, install, tmp_path, how):
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))  # a path no other server's processes name
    ports = [free_port() for _ in range(3)]
    cmd = [sys.executable, "-m", "export.triton_server", str(repo), "--pytriton", str(install.home),
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the temporary folder a SIGKILLed launcher leaves
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = launcher.stdout.readline()  # printed once the server is ready
        served = "Triton serves m, m_by_seed, m_latents, m_pixels from "
        assert line.startswith(served), launcher.stderr.read()
        assert f"HTTP http://127.0.0.1:{ports[0]}, gRPC 127.0.0.1:{ports[1]}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=5) as ready:
            assert ready.status == 200
        assert sorted(_listening(ports)) == [("127.0.0.1", p) for p in sorted(ports)]  # nothing on 0.0.0.0
        launcher.send_signal(getattr(signal, how))
        assert launcher.wait(60) == (0 if how == "SIGTERM" else -signal.SIGKILL)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert _gone(str(repo)) == []  # tritonserver and its python-backend stubs, also after a SIGKILL
