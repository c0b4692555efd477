"""Start the Triton Inference Server that pip installs (inside the nvidia-pytriton wheel) on a
`gan-export triton` repository, on loopback, and stop it without leaving a process behind.

    python -m export.triton_server REPO      (or: gan-export triton-serve REPO)

The wheel carries `pytriton/tritonserver/bin/tritonserver` (Triton 2.51.0 for 0.7.0) with the
python backend only, and one python-backend stub per Python version under
`python_backend_stubs/X.Y/`; the libraries they link sit in `nvidia_pytriton.libs/` beside it.
Run as they lie, the python models do not load. `TritonServer` lays out a backend folder with
the stub of this Python, puts `nvidia_pytriton.libs` on LD_LIBRARY_PATH and this Python's bin/
first on PATH (the stub's embedded Python takes its packages, numpy and onnxruntime, from the
environment of the first python3 on PATH), binds HTTP, gRPC and metrics to 127.0.0.1, waits
until the server says ready, and stops it with SIGTERM, then SIGKILL to its process group.

nvidia-pytriton 0.7.0 requires numpy < 2 for its own Python API, which nothing here imports:
only its binary runs. Where that pin conflicts (numpy 2 environments), install the wheel
without its dependencies into a folder of its own and pass that folder (`pytriton_home`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from gan_serve.errors import CheckpointError, InputError, MissingExtraError

HOST = "127.0.0.1"  # never another address: Triton's HTTP and gRPC have no authentication
PYTRITON = "nvidia-pytriton==0.7.0"  # the wheel whose tritonserver this was tested with (Triton 2.51.0)


def _missing(why: str) -> MissingExtraError:
    return MissingExtraError(
        f"the Triton launcher needs the tritonserver binary of nvidia-pytriton ({why}): "
        'pip install -e ".[tritonserver]" in a clone, or pip install "gan-serve[tritonserver]"; '
        f"or pip install --no-deps --target DIR {PYTRITON} and pass --pytriton DIR")


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel's pieces lie: `home` is the folder that holds `pytriton/` (a site-packages,
    or a `pip install --target` folder)."""

    home: Path

    @property
    def dist(self) -> Path:
        return self.home / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.dist / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.home / "nvidia_pytriton.libs"

    def stub(self, version: str = f"{sys.version_info[0]}.{sys.version_info[1]}") -> Path:
        return self.dist / "python_backend_stubs" / version / "triton_python_backend_stub"

    @classmethod
    def find(cls, home: Path | None = None) -> TritonInstall:
        """The install in `home`, or the one this Python imports; MissingExtraError when absent."""
        if home is None:
            try:
                spec = find_spec("pytriton")  # locates the package without running it
            except (ImportError, ValueError):
                spec = None
            if spec is None or not spec.submodule_search_locations:
                raise _missing("not installed here")
            home = Path(list(spec.submodule_search_locations)[0]).parent
        install = cls(Path(home))
        if not install.binary.is_file():
            raise _missing(f"no {install.binary} found")
        if not install.stub().is_file():
            found = sorted(p.parent.name for p in install.dist.glob("python_backend_stubs/*/*_stub"))
            raise _missing(f"it has python-backend stubs for Python {', '.join(found) or 'none'}, "
                           f"not for this Python {sys.version_info[0]}.{sys.version_info[1]}")
        return install


def free_port() -> int:
    """A port nothing listens on now, on loopback (Triton takes no port 0)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM to tritonserver when the process
    # that started it dies, even by SIGKILL, so a killed launcher leaves no server behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def check_repository(repo: Path) -> list[str]:
    """The model names in `repo`; InputError when it is no model repository."""
    if not repo.is_dir():
        raise InputError(f"no such model repository: {str(repo)!r} (gan-export triton writes one)")
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    if not models:
        raise InputError(f"{str(repo)!r} holds no model (no <model>/config.pbtxt): "
                         "gan-export triton writes a repository")
    return models


_NOISE = re.compile(r"cuda|nvml|dcgm|pinned|gpu", re.IGNORECASE)  # a CPU machine's start-up errors
_ERROR = re.compile(r'^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] +"?(.*?)"?$')


def first_error(log: str) -> str:
    """The first error Triton logged that is not a CPU machine's usual GPU noise, as one line."""
    for line in log.splitlines():
        found = _ERROR.match(line.strip())
        if found and not _NOISE.search(found.group(1)):
            message = found.group(1).strip()
            if "backend library for backend 'onnxruntime'" in message:
                message += ("; this Triton has no onnxruntime backend (nvidia-pytriton's has the python "
                            "backend only): export with gan-export triton --generator-backend python")
            return message
    tail = [line for line in log.splitlines() if line.strip()][-1:]
    return tail[0] if tail else "it printed nothing"


