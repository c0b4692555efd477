"""Soak: a real `gan-serve serve` on 127.0.0.1 under valid, invalid, huge, slow-client and
over-capacity traffic at once, for a bounded time (not in CI).

    python benchmarks/soak.py [--seconds 120] [--model default]

The server runs with small limits so that every defence is reached: --max-queue 32 (429),
--max-connections 48 (503), --header-timeout 2 and --body-timeout 2 (slow clients cut off).
Meanwhile:
  valid      8 clients POST a few fixed requests; every 200 is compared byte for byte with what
             `gan-serve generate` / `interpolate` write for the same request (run once at start)
  invalid    1 client: malformed JSON, non-UTF-8, `true` as n, seeds out of range, unknown fields
  huge       1 client: 1 MB bodies by Content-Length and 200 KB chunked bodies
  slow       16 slowloris connections, one header line every 0.5 s, reopened when cut
  burst      every 5 s, 80 connections that each send a valid request at one instant
The report: statuses per kind, 200/429/503 latency, RSS of the server over time, how long slow
clients lasted, and the failures (a status the OpenAPI document does not list, any 5xx but
503, any byte mismatch, any refusal of a valid request with a 4xx other than 429).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from loadtest import free_port, machine, start_server

SERVER_ARGS = ["--max-n", "16", "--max-queue", "32", "--max-connections", "48",
               "--header-timeout", "2", "--body-timeout", "2"]
VALID = {  # name -> (path, body, CLI arguments that write the same bytes)
    "grid": ("/generate", {"seeds": "0-3"}, ["generate", "--seeds", "0-3"]),
    "one": ("/generate", {"seed": 42, "n": 1}, ["generate", "--seed", "42", "--n", "1"]),
    "webp": ("/generate", {"seeds": [7, 9], "format": "webp", "truncation": 0.7},
             ["generate", "--seeds", "7,9", "--format", "webp", "--truncation", "0.7"]),
    "strip": ("/interpolate", {"seeds": [3, 5], "steps": 4, "format": "png"},
              ["interpolate", "--seeds", "3,5", "--steps", "4", "--strip"]),
}
DOCUMENTED = {0, 200, 404, 408, 413, 422, 429, 503}  # 0: closed by the server (a refused upload)
INVALID = [b"{not json", b'{"n": true}', b'{"seeds": [4294967296]}', b'{"n": "\xff"}',
           b'{"sed": 1}', b'{"seeds": "0-999999"}', b"[" * 5000]


def request(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def exchange(port: int, data: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Send `data` on a new connection; (status, body), status 0 when the server closed first
    (or did not answer within `timeout`)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (TimeoutError, OSError):
        return 0, b""
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (TimeoutError, OSError):
        return 0, b""
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return (int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0), body


class Soak:
    def __init__(self, port: int, pid: int, seconds: float, expected: dict[str, bytes]) -> None:
        self.port, self.pid, self.expected = port, pid, expected
        self.end = time.monotonic() + seconds
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.latency: dict[int, list[float]] = defaultdict(list)
        self.rss: list[tuple[float, float]] = []
        self.slow_lasted: list[float] = []
        self.failures: list[str] = []

    def record(self, kind: str, status: int, seconds: float) -> None:
        self.statuses[kind][status] += 1
        self.latency[status].append(seconds * 1000)
        if status not in DOCUMENTED:
            self.failures.append(f"{kind}: {status}")

    async def valid(self, i: int) -> None:
        names = sorted(VALID)
        k = i
        while time.monotonic() < self.end:
            name = names[k % len(names)]
            k += 1
            path, body, _ = VALID[name]
            t = time.perf_counter()
            status, data = await exchange(self.port, request(path, json.dumps(body).encode()))
            self.record("valid", status, time.perf_counter() - t)
            if status == 200 and data != self.expected[name]:
                self.failures.append(f"valid {name}: 200 with bytes that differ from the CLI's")
            elif 400 <= status < 500 and status != 429:
                self.failures.append(f"valid {name}: refused with {status}")

    async def invalid(self) -> None:
        k = 0
        while time.monotonic() < self.end:
            body = INVALID[k % len(INVALID)]
            k += 1
            t = time.perf_counter()
            status, _ = await exchange(self.port, request("/generate", body))
            self.record("invalid", status, time.perf_counter() - t)
            if status == 200:
                self.failures.append(f"invalid body {body[:30]!r} was served")

    async def huge(self) -> None:
        big, k = b"[" + b"1," * 500_000 + b"1]", 0
        chunked = (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"".join(b"2000\r\n" + b" " * 0x2000 + b"\r\n" for _ in range(25)) + b"0\r\n\r\n")
        while time.monotonic() < self.end:
            k += 1
            t = time.perf_counter()
            status, _ = await exchange(self.port, request("/generate", big) if k % 2 else chunked)
            self.record("huge", status, time.perf_counter() - t)
            await asyncio.sleep(0.05)

    async def slow(self) -> None:
        while time.monotonic() < self.end:
            t = time.monotonic()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"POST /generate HTTP/1.1\r\nHost: x\r\n")
                for i in range(1000):
                    await asyncio.sleep(0.5)
                    if time.monotonic() >= self.end:
                        break
                    writer.write(f"X-Slow-{i}: 1\r\n".encode())
                    await writer.drain()
                    if reader.at_eof():  # the server closed it
                        break
                writer.close()
            except (ConnectionError, OSError):
                pass
            if time.monotonic() < self.end:
                self.slow_lasted.append(time.monotonic() - t)

    async def bursts(self) -> None:
        path, body, _ = VALID["one"]
        data = request(path, json.dumps(body).encode())
        while time.monotonic() < self.end - 2:
            await asyncio.sleep(5)
            t = time.perf_counter()

            async def one(t: float = t) -> None:
                status, got = await exchange(self.port, data)
                self.record("burst", status, time.perf_counter() - t)
                if status == 200 and got != self.expected["one"]:
                    self.failures.append("burst: 200 with bytes that differ from the CLI's")

            await asyncio.gather(*(one() for _ in range(80)))

    async def sample_rss(self) -> None:
        start = time.monotonic()
        while time.monotonic() < self.end:
            with open(f"/proc/{self.pid}/status") as fh:
                kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
            self.rss.append((time.monotonic() - start, kb / 1024))
            await asyncio.sleep(1)

    async def run(self) -> None:
        await asyncio.gather(*(self.valid(i) for i in range(8)), self.invalid(), self.huge(),
                             *(self.slow() for _ in range(16)), self.bursts(), self.sample_rss())


def cli_bytes(model: str, folder: Path) -> dict[str, bytes]:
    """What the CLI writes for each valid request (the reference every 200 must equal)."""
    out = {}
    for name, (_, _, args) in VALID.items():
        cmd = [sys.executable, "-m", "gan_serve", *args, "--model", model, "-o", "-"]
        out[name] = subprocess.run(cmd, capture_output=True, check=True, cwd=folder).stdout
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else (values or [0])[0]


def report(s: Soak, seconds: float, model: str) -> str:
    lines = [f"`python benchmarks/soak.py --seconds {seconds:g} --model {model}`, "
             f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {machine()}; server: "
             f"{' '.join(SERVER_ARGS)}", "", "| traffic | responses by status |", "|---|---|"]
    for kind, counts in sorted(s.statuses.items()):
        by_status = ", ".join(f"{st or 'closed'}: {n}" for st, n in sorted(counts.items()))
        lines.append(f"| {kind} | {by_status} |")
    lines += ["", "| status | count | median ms | p99 ms |", "|---|---:|---:|---:|"]
    for status in sorted(s.latency):
        v = s.latency[status]
        lines.append(f"| {status or 'closed'} | {len(v)} | {statistics.median(v):.0f} | {pct(v, 99):.0f} |")
    rss = [mb for _, mb in s.rss]
    quarter = max(1, len(rss) // 4)
    lines += ["", f"server RSS: {rss[0]:.0f} MB at start, {statistics.median(rss[:quarter]):.0f} MB "
              f"median of the first quarter, {statistics.median(rss[-quarter:]):.0f} MB median of the "
              f"last quarter, {max(rss):.0f} MB peak ({len(rss)} samples)",
              f"slow clients: {len(s.slow_lasted)} cut off, lasted median "
              f"{statistics.median(s.slow_lasted or [0]):.1f} s, max {max(s.slow_lasted or [0]):.1f} s",
              f"200s checked byte for byte against the CLI: "
              f"{sum(c[200] for k, c in s.statuses.items() if k in ('valid', 'burst'))}",
              f"failures: {len(s.failures)}" + (f" (first: {s.failures[:3]})" if s.failures else "")]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="how long the mixed traffic runs")
    ap.add_argument("--model", default="default", help="checkpoint or bundled name")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        expected = cli_bytes(args.model, Path(d))
    port = free_port()
    proc = start_server(args.model, port, SERVER_ARGS)
    try:
        soak = Soak(port, proc.pid, args.seconds, expected)
        asyncio.run(soak.run())
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    print(report(soak, args.seconds, args.model))
    print(f"server still serving at the end: {alive}")
    sys.exit(1 if soak.failures or not alive else 0)


if __name__ == "__main__":
    main()
