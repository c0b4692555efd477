"""Bulk at scale (issue 29, item 4): `generate --individual` end to end against the raw rate.

    python -m benchmarks.bulk_share [--n 20000] [--repeats 3] [-m netG|bundled|PATH]
                                    [--dir DIR] [--code DIR ...] [--stages]

Each round runs, in turn, fresh processes of: the raw rate (`Generator.generate` of the same
model, timed after one warm-up pass, as target 1 times it), `generate --n N --individual`
(start-up, model load, generation, encoding and files: what a user waits for), and `generate
--n 1 --individual` (the start-up alone). Shares are bulk img/s over raw img/s by wall time,
and raw CPU per image over bulk CPU per image (the figure a shared machine's load moves
least). `--code` runs the same from other source trees (e.g. `git archive` of an older
commit), interleaved, and checks every tree wrote the same bytes. `--stages` adds the
in-process split of one bulk run's CPU (benchmarks/bulk_stages.py). `--dir` is where the files
go (default: a temporary folder; /dev/shm takes the disk out of the figures).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_serve.runtime import configure_threads  # noqa: E402  (torch-free)

configure_threads()  # before torch loads here (the random-init netG, --stages), as the CLI does

from benchmarks.common import Row, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RAW_N = 2048  # images the raw process times (its rate is steady; 20,000 would double the run)

RAW = """
import json, sys, time
from gan_serve.runtime import configure_threads
configure_threads()  # as the console scripts do, before torch loads
import gan_serve
G = gan_serve.load({model!r})
G.generate(range(256))  # warm-up
c, t = time.process_time(), time.perf_counter()
G.generate(range({n}))
print(json.dumps({{"wall": time.perf_counter() - t, "cpu": time.process_time() - c}}))
"""


def _model(name: str | None) -> str | None:
    """The checkpoint to use: the examples netG (random init, benchmarks/targets.py), the
    bundled model (None), or a path."""
    if name in (None, "netG"):
        from benchmarks.targets import checkpoints

        return str(checkpoints()["netG"])
    return None if name == "bundled" else name


def _run(cmd: list[str], code: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + sys) of a fresh process run from source tree `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):  # each process chooses, as a user's would
        env.pop(var, None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, done.stdout


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode() + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def measure(n: int, repeats: int, model: str | None, codes: list[Path], where: Path) -> dict:
    """{code: {"raw": [(wall, cpu)], "bulk": [...], "start": [...]}} and each tree's digest."""
    cli = [sys.executable, "-m", "gan_serve", "generate", *(["--model", model] if model else []),
           "--seed", "0"]
    raw = [sys.executable, "-c", RAW.format(model=model, n=RAW_N)]
    got = {str(c): {"raw": [], "bulk": [], "start": [], "digest": None} for c in codes}
    for r in range(repeats):
        for code in codes:
            g = got[str(code)]
            out = json.loads(_run(raw, code)[2].strip().splitlines()[-1])
            g["raw"].append((out["wall"], out["cpu"]))
            folder = where / f"out-{r}-{codes.index(code)}"
            g["bulk"].append(_run([*cli, "--n", str(n), "--individual", str(folder)], code)[:2])
            if g["digest"] is None:
                g["digest"] = _digest(folder)
            shutil.rmtree(folder)
            g["start"].append(_run([*cli, "--n", "1", "--individual", str(folder)], code)[:2])
            shutil.rmtree(folder)
            print(f"  round {r + 1} {code}: raw {RAW_N / g['raw'][-1][0]:.0f} img/s, bulk "
                  f"{n / g['bulk'][-1][0]:.0f} img/s ({g['bulk'][-1][1]:.1f} s CPU), start "
                  f"{g['start'][-1][0]:.2f} s", file=sys.stderr, flush=True)
    return got


def summary(n: int, runs: dict) -> dict[str, float]:
    """Medians: img/s and CPU ms per image of raw and bulk, the start-up, and the shares."""
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in runs.items() if k != "digest"}
    raw_rate, bulk_rate = RAW_N / med["raw"][0], n / med["bulk"][0]
    raw_ms, bulk_ms = med["raw"][1] / RAW_N * 1e3, med["bulk"][1] / n * 1e3
    return {"raw img/s": raw_rate, "bulk img/s": bulk_rate, "share (wall)": bulk_rate / raw_rate,
            "raw CPU ms/img": raw_ms, "bulk CPU ms/img": bulk_ms, "share (CPU)": raw_ms / bulk_ms,
            "start s": med["start"][0], "start CPU s": med["start"][1]}


def bench(quick: bool = False) -> list[Row]:
    """Target `bulk20k` of `python -m benchmarks`: 20,000 files (2,048 with --quick)."""
    n, repeats = (2048, 3) if quick else (20000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        s = summary(n, measure(n, repeats, _model("netG"), [ROOT], Path(tmp))[str(ROOT)])
    return [Row(f"2 bulk share of raw at {n:,} files, examples netG", f"{s['bulk img/s']:.0f} img/s",
                f"{s['raw img/s']:.0f} img/s raw", f"{s['share (wall)']:.0%}", ">= 70%",
                f"fresh processes, median of {repeats}; by CPU {s['share (CPU)']:.0%} ("
                f"{s['bulk CPU ms/img']:.2f} vs {s['raw CPU ms/img']:.2f} ms per image); start-up "
                f"{s['start s']:.2f} s, {s['start CPU s']:.2f} s CPU")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-m", "--model", default="netG", help="netG (default), bundled, or a path")
    ap.add_argument("--dir", type=Path, default=None, help="where the files go")
    ap.add_argument("--code", type=Path, action="append", default=[],
                    help="another source tree to run, interleaved (repeatable)")
    ap.add_argument("--stages", action="store_true", help="also the in-process split of the CPU")
    a = ap.parse_args()
    codes = [ROOT, *[c.resolve() for c in a.code]]
    model = _model(a.model)
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        runs = measure(a.n, a.repeats, model, codes, Path(tmp))
        for code in codes:
            print(f"{code}: " + ", ".join(f"{k} {v:.3g}" for k, v in summary(a.n, runs[str(code)]).items()))
        print(f"same bytes in every tree: {len({r['digest'] for r in runs.values()}) == 1}")
        if a.stages:
            from benchmarks.bulk_stages import profile

            print(profile(model, a.n, Path(tmp) / "stages"))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
