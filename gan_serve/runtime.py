"""Thread settings the console scripts choose before torch or ONNX Runtime load.

OpenMP reads its environment once, when the library loads, so this must run before the
first `import torch`: the entry points (`gan-serve`, `gan-export`, `gan-train`) call
`configure_threads()` first thing and import everything heavy later. Settings the user
made win; we only fill in what is unset.

- OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning. On a shared
  machine spinning threads steal the cores the busy ones need (BENCHMARKS.md: the served
  path fell from 331 to 34 images/s with one competing process when threads spun).
- OMP_NUM_THREADS: the CPUs this process may really use (affinity mask and cgroup quota),
  not the host's core count, so a container limited to 2 CPUs does not run 64 threads.

And one the server sets per thread: its model and encoder threads run at a lower priority than
the event loop (`yield_to_the_event_loop`), so requests are read, refused and answered without
waiting behind a forward pass for a core (BENCHMARKS.md: n=1 at concurrency 32, +10-20% requests/s
and p99 under 100 ms on 2 vCPUs).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpu_budget(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 quota if any."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def configure_threads(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Fill in OMP_WAIT_POLICY and OMP_NUM_THREADS where the user set neither; return them."""
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_NUM_THREADS", str(cpu_budget()))
    return {k: env[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}


def passive_wait() -> bool:
    """Whether idle threads should sleep (ONNX Runtime reads this for its own thread pool)."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


@contextlib.contextmanager
def environ_set(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set inside the block; each variable is back as it was after it
    (unset if it was unset), however the block ends."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def thread_count() -> int:
    """The thread count the entry point chose (or the user set), else the CPU budget."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return cpu_budget()


BACKGROUND_NICE = 5  # CFS weight 335 against the event loop's 1024: ~3/4 of a contended core to the loop


def yield_to_the_event_loop(nice: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority by `nice` (Linux, where priority is per thread;
    elsewhere nothing): the server's model and encoder threads call this first, so the threads
    they start (OpenMP's workers) inherit it and a burst of requests never waits behind them for
    a core. Costs no throughput: the loop needs little CPU, and what it leaves goes to them."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):  # a sandbox that forbids it: run at the usual priority
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
