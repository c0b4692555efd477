"""CPU throughput per backend and precision for the two generators users have most.

    python benchmarks/backends.py [--repeats 5] [--batches 1,64,256] [--threads 2]

Builds random-init models (nothing downloaded): the seed-000 generator (widths
1024-512-256-128) and the pytorch/examples netG (ngf=64, widths 512-256-128-64), exports
each with gan-export's own code, and times `Backend.run` on one batch of B latents, side by
side in one run. Prints a Markdown table of the median images/s over the repeats, plus the
served path (`Generator.generate`, fixed micro-batches of 8) for n=64.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gan_serve  # noqa: E402
from benchmarks.reference_nets import ExamplesNetG, SeedGenerator, randomize, spread_output  # noqa: E402
from export import export_onnx, export_torchscript, prepare  # noqa: E402

VARIANTS = [  # (label, file key, precision)
    ("torch eager", "pth", "fp32"),
    ("torch eager (autocast)", "pth", "bf16"),
    ("TorchScript", "pt", None),
    ("ONNX Runtime", "onnx", None),
    ("ONNX Runtime", "onnx16", None),
]


def build(d: Path) -> dict[str, dict[str, Path]]:
    models = {
        "seed-000 G (1024-512-256-128)": spread_output(randomize(SeedGenerator(), 1), 100),
        "examples netG (ngf=64)": spread_output(randomize(ExamplesNetG(ngf=64), 2), 100),
    }
    files = {}
    for i, (label, module) in enumerate(models.items()):
        pth = d / f"m{i}.pth"
        torch.save(module.state_dict(), pth)
        G = gan_serve.load(pth)
        paths = {"pth": pth, "pt": d / f"m{i}.pt", "onnx": d / f"m{i}.onnx",
                 "onnx16": d / f"m{i}.fp16.onnx"}
        export_torchscript(prepare(G), paths["pt"])
        export_onnx(prepare(G), paths["onnx"])
        export_onnx(prepare(G, fp16=True, fold_bn=True), paths["onnx16"])
        files[label] = paths
    return files


def images_per_second(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up: allocations, oneDNN primitive creation, ORT arena
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_images / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, paths in build(Path(tmp)).items():
            for label, key, precision in VARIANTS:
                own_export = {"backend": "torchscript", "trust_code": True} if key == "pt" else {}
                G = gan_serve.load(paths[key], precision=precision, **own_export)
                cells = []
                for b in batches:
                    z = G.latents(range(b))
                    cells.append(images_per_second(lambda z=z, G=G: G.runner.run(z), b, args.repeats))
                served = images_per_second(lambda G=G: G.generate(range(64)), 64, args.repeats)
                rows.append((model, f"{label} {G.backend}", cells, served))
                print(f"done {model} {G.backend}", file=sys.stderr)
    print(f"`python benchmarks/backends.py --repeats {args.repeats} --batches {args.batches} "
          f"--threads {args.threads}`, {datetime.date.today()}, "
          f"{platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, "
          f"{torch.get_num_threads()} threads; images/s, median of {args.repeats}\n")
    head = " | ".join(f"batch {b}" for b in batches)
    print(f"| model | backend | {head} | served n=64 (micro-batch 8) |")
    print("|---|---|" + "---:|" * (len(batches) + 1))
    for model, backend, cells, served in rows:
        print(f"| {model} | {backend} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {served:.1f} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
