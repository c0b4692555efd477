"""Target 1 on a busy machine: the default path against the naive loop with one competing
CPU-bound process running, each in a fresh process configured as its user would have it.

The default path runs as the console scripts run it (`configure_threads()` before torch loads:
`OMP_WAIT_POLICY=PASSIVE` and a thread count, unless the user set them); the naive loop runs
under the user's own environment (torch's defaults: as many threads as cores, OpenMP's default
wait policy). Both are timed inside their process (model loaded, one warm-up pass), first on
the quiet machine and then beside `python -c "while True: pass"`, interleaved. The goal: under
load the default path keeps at least its quiet-machine ratio to the naive loop.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from benchmarks import limits
from benchmarks.common import Row, interleaved
from benchmarks.targets import ROOT, _user_env, checkpoints

CHILD = """
import statistics, sys, time
sys.path.insert(0, {root!r})
if {ours}:
    from gan_serve.runtime import configure_threads
    configure_threads()  # what gan-serve's entry points do before torch loads
import numpy as np
import torch
import gan_serve
from benchmarks.targets import naive_eager
from benchmarks.reference_nets import ExamplesNetG
n = {n}
if {ours}:
    G = gan_serve.load({ckpt!r})
    run = lambda: G.generate(range(n))
else:
    module = ExamplesNetG(ngf=64)
    module.load_state_dict(torch.load({ckpt!r}, weights_only=True))
    module.eval()
    z = np.random.default_rng(0).standard_normal((n, 100)).astype(np.float32)
    run = lambda: naive_eager(module, z)
run()
times = []
for _ in range({repeats}):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
print(n / statistics.median(times))
"""


def _rate(ours: bool, n: int, repeats: int) -> float:
    """Images/s of one fresh process (its own median of `repeats` passes over n images)."""
    code = CHILD.format(root=str(ROOT), ours=ours, n=n, repeats=repeats, ckpt=str(checkpoints()["netG"]))
    out = subprocess.run([sys.executable, "-c", code], env=_user_env(), check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def _pair(n: int, repeats: int, rounds: int) -> dict[str, float]:
    """Median images/s of each path, and (keys "bf16", "fp32") GFLOP/s of the GEMMs timed in
    this process between the rounds: the limit under the same load."""
    rates: dict[str, list[float]] = {"ours": [], "naive": [], "bf16": [], "fp32": []}
    gemms = limits.reference_gemms()
    for _ in range(rounds):
        for key in ("ours", "naive"):
            rates[key].append(_rate(key == "ours", n, repeats))
        for key, rate in limits.record(interleaved(gemms, 1)).items():
            rates[key].append(rate)
    return {k: statistics.median(v) for k, v in rates.items()}


def _share(pair: dict[str, float]) -> str:
    import gan_serve
    from gan_serve.backends.torch_backend import auto_precision

    flops = limits.flops_per_image(gan_serve.load(checkpoints()["netG"], backend="torch").module, 100)
    gemm = {p: pair[p] for p in ("bf16", "fp32")}
    return (f"default {limits.fraction(pair['ours'], flops, auto_precision('cpu')[0], gemm)}; "
            f"naive {limits.fraction(pair['naive'], flops, 'fp32', gemm)}")


def bench(quick: bool = False) -> list[Row]:
    n, repeats, rounds = (128, 3, 2) if quick else (256, 5, 3)
    quiet = _pair(n, repeats, rounds)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = _pair(n, repeats, rounds)
    finally:
        hog.kill()
        hog.wait()
    q, b = quiet["ours"] / quiet["naive"], busy["ours"] / busy["naive"]
    note = (f"examples netG, N={n}, fresh processes, median of {rounds} x {repeats}; naive under the "
            "user's environment, default as the entry points configure it")
    return [Row("1 raw, quiet machine (fresh processes)", f"{quiet['ours']:.0f} img/s",
                f"{quiet['naive']:.0f} img/s", f"{q:.2f}x", "(reference for the next row)", note,
                _share(quiet)),
            Row("1 raw, one competing CPU-bound process", f"{busy['ours']:.0f} img/s",
                f"{busy['naive']:.0f} img/s", f"{b:.2f}x", f">= the quiet ratio ({q:.2f}x)", note,
                _share(busy))]
