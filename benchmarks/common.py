"""Shared pieces of the benchmark targets: the result row, the machine, interleaved timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    target: str  # e.g. "1 raw, examples netG"
    figure: str  # the default path's figure, with its unit
    baseline: str  # the naive baseline measured in the same run
    ratio: str  # figure / baseline (or baseline / figure for times), e.g. "3.1x"
    goal: str  # the target, e.g. ">= 4x"
    note: str = ""
    limit: str = ""  # the figure as a fraction of the same run's GEMM rate (benchmarks/limits.py)


def machine() -> str:
    """`AMD EPYC, 2 vCPUs, AVX512 (bf16: AVX512-BF16)`: what the figures depend on."""
    name, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and name in ("", "x86_64"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    bf16 = [label for flag, label in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    isa = "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "baseline ISA"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {cpus} vCPUs, {isa} (bf16 hardware: {', '.join(bf16) or 'none'})"


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: bool = True,
                cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Median seconds of each fn, run in turn `repeats` times (a shared machine's load hits all).
    With `cpu`, also the median CPU-seconds of this process (all its threads) per call: on a
    busy machine the CPU a call used moves less than its wall time (idle threads sleep)."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
            cpus[k].append(time.process_time() - c0)
    if cpu is not None:
        cpu.update({k: statistics.median(v) for k, v in cpus.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"
