"""Training recipes on real data: gan-train flag sets against the pytorch/examples DCGAN loop.

    python benchmarks/train_recipes.py run --set stacked --recipe default --seed 0
    python benchmarks/train_recipes.py run --set stacked --flags "--loss hinge --pack 2" --seed 1
    python benchmarks/train_recipes.py run --set stacked --recipe reference --seed 0
    python benchmarks/train_recipes.py real --set stacked       # the data's own score (ceiling)
    python benchmarks/train_recipes.py run --set avatars --width 32 --steps 4000 --eval-every 500
    python benchmarks/train_recipes.py table                    # markdown from the results file

Data (offline): `digits` (1,797 scikit-learn digits at 32x32, 10 modes) or `stacked` (20,000
RGB images, one digit per channel, 1,000 modes), from benchmarks/digits.py; `avatars` (the
first 20,000 builtin:avatars at 64x64, 240 modes), from benchmarks/avatar_set.py. Every run
trains for --steps steps of batch --batch, then draws --samples images and scores them: digits
(26,000 samples, the PacGAN protocol) with a digit classifier trained on the real digits (modes
covered, KL to uniform, mean confidence), avatars (10,000 samples) with the builtin:avatars
decoder (modes covered, KL, and the share of high-quality samples in the confidence column).
One JSON line per run is appended to --results.

The reference is pytorch/examples' dcgan/main.py loop with its 64x64 nets (at 32x32 one
up/down-sampling layer fewer; the same G and D gan-train builds): Adam 2e-4 (0.5, 0.999),
BCE, batch 64, fp32, sampled as the example samples (train-mode BatchNorm). gan-train runs
go through `Trainer` with the data set in memory and --on-failure warn (the detectors are
reported, never allowed to end a benchmark run), sampled as gan-serve serves the checkpoint
(EMA weights when --ema > 0, BatchNorm re-estimated, eval mode). Wall time counts training
only (gan-train's sample grids, checkpoints and report included; scoring excluded), one
thread per run (--threads).

--width W trains both loops at width W (gan-train's --g-width/--d-width, the example's
ngf/ndf; default 64; the bundled avatars model is 32). --eval-every N also scores the served
generator every N steps on --eval-samples samples (default 1,000: the bundled model's
checkpoint check): the row's "checks" list each such step's figures with the training wall
time so far (the checks' own time left out of every wall time), from which `table` reads the
first step that reaches 10%, 20% and 50% high quality (avatars) or confidence (digits). The
checks draw no random numbers of the run's: a run trains the same with and without them.
A run stopped early (Ctrl-C or `kill PID`) after at least one check still appends its row:
the last check's figures, "stopped_after" that step, and the table marks it "(stopped)".
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import math
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.avatar_set import Avatars, score_avatars  # noqa: E402
from benchmarks.digits import SETS as DIGIT_SETS  # noqa: E402
from benchmarks.digits import Digits, ModeScore, classifier_id, score_images, train_classifier  # noqa: E402
from benchmarks.recipe_checks import REACH, Checks, figures, reached  # noqa: E402
from training import TrainConfig, Trainer  # noqa: E402
from training.config import DCGAN_RECIPE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "train_recipes"  # run folders and the avatars cache (runs/ is git-ignored)
RESULTS = ROOT / "benchmarks" / "results" / "train_recipes.jsonl"
RECORDED = (*DCGAN_RECIPE, "recipe", "precision", "channels_last", "z_dim", "g_width", "d_width",
            "instance_noise_steps", "lr_decay_from", "bn_calibration")  # the maths of a run
SAMPLE_SEED = 123_456  # the latents every scored generator draws
SETS = (*DIGIT_SETS, "avatars")
SAMPLES = {"digits": 26_000, "stacked": 26_000,  # PacGAN's protocol
           "avatars": 10_000}  # as the bundled model is scored
RECIPES = {  # name -> gan-train flags ("reference" is the pytorch/examples loop)
    "reference": None,
    "default": "",
    "dcgan": "--recipe dcgan",
    "hinge-nobn-r1": "--loss hinge --no-d-batch-norm --r1-gamma 1 --precision bf16 --channels-last",
}


# -- the reference: pytorch/examples dcgan/main.py's loop and nets ----------------------------
def reference_nets(nz: int, ngf: int, ndf: int, nc: int, resolution: int = 32) -> tuple[nn.Module, nn.Module]:
    """The example's netG and netD: its 64x64 nets, or one up/down-sampling layer fewer at 32x32."""
    widths = [2**i for i in range(int(math.log2(resolution)) - 2)][::-1]  # 32: [4, 2, 1]; 64: [8, 4, 2, 1]
    g: list[nn.Module] = [nn.ConvTranspose2d(nz, ngf * widths[0], 4, 1, 0, bias=False),
                          nn.BatchNorm2d(ngf * widths[0]), nn.ReLU(True)]
    for wide, narrow in itertools.pairwise(widths):
        g += [nn.ConvTranspose2d(ngf * wide, ngf * narrow, 4, 2, 1, bias=False),
              nn.BatchNorm2d(ngf * narrow), nn.ReLU(True)]
    netG = nn.Sequential(*g, nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    d: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for narrow, wide in itertools.pairwise(widths[::-1]):
        d += [nn.Conv2d(ndf * narrow, ndf * wide, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * wide),
              nn.LeakyReLU(0.2, inplace=True)]
    netD = nn.Sequential(*d, nn.Conv2d(ndf * widths[0], 1, 4, 1, 0, bias=False), nn.Sigmoid(),
                         nn.Flatten(0))

    def weights_init(m: nn.Module) -> None:
        classname = m.__class__.__name__
        if classname.find("Conv") != -1:
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif classname.find("BatchNorm") != -1:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    return netG.apply(weights_init), netD.apply(weights_init)


def run_reference(data: Digits, seed: int, steps: int, batch: int, width: int = 64,
                  checks: Checks | None = None) -> tuple[nn.Module, float]:
    """Train the example's loop for `steps` steps; (netG, wall seconds without the checks')."""
    torch.manual_seed(seed)
    nz = 100
    netG, netD = reference_nets(nz, width, width, data.channels, data.resolution)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    t0, step = time.perf_counter(), 0
    checks = checks or Checks(0, 0, score_images)  # none due
    checks.start(t0)
    while step < steps:
        for real in loader:
            netD.zero_grad()
            label = torch.full((batch,), 1.0)
            errD_real = criterion(netD(real), label)
            errD_real.backward()
            fake = netG(torch.randn(batch, nz, 1, 1))
            errD_fake = criterion(netD(fake.detach()), label.fill_(0.0))
            errD_fake.backward()
            optimizerD.step()
            netG.zero_grad()
            errG = criterion(netD(fake), label.fill_(1.0))
            errG.backward()
            optimizerG.step()
            step += 1
            if checks.due(step, steps):
                checks.record(step, lambda: sample_reference(netG, checks.samples))
            if step == steps:
                break
    return netG, time.perf_counter() - t0 - checks.spent


@torch.no_grad()
def sample_reference(netG: nn.Module, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    z = torch.randn(n, 100, 1, 1, generator=g)
    return torch.cat([netG.train()(chunk) for chunk in z.split(64)])


# -- gan-train --------------------------------------------------------------------------------
def parse_flags(flags: str) -> dict:
    """gan-train flags ("--loss hinge --no-d-batch-norm") as TrainConfig overrides."""
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out, words = {}, shlex.split(flags)
    while words:
        word = words.pop(0).removeprefix("--")
        name = word.replace("-", "_")
        if name.startswith("no_") and types.get(name[3:]) == "bool":
            out[name[3:]] = False
        elif types.get(name) == "bool":
            out[name] = True
        elif name in types:
            out[name] = {"int": int, "float": float, "str": str}[types[name]](words.pop(0))
        else:
            raise SystemExit(f"unknown gan-train flag --{word}")
    return out


def run_gan_train(data: Digits, flags: str, seed: int, steps: int, batch: int, out: Path,
                  checks: Checks | None = None,
                  started: list | None = None) -> tuple[nn.Module, float, Trainer]:
    """Train with gan-train's Trainer, as `gan-train FLAGS` would; (served G, wall seconds without
    the checks', trainer). `started` gets the trainer before it trains (a stopped run's config)."""
    given = parse_flags(flags)
    cfg = dataclasses.replace(TrainConfig(), **given)
    cfg = dataclasses.replace(cfg, data=f"benchmark:{data.name}", out=str(out), resolution=data.resolution,
                              channels=data.channels, steps=steps, batch_size=batch, seed=seed,
                              on_failure="warn", eval_samples=0)
    checks = checks or Checks(0, 0, score_images)  # none due

    def check(trainer: Trainer, step: int) -> None:  # a Trainer hook: after step `step` (0-based)
        if checks.due(step + 1, steps):
            checks.record(step + 1, lambda: sample_served(trainer.served().module, checks.samples))

    t0 = time.perf_counter()
    checks.start(t0)
    trainer = Trainer(cfg, dataset=data, echo=lambda m: None, hooks=(check,), given=given)
    if started is not None:
        started.append(trainer)
    trainer.train()
    wall = time.perf_counter() - t0 - checks.spent
    return trainer.served().module, wall, trainer


@torch.no_grad()
def sample_served(module: nn.Module, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    z = torch.randn(n, module.config.z_dim, generator=g)
    return torch.cat([module.eval()(chunk) for chunk in z.split(500)])


# -- commands ---------------------------------------------------------------------------------
def load_set(name: str) -> tuple[Digits | Avatars, Callable[[torch.Tensor], ModeScore], float | None]:
    """(data set, scorer of (N, C, R, R) samples in [-1, 1], digit classifier accuracy or None)."""
    if name == "avatars":
        data = Avatars(CACHE)
        return data, lambda images: score_avatars(images, data), None
    classifier, accuracy = train_classifier()
    return Digits(name), lambda images: score_images(images, classifier), accuracy


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill PID` stops a run as Ctrl-C does: its checks are kept


def cmd_run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, _interrupt)
    data, scorer, accuracy = load_set(args.set)
    args.samples = args.samples or SAMPLES[args.set]
    flags = args.flags if args.flags is not None else RECIPES[args.recipe]
    name = args.recipe if args.flags is None else args.flags
    checks = Checks(args.eval_every, args.eval_samples, scorer)
    events: list[dict] = []
    config: dict = {}
    started: list[Trainer] = []
    stopped = None
    try:
        if flags is None:
            netG, wall = run_reference(data, args.seed, args.steps, args.batch, args.width, checks)
            images = sample_reference(netG, args.samples)
        else:
            widths = f"--g-width {args.width} --d-width {args.width}" if args.width != 64 else ""
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:  # a flag given in --flags wins
                module, wall, trainer = run_gan_train(data, f"{widths} {flags}".strip(), args.seed,
                                                      args.steps, args.batch, Path(tmp) / "run", checks,
                                                      started)
            images = sample_served(module, args.samples)
        s, steps = figures(scorer(images)), args.steps
    except KeyboardInterrupt:
        if not checks.rows:
            raise SystemExit("stopped before its first check: nothing to record") from None
        stopped = checks.rows[-1]
        s, steps, wall = {k: v for k, v in stopped.items() if k not in ("step", "wall_s")}, stopped["step"], \
            stopped["wall_s"]
    if started:  # gan-train: the resolved maths and the health events, finished or not
        events = [{"step": e.step, "kind": e.kind} for e in started[0].events]
        config = {k: v for k, v in started[0].cfg.to_dict().items() if k in RECORDED}
    row = {"set": args.set, "recipe": name, "flags": flags, "seed": args.seed, "steps": steps,
           "batch": args.batch, "width": args.width, **{k: v for k, v in s.items() if k != "samples"},
           "wall_s": round(wall, 1),
           "img_per_s": round(steps * args.batch / wall, 1) if wall > 0 else None, "samples": s["samples"],
           "events": events, "config": config, "threads": args.threads,
           "checks": checks.rows[:-1] if stopped else checks.rows,
           "classifier_accuracy": None if accuracy is None else round(accuracy, 4),
           "classifier": None if accuracy is None else classifier_id(),
           "date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__}
    if stopped:
        row["stopped_after"] = steps  # of args.steps planned; figures: that check's (--eval-samples)
        row["planned_steps"] = args.steps
    line = json.dumps(row)
    print(line)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as fh:
        fh.write(line + "\n")


def cmd_real(args: argparse.Namespace) -> None:
    """The score of real data drawn the same way: what a perfect generator gets."""
    data, scorer, accuracy = load_set(args.set)
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    idx = torch.randint(len(data), (args.samples or SAMPLES[args.set],), generator=g)
    s = scorer(torch.stack([data[i] for i in idx.tolist()]))
    held_out = "" if accuracy is None else f"; classifier held-out accuracy {accuracy:.4f}"
    print(f"{args.set}: real data, {s.samples} draws: {s.modes}/{s.modes_total} modes, KL {s.kl:.3f}, "
          f"confidence {s.confidence:.3f}{held_out}"
          + ("" if s.frechet is None else f"; FD {s.frechet:.3f} to the first {s.samples} images"))


def describe(config: dict, width: int = 64) -> str:
    """A run's maths in a few words, independent of what the defaults were when it ran."""
    if not config:
        return "pytorch/examples loop (fp32)" + (f", width {width}" if width != 64 else "")
    c = config
    norm = "+".join(n for n, on in (("BN", c["d_batch_norm"]), ("SN", c["spectral_norm"])) if on) or "no norm"
    norm += ", biases" if c.get("d_bias") else ""  # runs before the field: a bias-free D
    parts = [c["loss"], f"D {norm}", f"pack {c['pack']}", f"EMA {c['ema']:g}" if c["ema"] else "no EMA",
             c["precision"] + (" channels-last" if c["channels_last"] else "")]
    lazy = f"/{c['r1_every']}" if c["r1_every"] > 1 else ""
    extras = [f"R1 {c['r1_gamma']:g}{lazy}" if c["r1_gamma"] else "",
              f"augment {c['augment']}" if c["augment"] else "",
              f"lr G {c['lr_g']:g} D {c['lr_d']:g}" if (c["lr_g"], c["lr_d"]) != (2e-4, 2e-4) else "",
              f"n_d {c['n_d']}" if c["n_d"] != 1 else "",
              f"lr to 0 from step {c['lr_decay_from']}" if c.get("lr_decay_from") else "",
              f"width G {c['g_width']} D {c['d_width']}" if (c["g_width"], c["d_width"]) != (64, 64) else ""]
    return ", ".join(parts + [e for e in extras if e])


def scorer(row: dict, shipped: str) -> str:
    """Which scorer made a row: the shipped digit classifier (id `shipped`), an earlier one, or
    the avatars decoder."""
    if row["set"] == "avatars":
        return "decoder"
    return "shipped" if row.get("classifier") == shipped else "earlier"


def cmd_table(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    cells, shipped = defaultdict(list), classifier_id()
    for r in rows:
        recipe = describe(r.get("config") or {}, r.get("width", 64))
        recipe += " (stopped)" if "stopped_after" in r else ""
        cells[r["set"], scorer(r, shipped), recipe, r["steps"], r["batch"]].append(r)
    print("| set | scorer | recipe | steps x batch | seed | modes | KL | skew KL | confidence | FD | wall s "
          "| img/s | alarms |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for (dset, by, recipe, steps, batch), runs in sorted(cells.items(),
                                                         key=lambda kv: (SETS.index(kv[0][0]), kv[0][1])):
        cell = f"| {dset} | {by} | {recipe} | {steps} x {batch} |"
        for r in sorted(runs, key=lambda r: r["seed"]):
            alarms = ", ".join(f"{e['kind']}@{e['step']}" for e in r["events"]) or "-"
            skew = f"{r['marginal_kl']:.3f}" if r.get("marginal_kl") is not None else ""
            fd = f"{r['frechet']:.2f}" if r.get("frechet") is not None else ""
            speed = f"{r['img_per_s']:.0f}" if r.get("img_per_s") is not None else ""
            print(f"{cell} {r['seed']} | {r['modes']} | {r['kl']:.3f} | {skew} | {r['confidence']:.3f} | "
                  f"{fd} | {r['wall_s']:.0f} | {speed} | {alarms} |")
        if len(runs) > 1:
            med = {k: statistics.median(r[k] for r in runs) for k in ("modes", "kl", "confidence", "wall_s")}
            print(f"{cell} median | {med['modes']:.0f} | {med['kl']:.3f} | | {med['confidence']:.3f} | | "
                  f"{med['wall_s']:.0f} | | |")
    print_checks(rows)


def print_checks(rows: list[dict]) -> None:
    """Runs with --eval-every: the steps (training wall seconds) at which each reached the marks,
    and every check's figures."""
    rows = [r for r in rows if r.get("checks")]
    if not rows:
        return
    print("\n| set | recipe | steps x batch | seed | confidence reached at step (wall s) | "
          "checks: step modes/confidence/FD (wall s) |")
    print("|---|---|---|---:|---|---|")
    for r in sorted(rows, key=lambda r: (SETS.index(r["set"]), r["recipe"], r["seed"])):
        marks = "; ".join(f"{m:g}: {reached(r, m)}" for m in REACH[r["set"]])
        curve = "; ".join(f"{c['step']} {c['modes']}/{c['confidence']:.3f}"
                          + (f"/{c['frechet']:.2f}" if c.get("frechet") is not None else "")
                          + f" ({c['wall_s']:.0f})" for c in r["checks"])
        print(f"| {r['set']} | {describe(r.get('config') or {}, r.get('width', 64))} | "
              f"{r['steps']} x {r['batch']} | {r['seed']} | {marks} | {curve} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train one recipe on one seed and append its score")
    run.add_argument("--recipe", choices=RECIPES, default="default")
    run.add_argument("--flags", help="gan-train flags instead of a named --recipe")
    real = sub.add_parser("real", help="score real data (the ceiling)")
    for p in (run, real):
        p.add_argument("--set", choices=SETS, default="stacked")
        p.add_argument("--samples", type=int, help="samples to score (default: 26,000 digits, "
                       "10,000 avatars)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--steps", type=int, default=2000)
    run.add_argument("--batch", type=int, default=64)
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--width", type=int, default=64,
                     help="G and D width of both loops (gan-train --g-width/--d-width, the example's "
                     "ngf/ndf; the bundled avatars model: 32)")
    run.add_argument("--eval-every", type=int, default=0,
                     help="also score the generator every N steps (0: only at the end); table shows "
                     "the step each run first reached 10/20/50%% high quality (avatars)")
    run.add_argument("--eval-samples", type=int, default=1000, help="samples per --eval-every check")
    table = sub.add_parser("table", help="print the results as a markdown table")
    for p in (run, table):
        p.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.command == "run" and min(args.width, args.eval_samples, args.eval_every + 1) < 1:
        ap.error("--width and --eval-samples must be >= 1, --eval-every >= 0")
    CACHE.mkdir(parents=True, exist_ok=True)
    {"run": cmd_run, "real": cmd_real, "table": cmd_table}[args.command](args)


if __name__ == "__main__":
    main()
