"""Training throughput: gan-train's loop against a pytorch/examples dcgan/main.py-style loop.

    python benchmarks/train_throughput.py [--steps 8] [--repeats 3] [--width 64] [--precision fp32]
    python benchmarks/train_throughput.py --precision fp32,bf16   # both, side by side
    python benchmarks/train_throughput.py --precision default     # gan-train's defaults vs the fp32 reference

Same configuration for both: builtin:avatars at 64x64, ngf = ndf = --width, batch 64, Adam 2e-4
(0.5, 0.999), BCE, 1:1 D:G steps, torch's default threads. Measured side by side in one run:
each round times one window of --steps steps of each loop (after 2 untimed warm-up steps);
images/s = steps * batch / seconds, the median over --repeats rounds. gan-train's window
includes everything it does per step (EMA, health checks, history); checkpoints and sample
grids fall outside it. `--precision bf16` runs both loops under CPU autocast with
channels_last (gan-train: --precision bf16 --channels-last). `--precision default` runs gan-train
with its default --precision auto (what it chose is printed) against the reference in fp32, the
example as written.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_recipes import reference_nets  # noqa: E402  (the example's nets and init)
from training import TrainConfig, Trainer  # noqa: E402
from training.avatars import AvatarsDataset  # noqa: E402

WARMUP = 2
CHOSEN: set[str] = set()  # what --precision auto chose (--precision default)


# -- the reference: pytorch/examples dcgan/main.py, trimmed to its training loop ----------------
def reference_window(width: int, steps: int, batch: int, bf16: bool) -> float:
    """images/s of `steps` timed iterations of the pytorch/examples loop."""
    nz, fmt = 100, torch.channels_last if bf16 else torch.contiguous_format
    netG, netD = (net.to(memory_format=fmt) for net in reference_nets(nz, width, width, 3, 64))
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    loader = torch.utils.data.DataLoader(AvatarsDataset(10_000), batch_size=batch, shuffle=True)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = iter(loader)
    for i in range(WARMUP + steps):
        if i == WARMUP:
            t0 = time.perf_counter()
        real = next(data).contiguous(memory_format=fmt)
        netD.zero_grad()
        label = torch.full((batch,), 1.0)
        with cast():
            errD_real = criterion(netD(real).float(), label)
        errD_real.backward()
        noise = torch.randn(batch, nz, 1, 1)
        with cast():
            fake = netG(noise)
            errD_fake = criterion(netD(fake.detach()).float(), label.fill_(0.0))
        errD_fake.backward()
        optimizerD.step()
        netG.zero_grad()
        with cast():
            errG = criterion(netD(fake).float(), label.fill_(1.0))
        errG.backward()
        optimizerG.step()
        _ = (errD_real + errD_fake).item(), errG.item()  # the example prints these every step
    return steps * batch / (time.perf_counter() - t0)


def gan_train_window(width: int, steps: int, batch: int, precision: str, out: Path) -> float:
    """images/s of `steps` timed steps of Trainer.train(), timed between step hooks."""
    bf16 = precision == "bf16"
    cfg = TrainConfig(out=str(out), g_width=width, d_width=width, batch_size=batch, steps=WARMUP + steps,
                      dataset_size=10_000, precision="auto" if precision == "default" else precision,
                      channels_last=bf16, ckpt_every=10**9, sample_every=10**9, log_every=10, eval_samples=0,
                      loss="ns", d_batch_norm=True, spectral_norm=False, pack=1)  # the reference's maths
    stamps: list[float] = []
    t = Trainer(cfg, echo=lambda m: None, hooks=(lambda t, step: stamps.append(time.perf_counter()),))
    if precision == "default":
        CHOSEN.add(t.precision_why)
    t.train()
    # stamps[k] is taken after step k's updates: WARMUP..end spans `steps` full steps
    return steps * batch / (stamps[-1] - stamps[WARMUP - 1])


def bench(quick: bool = False) -> list:
    """Target 5 of `python -m benchmarks`: gan-train against the fp32 reference loop, side by side.

    Two rows: gan-train with the reference's maths (BCE, BatchNorm D, no packing) and its default
    --precision auto, which isolates the speed of the loop; and gan-train with every default (the
    recipe TRAINING.md chose: hinge, spectral-norm D, pack 2, EMA), which is what a user runs."""
    from benchmarks.common import Row

    steps, repeats, width = (4, 2, 64) if quick else (8, 3, 64)
    ref: list[float] = []
    same_maths: list[float] = []
    defaults: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            ref.append(reference_window(width, steps, 64, bf16=False))
            same_maths.append(gan_train_window(width, steps, 64, "default", Path(tmp) / f"m{r}"))
            defaults.append(default_window(width, steps, 64, Path(tmp) / f"d{r}"))
    base = statistics.median(ref)
    chose = "; ".join(sorted(CHOSEN)) or "?"
    rows = []
    for label, vals in (("reference maths", same_maths), ("all defaults", defaults)):
        fig = statistics.median(vals)
        rows.append(Row(f"5 train, gan-train {label}", f"{fig:.0f} img/s", f"{base:.0f} img/s",
                        f"{fig / base:.2f}x", ">= 2x",
                        f"64x64 avatars, ngf=ndf={width}, batch 64, {steps} steps, median of {repeats}; "
                        f"{chose}"))
    return rows


def default_window(width: int, steps: int, batch: int, out: Path) -> float:
    """images/s of gan-train with every default of TrainConfig (only sizes and I/O pinned)."""
    cfg = TrainConfig(out=str(out), g_width=width, d_width=width, batch_size=batch, steps=WARMUP + steps,
                      dataset_size=10_000, ckpt_every=10**9, sample_every=10**9, log_every=10,
                      eval_samples=0)
    stamps: list[float] = []
    Trainer(cfg, echo=lambda m: None, hooks=(lambda t, step: stamps.append(time.perf_counter()),)).train()
    return steps * batch / (stamps[-1] - stamps[WARMUP - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--precision", default="fp32",
                    help="fp32, bf16, default (gan-train's defaults against the fp32 reference), or a "
                    "comma-separated list of them, timed side by side in every round")
    args = ap.parse_args()
    precisions = args.precision.split(",")
    if not precisions or any(p not in ("fp32", "bf16", "default") for p in precisions):
        ap.error(f"--precision takes fp32, bf16 and default, comma-separated, not {args.precision!r}")
    loops = ("pytorch/examples dcgan loop", "gan-train loop")
    results: dict[tuple[str, str], list[float]] = {(loop, p): [] for p in precisions for loop in loops}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for p in precisions:
                results[loops[0], p].append(reference_window(args.width, args.steps, 64, p == "bf16"))
                results[loops[1], p].append(gan_train_window(args.width, args.steps, 64, p,
                                                             Path(tmp) / f"r{r}-{p}"))
    cpu = platform.processor() or platform.machine()
    print(f"`python benchmarks/train_throughput.py --steps {args.steps} --repeats {args.repeats} --width "
          f"{args.width} --precision {args.precision}`, {datetime.date.today()}, {cpu}, "
          f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}\n")
    print(f"| loop (64x64, ngf=ndf={args.width}, batch 64) | precision | images/s (median) | windows |")
    print("|---|---|---:|---|")
    median = {key: statistics.median(vals) for key, vals in results.items()}
    for (loop, p), vals in results.items():
        print(f"| {loop} | {p} | {median[loop, p]:.1f} | {', '.join(f'{v:.1f}' for v in vals)} |")
    print()
    for why in sorted(CHOSEN):
        print(f"gan-train default: {why}")
    for p in precisions:
        print(f"gan-train / reference, {p}: {median[loops[1], p] / median[loops[0], p]:.2f}")
    if {"fp32", "bf16"} <= set(precisions):
        for loop in loops:
            print(f"{loop}, bf16 / fp32: {median[loop, 'bf16'] / median[loop, 'fp32']:.2f}")


if __name__ == "__main__":
    main()
