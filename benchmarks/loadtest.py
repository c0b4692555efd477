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
import tempfile
import time
from pathlib import Path

import httpx2

NGF64 = "netG-ngf64"
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


async def flood(port: int, n: int, clients: int, bursts: int, background: int) -> dict[str, float]:
    """`bursts` floods of `clients` requests of n images sent at one instant (each on its own
    open connection) while `background` clients keep the model thread and the encoders busy
    with n=64 grids. Latencies count from the instant a flood starts (the stricter measure)."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    answers: dict[int, list[float]] = {}
    stop = asyncio.Event()

    async def busy(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not stop.is_set():
            if await post(reader, writer, request_bytes("/generate", 10_000 * i, 64)) != 200:
                await asyncio.sleep(0.01)  # refused: try again soon, without spinning
        writer.close()

    keep_busy = [asyncio.create_task(busy(i)) for i in range(background)]
    await asyncio.sleep(0.5)
    for b in range(bursts):
        data = [request_bytes("/generate", (b * clients + i) * n, n) for i in range(clients)]
        t0 = time.perf_counter()

        async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes,
                      t0: float = t0) -> None:
            status = await post(reader, writer, req)
            answers.setdefault(status, []).append(time.perf_counter() - t0)

        await asyncio.gather(*(one(r, w, d) for (r, w), d in zip(conns, data, strict=True)))
        print(f"burst {b}: last answer after {(time.perf_counter() - t0) * 1000:.0f} ms", file=sys.stderr)
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*keep_busy)
    for _, writer in conns:
        writer.close()
    refused, served = sorted(answers.get(429, [])), sorted(answers.get(200, []))

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")

    return {"refused": len(refused), "served": len(served), "other": sum(len(v) for k, v in
            answers.items() if k not in (200, 429)), "p50": pct(refused, 0.5), "p99": pct(refused, 0.99),
            "max": pct(refused, 1.0), "served_p50": pct(served, 0.5), "served_p99": pct(served, 0.99)}


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


def server_cpu_seconds(pid: int) -> float:
    """CPU-seconds the server process (all its threads) used so far; 0 without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def run_cell(port: int, pid: int, label: str, n: int, conc: int, count: int, seconds: float) -> dict:
    (busy0, ours0), passes, server0 = cpu_seconds(pid), batch_stats(port), server_cpu_seconds(pid)
    t0 = time.perf_counter()
    result = asyncio.run(drive(port, ROUTES[label], n, conc, count, seconds))
    (busy1, ours1), after = cpu_seconds(pid), batch_stats(port)
    # the server's CPU per answered request: what the machine's load changes least
    result["cpu_ms"] = (server_cpu_seconds(pid) - server0) * 1000 / max(result["done"], 1)
    # CPU the rest of the machine took meanwhile, as a share of all CPUs: noise in the figures
    result["others"] = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (
        (time.perf_counter() - t0) * (os.cpu_count() or 1))
    result["per_pass"] = (after[1] - passes[1]) / max(after[0] - passes[0], 1)
    return result


