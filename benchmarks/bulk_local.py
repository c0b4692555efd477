"""`gan-serve bulk` on one machine against `generate --individual` (issue 26, item 3).

    python -m benchmarks.bulk_local [--n 2000] [--repeats 3] [-m MODEL]

Fresh CLI processes, in turn (a shared machine's load hits all three alike), into a new folder
each time: `generate --individual`, `bulk` with no cluster to join (it writes here), and `bulk
--address local` (what `bulk` did before on one machine: a local Ray instance). Then `bulk`
again over a complete folder. Prints the medians, and checks the three wrote the same bytes.
"""

from __future__ import annotations

import argparse
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

from benchmarks.common import machine  # noqa: E402

VARIANTS = {
    "generate --individual": ["generate"],
    "bulk (no cluster: writes here)": ["bulk"],
    "bulk --address local (a local Ray)": ["bulk", "--address", "local"],
}


def _run(args: list[str], cpu: list[float] | None = None) -> float:
    """Wall seconds of one CLI run; its CPU seconds (user + sys of the process and everything it
    waited for: a local Ray's processes are reaped by its supervisor) appended to `cpu`."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gan_serve", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-m", "--model", default=None, help="default: the bundled generator")
    a = ap.parse_args()
    model = ["-m", a.model] if a.model else []
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    cpu: dict[str, list[float]] = {k: [] for k in VARIANTS}
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for name, cmd in VARIANTS.items():
                out = Path(tmp, f"{cmd[-1]}-{r}")
                times[name].append(_run([*cmd, *model, "--seed", "0", "--n", str(a.n),
                                         "--individual", str(out)], cpu[name]))
                print(f"  {name}: {times[name][-1]:.1f} s, CPU {cpu[name][-1]:.1f} s", flush=True)
                if r:  # keep one folder of each for the bytes check
                    shutil.rmtree(out)
        folders = [Path(tmp, f"{cmd[-1]}-0") for cmd in VARIANTS.values()]
        first = _bytes(folders[0])
        same = len(first) == a.n and all(_bytes(f) == first for f in folders[1:])
        rerun = [_run(["bulk", *model, "--seed", "0", "--n", str(a.n), "--individual", str(folders[1])])
                 for _ in range(a.repeats)]
    base = statistics.median(times["generate --individual"])
    for name, t in times.items():
        m = statistics.median(t)
        print(f"{name}: median {m:.1f} s ({a.n / m:.0f} files/s, {m / base:.2f}x generate's time), "
              f"CPU median {statistics.median(cpu[name]):.1f} s; runs {', '.join(f'{x:.1f}' for x in t)}")
    print(f"bulk over the complete folder: median {statistics.median(rerun):.2f} s; "
          f"runs {', '.join(f'{x:.2f}' for x in rerun)}")
    print(f"same bytes in all three folders: {same}; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
