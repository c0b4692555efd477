"""Load test: a real `gan-serve serve` process on 127.0.0.1, batched vs naive endpoint.

    python benchmarks/loadtest.py [--model default] [--requests 300] [--seconds 30]

Starts `gan-serve serve --naive-endpoint` on a free port, then for n=1 and n=64 requests
and concurrency 1, 8, 32 drives POST /generate (dynamic batching) and POST /generate-naive
(one request = its own forward pass) side by side, with a bounded number of requests and a
time bound per cell. Prints a Markdown table: requests/s, images/s, p50/p90/p99 latency.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gan_serve", "serve", "--model", model, "--port", str(port),
           "--naive-endpoint", "--max-n", "64", "--max-queue", "4096"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start: " + proc.stderr.read().decode()[-2000:])


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
               body: bytes) -> int:
    """One keep-alive HTTP/1.1 POST over a raw stream: a load generator light enough to share
    2 cores with the server (httpx costs more CPU per request than the server does)."""
    writer.write(head + body)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def drive(port: int, path: str, n: int, concurrency: int, requests: int, seconds: float
                ) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds

    def request(i: int) -> tuple[bytes, bytes]:
        body = json.dumps({"seed": i * n, "n": n}).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        return head, body

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            if await post(reader, writer, *request(i)) == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
        writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await post(reader, writer, *request(0))  # warm-up
    writer.close()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"rps": len(latencies) / elapsed, "ips": len(latencies) * n / elapsed,
            "p50": q[49] * 1000, "p90": q[89] * 1000, "p99": q[98] * 1000,
            "done": len(latencies), "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default",
                    help="a checkpoint, a bundled name, or 'tutorial-ngf64' for a random-init "
                    "pytorch/examples netG (ngf=64) built on the spot")
    ap.add_argument("--requests", type=int, default=300, help="requests per cell for n=1")
    ap.add_argument("--seconds", type=float, default=30.0, help="time bound per cell")
    args = ap.parse_args()
    port = free_port()
    tmp = tempfile.TemporaryDirectory()
    model = args.model
    if model == "tutorial-ngf64":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import torch

        from tests.legacy_models import ExamplesNetG, randomize, spread_output

        model = str(Path(tmp.name) / "netG_ngf64.pth")
        torch.save(spread_output(randomize(ExamplesNetG(ngf=64), 2), 100).state_dict(), model)
    proc = start_server(model, port)
    rows = []
    try:
        for n in (1, 64):
            count = args.requests if n == 1 else max(20, args.requests // 8)
            for conc in (1, 8, 32):
                cells = {}
                for label, path in (("batched", "/generate"), ("naive", "/generate-naive")):
                    cells[label] = asyncio.run(drive(port, path, n, conc, count, args.seconds))
                    print(f"n={n} c={conc} {label}: {cells[label]}", file=sys.stderr)
                rows.append((n, conc, cells))
    finally:
        proc.terminate()
        proc.wait(20)
        tmp.cleanup()
    print(f"`python benchmarks/loadtest.py --model {args.model} --requests {args.requests} "
          f"--seconds {args.seconds:g}`, {datetime.date.today()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs (client and server share them)\n")
    print("| n | concurrency | batched req/s | batched img/s | p50 / p90 / p99 ms | naive req/s | "
          "naive p50 / p90 / p99 ms | batched / naive |")
    print("|---:|---:|---:|---:|---|---:|---|---:|")
    for n, conc, c in rows:
        b, v = c["batched"], c["naive"]
        print(f"| {n} | {conc} | {b['rps']:.1f} | {b['ips']:.0f} | {b['p50']:.0f} / {b['p90']:.0f} / "
              f"{b['p99']:.0f} | {v['rps']:.1f} | {v['p50']:.0f} / {v['p90']:.0f} / {v['p99']:.0f} | "
              f"{b['rps'] / v['rps']:.2f}x |")


if __name__ == "__main__":
    main()
