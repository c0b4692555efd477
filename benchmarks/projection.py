"""Projection (issue 27 item 1): how close `gan-serve project` gets with its defaults, and how long.

    python -m benchmarks.projection [--quick] [--sheet docs/projection-sheet.png]

On the bundled model (torch, fp32, as `project` runs it):
- images it made itself from seeds 1,000,000.. (the defaults were tuned on seeds 100,000..100,007);
- new builtin:avatars draws, indices 10,000,000.. (gan-train trained it on indices 0..49,999);
- scikit-learn's sample photo china.jpg (out of distribution).
Per set: median PSNR and SSIM of the reconstruction against the target (both uint8), the spread,
and the screen alone (steps=0) beside it, which says how much of the result the optimisation
made. Time: wall and CPU seconds per image in batches of 16, and one image alone against 16 at
once, side by side. `--quick`: 8 images per set instead of 100.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_serve.runtime import configure_threads  # noqa: E402  (torch-free)

configure_threads()  # as the console scripts do, before torch is imported

from benchmarks.common import machine  # noqa: E402
from gan_serve import Generator  # noqa: E402
from gan_serve import images as img  # noqa: E402
from gan_serve.fsutil import write_bytes_atomic  # noqa: E402
from gan_serve.projection import Projection, ProjectOptions, project  # noqa: E402

BATCH = 16
SELF_SEEDS = 1_000_000
NEW_AVATARS = 10_000_000


def timed(G: Generator, images: list, options: ProjectOptions) -> tuple[Projection, float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    result = project(G, images, options)
    return result, time.perf_counter() - t0, time.process_time() - c0


def run_set(G: Generator, name: str, images: list, options: ProjectOptions) -> dict:
    """Project `images` in batches of BATCH; the figures and the results."""
    results, wall, cpu = [], 0.0, 0.0
    for start in range(0, len(images), BATCH):
        r, w, c = timed(G, images[start : start + BATCH], options)
        results.append(r)
        wall, cpu = wall + w, cpu + c
        print(f"  {name}: {start + len(r.targets)}/{len(images)} ({w:.0f} s)", file=sys.stderr, flush=True)
    screen = [project(G, images[s : s + BATCH], ProjectOptions(steps=0, starts=1, screen=options.screen,
                                                               seed=options.seed))
              for s in range(0, len(images), BATCH)]
    psnr = np.concatenate([r.psnr for r in results])
    ssim = np.concatenate([r.ssim for r in results])
    return {"name": name, "n": len(images), "psnr": psnr, "ssim": ssim,
            "screen_psnr": np.concatenate([r.psnr for r in screen]),
            "wall_per_image": wall / len(images), "cpu_per_image": cpu / len(images), "results": results}


def report(s: dict) -> str:
    q = np.percentile(s["psnr"], [10, 25, 50, 75, 90])
    return (f"| {s['name']} | {s['n']} | {np.median(s['psnr']):.2f} dB | {np.median(s['ssim']):.4f} | "
            f"{' / '.join(f'{v:.1f}' for v in q)} | {np.mean(s['psnr'] >= 35):.0%} | "
            f"{np.median(s['screen_psnr']):.2f} dB | {s['wall_per_image']:.1f} s "
            f"({s['cpu_per_image']:.1f} s CPU) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 images per set instead of 100")
    parser.add_argument("--n", type=int, help="images per set (default 100, 8 with --quick)")
    parser.add_argument("--steps", type=int, help="steps instead of the default (a smoke run)")
    parser.add_argument("--sheet", type=Path, help="write a projection sheet (README picture) here")
    args = parser.parse_args()
    n = args.n or (8 if args.quick else 100)
    from sklearn.datasets import load_sample_image

    from training.avatars.renderer import render

    G = Generator.load("default", backend="torch", precision="fp32")
    options = ProjectOptions() if args.steps is None else ProjectOptions(steps=args.steps)
    flags = " ".join(a for a in sys.argv[1:] if not a.endswith(".png") and a != "--sheet")
    print(f"`python -m benchmarks.projection {flags}`, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
          f"load average {os.getloadavg()[0]:.1f} at the start; defaults: "
          f"{options.steps} steps x {options.starts} starts, screen {options.screen}\n", flush=True)
    started = time.perf_counter()
    sixteen_in = list(G.generate(range(SELF_SEEDS + 1000, SELF_SEEDS + 1016)))
    _, alone_wall, alone_cpu = timed(G, sixteen_in[:1], options)
    _, batch_wall, batch_cpu = timed(G, sixteen_in, options)
    print(f"one image alone: {alone_wall:.1f} s ({alone_cpu:.1f} s CPU); 16 at once: {batch_wall:.1f} s "
          f"({batch_cpu:.1f} s CPU) = {batch_wall / alone_wall:.2f}x the wall time of one "
          f"({batch_cpu / alone_cpu:.2f}x its CPU)\n", flush=True)
    print("| images | n | median PSNR | median SSIM | PSNR 10/25/50/75/90th pct | >= 35 dB | "
          "screen alone (steps=0), median PSNR | time per image (batches of 16) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|", flush=True)
    sets = [("made by the model (seeds 1,000,000..)",
             lambda: list(G.generate(range(SELF_SEEDS, SELF_SEEDS + n)))),
            ("new builtin:avatars draws (10,000,000..)",
             lambda: [render(i, 64) for i in range(NEW_AVATARS, NEW_AVATARS + n)]),
            ("china.jpg (scikit-learn)", lambda: [load_sample_image("china.jpg")])]
    done = []
    for name, images in sets:
        done.append(run_set(G, name, images(), options))
        print(report(done[-1]), flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.sheet:
        rows = [done[0]["results"][0].sheet(i) for i in range(min(2, n))]
        rows += [done[1]["results"][0].sheet(i) for i in range(min(2, n))] + [done[2]["results"][0].sheet(0)]
        write_bytes_atomic(args.sheet, img.encode_image(np.concatenate(rows), "png"))
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
