"""`--precision int8` against bf16 and fp32: speed side by side, and the error against fp32.

    python benchmarks/int8.py [--repeats 5] [--seeds 1000]
    python -m benchmarks --only int8

Two models: the pytorch/examples netG (ngf=64, random init with its output spread, as in
benchmarks/backends.py) and the bundled model. Each is loaded three times on torch (fp32, bf16
and int8) and `Generator.generate(range(256))` is timed for each, interleaved with the 2048^3
GEMMs of benchmarks/limits.py, median of `--repeats`; CPU-seconds per image beside img/s, since
the machine may be shared. The error: the uint8 images of `--seeds` seeds from 10,000 on (held
out from the calibration's seeds 0-255), PSNR and max abs difference against fp32.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_serve.runtime import configure_threads  # noqa: E402  (torch-free)

configure_threads()  # before torch loads, like the console scripts

from benchmarks.common import Row, interleaved, machine  # noqa: E402
from benchmarks.limits import REFERENCE, gemm, int8_runs, rate  # noqa: E402

PRECISIONS = ("int8", "bf16", "fp32")
N_IMAGES = 256  # per timed call, in micro-batches of 16
FIRST_SEED = 10_000  # the error's seeds: none of them calibrated the int8 path


def models(d: Path) -> dict[str, str]:
    """label -> what `gan_serve.load` takes."""
    import torch

    from benchmarks.reference_nets import ExamplesNetG, randomize, spread_output

    path = d / "netG.pth"
    torch.save(spread_output(randomize(ExamplesNetG(ngf=64), 2), 100).state_dict(), path)
    return {"examples netG (ngf=64)": str(path), "bundled model (default)": "default"}


def psnr(got: np.ndarray, want: np.ndarray) -> tuple[float, int]:
    """(PSNR in dB, max abs difference) of uint8 images against the reference."""
    diff = got.astype(np.float64) - want.astype(np.float64)
    mse = float(np.mean(diff**2))
    return (10 * np.log10(255**2 / mse) if mse else float("inf")), int(np.abs(diff).max())


def measure(model: str, repeats: int, n_seeds: int) -> dict[str, dict[str, float]]:
    """precision -> {img_s, cpu_ms, psnr, max, gemm} for one model, timed interleaved."""
    import gan_serve

    gens = {p: gan_serve.load(model, backend="torch", precision=p) for p in PRECISIONS}
    fns: dict[str, object] = {p: (lambda G=G: G.generate(range(N_IMAGES))) for p, G in gens.items()}
    gemms = [p for p in ("int8", "bf16", "fp32") if p != "int8" or int8_runs() is None]
    fns.update({f"gemm {p}": gemm(p, REFERENCE) for p in gemms})
    cpu: dict[str, float] = {}
    t = interleaved(fns, repeats, cpu=cpu)
    seeds = range(FIRST_SEED, FIRST_SEED + n_seeds)
    want = gens["fp32"].generate(seeds)
    out = {}
    for p, G in gens.items():
        db, worst = psnr(G.generate(seeds), want)
        out[p] = {"img_s": N_IMAGES / t[p], "cpu_ms": 1000 * cpu[p] / N_IMAGES, "psnr": db, "max": worst,
                  "gemm": rate(cpu[f"gemm {p}"], REFERENCE) if f"gemm {p}" in cpu else float("nan")}
    return out


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| model | precision | img/s | CPU ms per image | vs bf16 (CPU) | PSNR vs fp32 | max diff | "
             "GEMM rate by CPU-s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, res in results.items():
        for p, r in res.items():
            unit = "GOP/s" if p == "int8" else "GFLOP/s"
            lines.append(f"| {label} | {p} | {r['img_s']:.0f} | {r['cpu_ms']:.2f} | "
                         f"{res['bf16']['cpu_ms'] / r['cpu_ms']:.2f}x | {r['psnr']:.1f} dB | "
                         f"{r['max']}/255 | {r['gemm']:.0f} {unit} |")
    return "\n".join(lines)


def bench(quick: bool = False) -> list[Row]:
    """The int8 rows of `python -m benchmarks`: int8 against bf16 per model."""
    if (why := int8_runs()) is not None:
        return [Row("int8, opt-in", "not measured", "", "", "", why)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models(Path(tmp)).items():
            r = measure(model, 3 if quick else 5, 200 if quick else 1000)
            i8, bf = r["int8"], r["bf16"]
            rows.append(Row(f"int8, {label}", f"{i8['img_s']:.0f} img/s ({i8['cpu_ms']:.2f} CPU ms/img)",
                            f"bf16 {bf['img_s']:.0f} img/s ({bf['cpu_ms']:.2f})",
                            f"{bf['cpu_ms'] / i8['cpu_ms']:.2f}x by CPU", "opt-in, measured",
                            f"PSNR {i8['psnr']:.1f} dB, max {i8['max']}/255 against fp32 "
                            f"(bf16: {bf['psnr']:.1f} dB, {bf['max']}/255)"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1000, help="images of the error measurement")
    args = ap.parse_args()
    if (why := int8_runs()) is not None:
        sys.exit(f"int8 not measured: {why}")
    import torch

    start = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as tmp:
        results = {label: measure(model, args.repeats, args.seeds)
                   for label, model in models(Path(tmp)).items()}
    print(f"{machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"started {start}; load average at the end {os.getloadavg()[0]:.1f}")
    print(f"img/s: Generator.generate(range({N_IMAGES})), median of {args.repeats}, interleaved; "
          f"error: {args.seeds} seeds from {FIRST_SEED}\n")
    print(table(results))


if __name__ == "__main__":
    main()