class TritonServer:
    """tritonserver on `repo`, bound to 127.0.0.1: `with TritonServer(repo) as server:` starts it and
    waits until it is ready (every model loaded); leaving the block stops it. Ports left at 0 are
    picked free; `log` keeps Triton's output (by default it goes to a temporary file)."""

    def __init__(self, repo: Path, install: TritonInstall | None = None, *, http_port: int = 0,
                 grpc_port: int = 0, metrics_port: int = 0, log: Path | None = None,
                 ready_timeout: float = 120.0) -> None:
        self.repo = Path(repo).resolve()
        self.models = check_repository(self.repo)
        self.install = install or TritonInstall.find()
        self.ports = {"http": http_port or free_port(), "grpc": grpc_port or free_port(),
                      "metrics": metrics_port or free_port()}
        self.log, self.ready_timeout = log, ready_timeout
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.ports['grpc']}"

    def command(self, backends: Path) -> list[str]:
        """The tritonserver command line: every listener on loopback, no cloud front ends."""
        return [str(self.install.binary), f"--model-repository={self.repo}",
                f"--backend-directory={backends}",
                *(f"--{kind}-address={HOST}" for kind in self.ports),
                *(f"--{kind}-port={port}" for kind, port in self.ports.items()),
                "--allow-sagemaker=false", "--allow-vertex-ai=false", "--exit-timeout-secs=10"]

    def environment(self) -> dict[str, str]:
        """PATH finds this Python first (the stubs' packages); the wheel's libraries are found."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.install.libs), env.get("LD_LIBRARY_PATH", "")) if p)
        return env

    def _backends(self, folder: Path) -> Path:
        # Triton runs <backend-directory>/python/triton_python_backend_stub: the wheel keeps the stubs
        # apart (one per Python), so this Python's goes beside a copy of the backend (3 MB)
        python = folder / "backends" / "python"
        python.mkdir(parents=True)
        for item in (self.install.dist / "backends" / "python").iterdir():
            if item.is_file():
                shutil.copy2(item, python / item.name)
        shutil.copy2(self.install.stub(), python / "triton_python_backend_stub")
        return folder / "backends"

    def start(self) -> TritonServer:
        """Start tritonserver and return once it is ready; raise (and stop it) if it is not."""
        self._tmp = tempfile.TemporaryDirectory(prefix="gan-serve-triton-")
        folder = Path(self._tmp.name)
        log_path = self.log or folder / "tritonserver.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.command(self._backends(folder)), env=self.environment(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self._wait_ready(log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log_path: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = log_path.read_text("utf-8", "replace")
                raise CheckpointError(f"tritonserver stopped before it was ready (exit code "
                                      f"{self.process.returncode}): {first_error(log)}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise CheckpointError(f"tritonserver was not ready after {self.ready_timeout:g} s: "
                              f"{first_error(log_path.read_text('utf-8', 'replace'))}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (Triton unloads its models and ends their stubs), then SIGKILL to whatever of
        its process group is left, after `grace` seconds or at once if the server is gone."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # stubs it left, or a server that would not stop
            process.wait()
            self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """`python -m export.triton_server REPO [options]`: `gan-export triton-serve`."""
    from .cli import main as cli_main

    sys.argv[1:1] = ["triton-serve"]
    cli_main()


if __name__ == "__main__":
    main()
