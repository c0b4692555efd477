"""Load test: a real `gan-serve serve` process on 127.0.0.1, batched vs naive endpoint.

    python benchmarks/loadtest.py [--model default] [--requests 400] [--seconds 20] [--repeats 3]

Starts `gan-serve serve --naive-endpoint` on a free port, then for n=1 and n=64 images per
request and concurrency 1, 8 and 32 drives POST /generate (dynamic batching) and
POST /generate-naive (each request its own forward pass) side by side: the two endpoints
alternate, each cell sends a bounded number of requests within a time bound, and the table
shows the median over the repeats. The load generator is a light asyncio client on the same
machine (it shares the CPUs with the server). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2

ROUTES = {"batched": "/generate", "naive": "/generate-naive"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gan_serve", "serve", "--model", model, "--port", str(port),
           "--naive-endpoint", "--max-n", "64", "--max-queue", "4096", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx2.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start: " + proc.stderr.read().decode()[-2000:])


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    """One keep-alive HTTP/1.1 POST over a raw stream: a client light enough to share the
    CPUs with the server (httpx costs more CPU per request than the server does)."""
    writer.write(data)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return int(status_line.split()[1])


def request_bytes(path: str, seed: int, n: int) -> bytes:
    body = json.dumps({"seed": seed, "n": n}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def drive(port: int, path: str, n: int, concurrency: int, requests: int, seconds: float
                ) -> dict[str, float]:
    """`requests` requests (or what fits in `seconds`) from `concurrency` keep-alive clients."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            if time.perf_counter() > deadline:
                break
            data = request_bytes(path, (i * n) % 2**31, n)
            t0 = time.perf_counter()
            if await post(reader, writer, data) == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1000, "p90": q[89] * 1000,
            "p99": q[98] * 1000, "done": len(latencies), "errors": errors}


def batch_stats(port: int) -> tuple[float, float]:
    """(forward passes, images) so far, from /metrics."""
    text = httpx2.get(f"http://127.0.0.1:{port}/metrics").text
    count = sum(float(v) for v in re.findall(r"^gan_serve_batch_size_count\{[^}]*\} (\S+)", text, re.M))
    total = sum(float(v) for v in re.findall(r"^gan_serve_batch_size_sum\{[^}]*\} (\S+)", text, re.M))
    return count, total


def cpu_seconds(server_pid: int) -> tuple[float, float]:
    """(CPU-seconds used by the whole machine, by the server and this client) so far, from
    /proc; (0, 0) where there is none."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        machine = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        server = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    busy = sum(int(machine[i]) for i in (0, 1, 2, 5, 6)) / tick  # user nice system irq softirq
    ours = (int(server[11]) + int(server[12])) / tick + time.process_time()
    return busy, ours


def run_cell(port: int, pid: int, label: str, n: int, conc: int, count: int, seconds: float) -> dict:
    (busy0, ours0), passes = cpu_seconds(pid), batch_stats(port)
    t0 = time.perf_counter()
    result = asyncio.run(drive(port, ROUTES[label], n, conc, count, seconds))
    (busy1, ours1), after = cpu_seconds(pid), batch_stats(port)
    # CPU the rest of the machine took meanwhile, as a share of all CPUs: noise in the figures
    result["others"] = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (
        (time.perf_counter() - t0) * (os.cpu_count() or 1))
    result["per_pass"] = (after[1] - passes[1]) / max(after[0] - passes[0], 1)
    return result


def median_cell(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="checkpoint, exported artifact or bundled name")
    ap.add_argument("--requests", type=int, default=400, help="requests per cell for n=1 (n=64: 1/8)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time bound per cell")
    ap.add_argument("--repeats", type=int, default=3, help="runs per cell; the table shows medians")
    ap.add_argument("--sizes", default="1,64", help="images per request, comma-separated")
    ap.add_argument("--concurrency", default="1,8,32", help="client concurrencies, comma-separated")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra `gan-serve serve` argument (repeatable), e.g. --server-arg=--max-batch=32")
    args = ap.parse_args()
    port = free_port()
    proc = start_server(args.model, port, args.server_arg)
    rows = []
    try:
        for n in (int(v) for v in args.sizes.split(",")):
            count = args.requests if n == 1 else max(16, args.requests // 8)
            for conc in (int(v) for v in args.concurrency.split(",")):
                asyncio.run(drive(port, ROUTES["batched"], n, conc, 2 * conc, 5))  # warm both paths
                asyncio.run(drive(port, ROUTES["naive"], n, conc, 2 * conc, 5))
                runs: dict[str, list[dict]] = {"batched": [], "naive": []}
                for _ in range(args.repeats):
                    for label in runs:
                        runs[label].append(run_cell(port, proc.pid, label, n, conc, count, args.seconds))
                        print(f"n={n} c={conc} {label}: {runs[label][-1]}", file=sys.stderr)
                rows.append((n, conc, {k: median_cell(v) for k, v in runs.items()}))
    finally:
        proc.terminate()
        proc.wait(30)
    extra = "".join(f" --server-arg={a}" for a in args.server_arg)
    print(f"`python benchmarks/loadtest.py --model {args.model} --requests {args.requests} --seconds "
          f"{args.seconds:g} --repeats {args.repeats}{extra}`"
          f", {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} CPUs "
          f"(client and server share them), medians of {args.repeats}\n")
    print("| n | concurrency | batched req/s | img/s | p50 / p90 / p99 ms | images per pass | "
          "naive req/s | naive p50 / p90 / p99 ms | batched / naive |")
    print("|---:|---:|---:|---:|---|---:|---:|---|---:|")
    for n, conc, c in rows:
        b, v = c["batched"], c["naive"]
        print(f"| {n} | {conc} | {b['rps']:.1f} | {b['rps'] * n:.0f} | {b['p50']:.0f} / {b['p90']:.0f} / "
              f"{b['p99']:.0f} | {b['per_pass']:.1f} | {v['rps']:.1f} | {v['p50']:.0f} / {v['p90']:.0f} / "
              f"{v['p99']:.0f} | {b['rps'] / v['rps']:.2f}x |")
    errors = sum(c[k]["errors"] for _, _, c in rows for k in c)
    if errors:
        print(f"\n{errors:g} requests failed (non-200) and are not counted.")
    others = max(c[k]["others"] for _, _, c in rows for k in c)
    print(f"\nOther processes took at most {others:.0%} of the machine's CPU during a cell (median run).")


if __name__ == "__main__":
    main()