def median_cell(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def model_file(model: str, folder: Path) -> str:
    """`--model netG-ngf64` builds the random-init pytorch/examples netG (ngf=64) into `folder`."""
    if model != NGF64:
        return model
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.reference_nets import ExamplesNetG, randomize, spread_output

    path = folder / "netG_ngf64.pth"
    torch.save(spread_output(randomize(ExamplesNetG(ngf=64), 2), 100).state_dict(), path)
    return str(path)


def run_cells(model: str, extra: list[str], sizes: list[int], concurrencies: list[int],
              requests: int, seconds: float, repeats: int) -> list[tuple[int, int, dict]]:
    """Batched vs naive, side by side: (n, concurrency, {"batched": medians, "naive": medians})."""
    port = free_port()
    proc = start_server(model, port, extra)
    rows = []
    try:
        for n in sizes:
            count = requests if n == 1 else max(16, requests // 8)
            for conc in concurrencies:
                asyncio.run(drive(port, ROUTES["batched"], n, conc, 2 * conc, 5))  # warm both paths
                asyncio.run(drive(port, ROUTES["naive"], n, conc, 2 * conc, 5))
                runs: dict[str, list[dict]] = {"batched": [], "naive": []}
                for _ in range(repeats):
                    for label in runs:
                        runs[label].append(run_cell(port, proc.pid, label, n, conc, count, seconds))
                        print(f"n={n} c={conc} {label}: {runs[label][-1]}", file=sys.stderr)
                rows.append((n, conc, {k: median_cell(v) for k, v in runs.items()}))
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def loop_cpu_seconds(server_pid: int) -> float:
    """CPU-seconds the server's main thread (uvicorn's event loop) used so far; 0 without /proc."""
    try:
        stat = Path(f"/proc/{server_pid}/task/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def run_flood(model: str, extra: list[str], clients: int, n: int, bursts: int, background: int) -> dict:
    """The flood against a fresh server, plus the event loop's CPU per flood request and the
    share of the machine's CPU that other processes took meanwhile."""
    port = free_port()
    proc = start_server(model, port, extra)
    try:
        (busy0, ours0), loop0, t0 = cpu_seconds(proc.pid), loop_cpu_seconds(proc.pid), time.perf_counter()
        result = asyncio.run(flood(port, n, clients, bursts, background))
        (busy1, ours1), loop1 = cpu_seconds(proc.pid), loop_cpu_seconds(proc.pid)
        result["loop_us"] = (loop1 - loop0) / (clients * bursts) * 1e6
        result["others"] = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (
            (time.perf_counter() - t0) * (os.cpu_count() or 1))
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def cells_table(rows: list[tuple[int, int, dict]]) -> str:
    lines = ["| n | concurrency | batched req/s | img/s | p50 / p90 / p99 ms | images per pass | "
             "naive req/s | naive p50 / p90 / p99 ms | batched / naive | server CPU ms per request, "
             "batched / naive |",
             "|---:|---:|---:|---:|---|---:|---:|---|---:|---|"]
    for n, conc, c in rows:
        b, v = c["batched"], c["naive"]
        lines.append(f"| {n} | {conc} | {b['rps']:.1f} | {b['rps'] * n:.0f} | {b['p50']:.0f} / "
                     f"{b['p90']:.0f} / {b['p99']:.0f} | {b['per_pass']:.1f} | {v['rps']:.1f} | "
                     f"{v['p50']:.0f} / {v['p90']:.0f} / {v['p99']:.0f} | {b['rps'] / v['rps']:.2f}x | "
                     f"{b['cpu_ms']:.1f} / {v['cpu_ms']:.1f} |")
    errors = sum(c[k]["errors"] for _, _, c in rows for k in c)
    if errors:
        lines.append(f"\n{errors:g} requests failed (non-200) and are not counted.")
    others = max(c[k]["others"] for _, _, c in rows for k in c)
    lines.append(f"\nOther processes took at most {others:.0%} of the machine's CPU during a cell "
                 "(median run).")
    return "\n".join(lines)


def flood_table(f: dict, clients: int, n: int, bursts: int) -> str:
    return "\n".join([
        "| flood | 429s | 429 p50 / p99 / max ms | 200s | 200 p50 / p99 ms | other statuses | "
        "event loop CPU per request | others' CPU share |",
        "|---|---:|---|---:|---|---:|---:|---:|",
        f"| {bursts} x {clients} requests of n={n} | {f['refused']} | {f['p50']:.0f} / {f['p99']:.0f} / "
        f"{f['max']:.0f} | {f['served']} | {f['served_p50']:.0f} / {f['served_p99']:.0f} | {f['other']} | "
        f"{f['loop_us']:.0f} us | {f['others']:.0%} |"])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs (client and server share them)"


def bench(quick: bool = False, model: str = NGF64) -> list:
    """Target 4 for `python -m benchmarks`: n=1 at concurrency 32 and n=64 at concurrency 8,
    batched vs the naive endpoint side by side (medians of 3 runs of 10 s; --quick: 1 of 5 s),
    and floods of 200 against --max-queue 16. A couple of minutes (--quick: about one)."""
    from benchmarks.common import Row

    seconds, repeats = (5.0, 1) if quick else (10.0, 3)
    with tempfile.TemporaryDirectory() as d:
        path = model_file(model, Path(d))
        rows = run_cells(path, [], [1], [32], 300, seconds, repeats) + \
            run_cells(path, [], [64], [8], 300, seconds, repeats)
        f = run_flood(path, ["--max-queue", "16"], 200, 1, 3 if quick else 5, 1)
    goals = {1: ">= 4x naive and p99 <= 100 ms", 64: ">= 1.5x naive"}
    out = []
    for n, conc, c in rows:
        b, v = c["batched"], c["naive"]
        out.append(Row(f"4 HTTP n={n}, concurrency {conc}, examples netG", f"{b['rps']:.1f} req/s, "
                       f"p99 {b['p99']:.0f} ms", f"naive {v['rps']:.1f} req/s, p99 {v['p99']:.0f} ms",
                       f"{b['rps'] / v['rps']:.2f}x", goals[n],
                       f"others took {max(b['others'], v['others']):.0%} of the CPUs"))
    out.append(Row("4 HTTP 429s, floods of 200, --max-queue 16", f"p99 {f['p99']:.0f} ms",
                   f"{f['refused']} refused, {f['served']} served", "", "p99 <= 50 ms",
                   f"event loop {f['loop_us']:.0f} us CPU per request; others took {f['others']:.0%}"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default",
                    help=f"checkpoint, exported artifact or bundled name; {NGF64}: the random-init "
                    "pytorch/examples netG (ngf=64), built in a temporary folder")
    ap.add_argument("--requests", type=int, default=400, help="requests per cell for n=1 (n=64: 1/8)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time bound per cell")
    ap.add_argument("--repeats", type=int, default=3, help="runs per cell; the table shows medians")
    ap.add_argument("--sizes", default="1,64", help="images per request, comma-separated")
    ap.add_argument("--concurrency", default="1,8,32", help="client concurrencies, comma-separated")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra `gan-serve serve` argument (repeatable), e.g. --server-arg=--max-batch=32")
    ap.add_argument("--flood", type=int, default=0, metavar="CLIENTS",
                    help="instead of the cells: floods of CLIENTS requests sent at one instant (pair "
                    "with a small queue: --server-arg=--max-queue=16); reports how fast 429s come back")
    ap.add_argument("--flood-n", type=int, default=1, help="images per flood request")
    ap.add_argument("--bursts", type=int, default=5, help="floods, 0.2 s apart")
    ap.add_argument("--background", type=int, default=1,
                    help="clients that keep the model busy with n=64 requests during the floods")
    args = ap.parse_args()
    extra = "".join(f" --server-arg={a}" for a in args.server_arg)
    with tempfile.TemporaryDirectory() as d:
        model = model_file(args.model, Path(d))
        if args.flood:
            f = run_flood(model, args.server_arg, args.flood, args.flood_n, args.bursts, args.background)
            print(f"`python benchmarks/loadtest.py --model {args.model} --flood {args.flood} --flood-n "
                  f"{args.flood_n} --bursts {args.bursts} --background {args.background}{extra}`, "
                  f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {machine()}\n")
            print(flood_table(f, args.flood, args.flood_n, args.bursts))
            return
        rows = run_cells(model, args.server_arg, [int(v) for v in args.sizes.split(",")],
                         [int(v) for v in args.concurrency.split(",")], args.requests, args.seconds,
                         args.repeats)
    print(f"`python benchmarks/loadtest.py --model {args.model} --requests {args.requests} --seconds "
          f"{args.seconds:g} --repeats {args.repeats} --sizes {args.sizes} --concurrency "
          f"{args.concurrency}{extra}`, {datetime.datetime.now():%Y-%m-%d %H:%M}, {machine()}, "
          f"medians of {args.repeats}\n")
    print(cells_table(rows))


if __name__ == "__main__":
    main()
