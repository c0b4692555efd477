"""Training throughput: gan-train's loop against a pytorch/examples-style DCGAN loop.

    python benchmarks/train_throughput.py [--steps 30] [--repeats 3] [--width 64]

Same configuration for both (64x64 builtin:avatars, ngf = ndf = --width, batch 64, Adam
2e-4 (0.5, 0.999), non-saturating BCE, fp32, 2 threads), measured side by side in one run:
images/s = steps * batch / seconds, median of --repeats windows after one warm-up window.
gan-train's figure includes everything it does per step (EMA, health checks, logging);
checkpoints and sample grids are pushed outside the window.
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

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import TrainConfig, Trainer  # noqa: E402
from training.avatars import AvatarsDataset  # noqa: E402
from training.models import build  # noqa: E402


def reference_loop(width: int, steps: int, batch: int) -> float:
    """The pytorch/examples dcgan/main.py inner loop (BCELoss on sigmoid outputs)."""
    cfg = TrainConfig(g_width=width, d_width=width)
    netG, core_d = build(cfg)
    netD = nn.Sequential(core_d, nn.Sigmoid())
    loader = torch.utils.data.DataLoader(AvatarsDataset(10_000), batch_size=batch, shuffle=True)
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    it = iter(loader)
    t0 = time.perf_counter()
    for _ in range(steps):
        real = next(it)
        netD.zero_grad()
        err_real = criterion(netD(real), torch.ones(batch))
        err_real.backward()
        fake = netG(torch.randn(batch, 100, 1, 1))
        err_fake = criterion(netD(fake.detach()), torch.zeros(batch))
        err_fake.backward()
        opt_d.step()
        netG.zero_grad()
        err_g = criterion(netD(fake), torch.ones(batch))
        err_g.backward()
        opt_g.step()
    return steps * batch / (time.perf_counter() - t0)


def gan_train_loop(width: int, steps: int, batch: int, out: Path) -> float:
    cfg = TrainConfig(out=str(out), g_width=width, d_width=width, batch_size=batch,
                      steps=steps, ckpt_every=10**9, sample_every=10**9, log_every=10,
                      dataset_size=10_000, warmup=10**9)
    trainer = Trainer(cfg, echo=lambda m: None)
    trainer.checkpoint = lambda: None  # type: ignore[method-assign]  # outside the window
    trainer._report = lambda: None  # type: ignore[method-assign]
    t0 = time.perf_counter()
    trainer.train()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(2)
    results: dict[str, list[float]] = {"pytorch/examples loop": [], "gan-train loop": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats + 1):  # round 0 warms both up and is dropped
            ref = reference_loop(args.width, args.steps, 64)
            ours = gan_train_loop(args.width, args.steps, 64, Path(tmp) / f"r{r}")
            if r:
                results["pytorch/examples loop"].append(ref)
                results["gan-train loop"].append(ours)
    print(f"`python benchmarks/train_throughput.py --steps {args.steps} --repeats {args.repeats} "
          f"--width {args.width}`, {datetime.date.today()}, {platform.machine()}, torch {torch.__version__}, "
          "2 threads\n")
    print("| loop | images/s (median) | runs |")
    print("|---|---:|---|")
    for name, vals in results.items():
        print(f"| {name} | {statistics.median(vals):.1f} | {', '.join(f'{v:.1f}' for v in vals)} |")


if __name__ == "__main__":
    main()
