"""The installs README's "Installs" table promises, each built in its own virtual environment.

pip installs a wheel of this checkout, with its extras, from the package index (or pip's
cache) into fresh venvs in a temporary folder: `[cpu,serve]` (the torch-free deployment:
.onnx files by CLI and HTTP) and the bare core. About a minute; marked `install`, so CI runs
it and `pytest -m "not install"` skips it. numpy, pillow and onnxruntime are pinned to this
environment's versions: they decide the bytes, which must equal this environment's output.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import pytest

from gan_serve.extras import install_command

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]
PINNED = ("numpy", "pillow", "onnxruntime")  # the packages whose versions decide the bytes
SLIM_LIMIT_MB = 350  # measured 270 MB by du (README "Installs"), 252 MiB of files; torch alone is 754 MB


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _run(cmd: list, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def _source_copy(dest: Path) -> Path:
    """This checkout's files (tracked and untracked, not ignored), so the build sees no venv."""
    listed = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO)
    if listed.returncode != 0:  # not a git checkout: everything but the usual build debris
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "runs"))
        return dest
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _venv(path: Path, wheel: Path, extras: str, constraints: Path) -> tuple[Path, float]:
    start = time.monotonic()
    made = _run([sys.executable, "-m", "venv", path])
    assert made.returncode == 0, made.stderr
    spec = f"{wheel}[{extras}]" if extras else str(wheel)
    pip = _run([_bin(path, "python"), "-m", "pip", "install", "-q", "--no-compile", "-c", constraints, spec],
               timeout=600)  # --no-compile: byte-compiling every package costs a third of the time
    assert pip.returncode == 0, pip.stderr[-3000:]
    return path, time.monotonic() - start


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """'slim': the wheel with [cpu,serve]; 'core': the wheel alone."""
    root = tmp_path_factory.mktemp("install")
    src = _source_copy(root / "src")
    pip = [sys.executable, "-m", "pip"]
    built = _run([*pip, "wheel", "-q", "--no-deps", "-w", root / "wheels", src], timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((root / "wheels").glob("gan_serve-*.whl"))
    constraints = root / "constraints.txt"
    constraints.write_text("".join(f"{p}=={metadata.version(p)}\n" for p in PINNED))
    with ThreadPoolExecutor(2) as pool:  # pip mostly waits on the index: both at once
        slim = pool.submit(_venv, root / "slim", wheel, "cpu,serve", constraints)
        core = pool.submit(_venv, root / "core", wheel, "", constraints)
        (slim_venv, seconds), (core_venv, _) = slim.result(), core.result()
    print(f"\n[cpu,serve] venv built in {seconds:.0f} s", file=sys.stderr)
    return {"slim": slim_venv, "core": core_venv}


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def _one_line(proc: subprocess.CompletedProcess, extra: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].endswith(install_command(extra)), lines[0]
    return lines[0]


def test_the_slim_install_has_no_torch_and_stays_small(envs):
    for venv in envs.values():
        probe = _run([_bin(venv, "python"), "-c", "import torch"])
        assert "No module named 'torch'" in probe.stderr
    size = _size_mb(envs["slim"])
    print(f"[cpu,serve] venv: {size:.0f} MB; core: {_size_mb(envs['core']):.0f} MB", file=sys.stderr)
    assert size < SLIM_LIMIT_MB


def test_the_bundled_model_gives_this_environments_bytes(envs, tmp_path):
    here = _run([sys.executable, "-m", "gan_serve", "generate", "--seed", "42", "--n", "64",
                 "-o", tmp_path / "here.png"])
    assert here.returncode == 0, here.stderr
    slim = _run([_bin(envs["slim"], "gan-serve"), "generate", "--seed", "42", "--n", "64"], cwd=tmp_path)
    assert slim.returncode == 0, slim.stderr
    assert (tmp_path / "grid.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_an_exported_onnx_file_by_cli_and_http(envs, artifacts, tmp_path):
    onnx = artifacts["onnx"]  # exported here, with torch
    args = ["generate", "-m", onnx, "--seed", "7", "--n", "9", "-o"]
    here = _run([sys.executable, "-m", "gan_serve", *args, tmp_path / "here.png"])
    slim = _run([_bin(envs["slim"], "gan-serve"), *args, tmp_path / "slim.png"])
    assert here.returncode == 0 and slim.returncode == 0, here.stderr + slim.stderr
    cli_bytes = (tmp_path / "slim.png").read_bytes()
    assert cli_bytes == (tmp_path / "here.png").read_bytes()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([_bin(envs["slim"], "gan-serve"), "serve", "-m", onnx, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the server did not get ready in 60 s"
                time.sleep(0.2)
        body = json.dumps({"seed": 7, "n": 9}).encode()
        request = urllib.request.Request(f"{base}/generate", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.read() == cli_bytes
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_each_missing_extra_is_one_line_with_both_install_commands(envs, small_ckpt, tmp_path):
    slim, core = envs["slim"], envs["core"]
    line = _one_line(_run([_bin(slim, "gan-serve"), "generate", "-m", small_ckpt]), "torch")
    assert line.startswith(f"error: loading {small_ckpt.name!r} (a checkpoint) needs torch")
    _one_line(_run([_bin(slim, "gan-export"), "onnx", small_ckpt], cwd=tmp_path), "onnx")
    _one_line(_run([_bin(core, "gan-export"), "onnx", small_ckpt], cwd=tmp_path), "onnx,cpu")  # at once
    _one_line(_run([_bin(slim, "gan-train"), "--dry-run", "--out", tmp_path / "run"]), "train")
    assert not (tmp_path / "run").exists()
    _one_line(_run([_bin(core, "gan-serve"), "generate", "--n", "4"], cwd=tmp_path), "cpu")
    assert not (tmp_path / "grid.png").exists()
    line = _one_line(_run([_bin(slim, "gan-serve"), "serve", "-m", small_ckpt, "--port", "1"]), "torch")
    assert "needs torch" in line  # checked before binding the port
    _one_line(_run([_bin(core, "gan-serve"), "serve", "-m", small_ckpt]), "serve,torch")
    for script, command in (("gan-serve", "serve"), ("gan-serve", "generate"), ("gan-export", "onnx"),
                            ("gan-train", None)):
        shown = _run([_bin(core, script), *([command] if command else []), "--help"])
        assert shown.returncode == 0 and "--help" in shown.stdout, (script, command, shown.stderr)
