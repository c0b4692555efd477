"""Seeds per second through Triton's `<name>_by_seed` ensemble (the real tritonserver of the
nvidia-pytriton wheel) against `gan-serve serve`, on the same model.onnx, side by side.

    python benchmarks/triton_throughput.py [--model netG-ngf64] [--pytriton DIR] [--repeats 5]

Exports the model with `gan-export triton` (the default python-backend generator), starts both
servers on 127.0.0.1 (`export.triton_server.TritonServer`, and `gan-serve serve -m
repo/<name>/1/model.onnx`: ONNX Runtime on the CPU, fp32, for both), then for each concurrency
sends `--requests` requests of 64 seeds from that many client threads: gRPC `infer` on Triton
(uint8 pixels back), `POST /generate {"seed", "n": 64}` on gan-serve (its default answer, one PNG
grid, so its figure includes PNG encoding). The two alternate cell by cell, `--repeats` times;
the table gives medians. Without nvidia-pytriton in this environment it is installed with
`pip install --no-deps --target` into a temporary folder (the wheel pins numpy < 2).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from benchmarks.loadtest import NGF64, free_port, model_file, start_server  # noqa: E402
from export.triton_server import PYTRITON, TritonInstall, TritonServer  # noqa: E402
from gan_serve.errors import MissingExtraError  # noqa: E402

N = 64  # seeds per request: the repository's max_batch


def install(home: Path | None, folder: Path) -> TritonInstall:
    try:
        return TritonInstall.find(home)
    except MissingExtraError:
        if home is not None:
            raise
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(folder), PYTRITON], check=True)
        return TritonInstall.find(folder)


def triton_call(url: str) -> callable:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)

    def call(seed: int) -> None:
        seeds = grpcclient.InferInput("seeds", [N, 1], "INT64")
        seeds.set_data_from_numpy(np.arange(seed, seed + N, dtype=np.int64)[:, None])
        pixels = client.infer("m_by_seed", [seeds]).as_numpy("pixels")
        assert pixels.shape[0] == N
    return call


def serve_call(port: int) -> callable:
    client = httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

    def call(seed: int) -> None:
        answer = client.post("/generate", json={"seed": seed, "n": N})
        assert answer.status_code == 200, answer.text[:200]
    return call


def cell(calls: list, requests: int) -> float:
    """Seeds per second: `requests` requests of N seeds spread over one client per entry of calls."""
    def worker(i: int) -> None:
        for r in range(i, requests, len(calls)):
            calls[i](r * N)
    start = time.perf_counter()
    with ThreadPoolExecutor(len(calls)) as pool:
        list(pool.map(worker, range(len(calls))))
    return requests * N / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=NGF64, help=f"checkpoint; {NGF64}: the random-init examples netG")
    ap.add_argument("--pytriton", type=Path, help="folder holding nvidia-pytriton's pytriton/")
    ap.add_argument("--concurrency", default="1,2")
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = model_file(args.model, folder)
        gan_export = Path(sys.executable).parent / "gan-export"
        export = subprocess.run([str(gan_export), "triton", ckpt, "-o", str(folder / "repo"), "--name", "m",
                                 "--max-batch", str(N)], capture_output=True, text=True)
        assert export.returncode == 0, export.stderr
        onnx = folder / "repo" / "m" / "1" / "model.onnx"
        port = free_port()
        serve = start_server(str(onnx), port, ["--max-batch", str(N)])
        try:
            with TritonServer(folder / "repo", install(args.pytriton, folder / "pytriton")) as triton:
                rows = measure(triton.grpc_url, port, [int(c) for c in args.concurrency.split(",")],
                               args.requests, args.repeats)
        finally:
            serve.terminate()
            serve.wait(30)
    report(args, rows)


def measure(grpc_url: str, port: int, concurrencies: list[int], requests: int, repeats: int) -> list:
    rows = []
    for c in concurrencies:
        systems = {"triton": [triton_call(grpc_url) for _ in range(c)],
                   "serve": [serve_call(port) for _ in range(c)]}
        for calls in systems.values():
            cell(calls, c)  # warm-up: sessions, threads, connections
        runs = {name: [] for name in systems}
        for _ in range(repeats):
            for name, calls in systems.items():  # alternating: a shared machine's load hits both
                runs[name].append(cell(calls, requests))
        rows.append((c, {k: statistics.median(v) for k, v in runs.items()}, runs))
    return rows


def report(args: argparse.Namespace, rows: list) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"`python benchmarks/triton_throughput.py --model {args.model} --concurrency {args.concurrency} "
          f"--requests {args.requests} --repeats {args.repeats}`, {now}, {machine()}")
    print("\n| concurrency | Triton by_seed seeds/s | gan-serve serve seeds/s | Triton / serve "
          "| runs (Triton; serve) |")
    print("|---:|---:|---:|---:|---|")
    for c, med, runs in rows:
        each = "; ".join(", ".join(f"{v:.0f}" for v in runs[k]) for k in ("triton", "serve"))
        ratio = med["triton"] / med["serve"]
        print(f"| {c} | {med['triton']:.0f} | {med['serve']:.0f} | {ratio:.2f}x | {each} |")


if __name__ == "__main__":
    main()
