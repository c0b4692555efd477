"""The health monitor on real data: false alarms on healthy runs, detection delay on provoked
failures, and whether the quality proxy (training/quality.py) ranks checkpoints.

    python benchmarks/false_alarms.py healthy --set digits --seed 0 [--steps 800] [--width 64]
    python benchmarks/false_alarms.py healthy --set photos --flags "--lr-g 4e-4 --lr-d 4e-4"
    python benchmarks/false_alarms.py provoked --fault collapse [--at 400]
    python benchmarks/false_alarms.py table

Healthy runs: gan-train with every default (recipe, --precision auto, --on-failure rollback,
--warmup, --sample-every, --ckpt-every) at 32x32 on `digits` (scikit-learn's 1,797 digits,
greyscale, benchmarks/digits.py), `avatars` (builtin:avatars at 32x32) or `photos` (4,000
random 32x32 crops of scikit-learn's two bundled sample photos). It counts the failures that
counted, the sightings that did not, rollbacks and stops; every kept checkpoint gets the
proxy's Fréchet distance and, on digits, the digit classifier's modes and confidence on 2,000
samples (an independent quality measure to check the proxy against). --flags runs a candidate
recipe instead of the defaults (gan-train flags, as benchmarks/train_recipes.py --flags takes
them), to check that it keeps the zero-false-alarm record before it becomes the default.

Provoked runs: digits, seed 0, --on-failure stop; from step --at on a hook breaks the run the
way tests/training/test_monitor.py does (collapse: G ignores z; black / saturated / flat
output; dead D; NaN) and the row says at which step the failure counted. One JSON line per run
is appended to benchmarks/results/false_alarms.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.digits import Digits, score_images, train_classifier  # noqa: E402
from benchmarks.train_recipes import parse_flags  # noqa: E402
from training import TrainConfig, Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "false_alarms.jsonl"


class Photos(Dataset):
    """4,000 random 32x32 RGB crops of scikit-learn's sample images (china.jpg, flower.jpg)."""

    def __init__(self, n: int = 4000) -> None:
        from sklearn.datasets import load_sample_images

        photos = [torch.from_numpy(im.copy()).permute(2, 0, 1).float() / 127.5 - 1
                  for im in load_sample_images().images]
        g = torch.Generator().manual_seed(0)
        crops = []
        for i in range(n):
            p = photos[i % len(photos)]
            y, x = (int(torch.randint(s - 32, (1,), generator=g)) for s in p.shape[1:])
            crops.append(p[:, y:y + 32, x:x + 32])
        self.images = torch.stack(crops)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _data(name: str) -> tuple[Dataset | None, int]:
    if name == "digits":
        return Digits("digits"), 1
    if name == "photos":
        return Photos(), 3
    return None, 3  # builtin:avatars


def _fault(kind: str, at: int):
    def hook(t: Trainer, step: int) -> None:
        if step < at:
            return
        with torch.no_grad():
            main = t.G.main
            if kind == "collapse":
                main[0].weight.zero_()
            elif kind == "black":
                main[-2].weight.copy_(-main[-2].weight.abs() - 0.05)
                main[-4].bias.fill_(5.0)
            elif kind == "saturated":
                main[-2].weight.copy_(main[-2].weight.abs() + 0.5)
            elif kind == "flat":
                main[-2].weight.zero_()
            elif kind == "dead_d":
                t.D.main[-1].weight.zero_()
            elif kind == "nan" and step == at:
                next(t.G.parameters()).fill_(float("nan"))
    return hook


def _checkpoint_scores(run: Path, digits: bool) -> list[dict]:
    import gan_serve
    from training.checkpoints import checkpoints, load_state

    rows = []
    net = train_classifier()[0] if digits else None
    for folder in checkpoints(run):
        s = load_state(folder)
        evals = [e for e in json.loads(s["evals"]) if "frechet_random_features" in e]
        row = {"step": int(s["step"]), "healthy": bool(s["healthy"]),
               "fd": evals[-1]["frechet_random_features"] if evals else None}
        if net is not None:
            G = gan_serve.load(folder / "generator.safetensors", precision="fp32")
            x = torch.from_numpy(G.generate(range(50_000, 52_000))).permute(0, 3, 1, 2).float() / 127.5 - 1
            m = score_images(x, net)
            row.update(modes=m.modes, kl=round(m.kl, 3), confidence=round(m.confidence, 3))
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> dict:
    name = args.set if args.mode == "healthy" else "digits"
    dataset, channels = _data(name)
    hooks = (_fault(args.fault, args.at),) if args.mode == "provoked" else ()
    given = parse_flags(args.flags)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cfg = TrainConfig(**{"g_width": args.width, "d_width": args.width, **given,  # the run's own below
                             "data": "builtin:avatars", "out": str(out), "resolution": 32,
                             "channels": channels, "steps": args.steps, "seed": args.seed, "keep": 100,
                             "on_failure": "stop" if args.mode == "provoked" else "rollback"})
        messages: list[str] = []
        t = Trainer(cfg, dataset=dataset, echo=messages.append, hooks=hooks, given=given)
        start, stopped = time.perf_counter(), None
        try:
            t.train()
        except Exception as exc:  # a TrainingFailure is the measurement
            stopped = f"{type(exc).__name__}: {str(exc)[:120]}"
        wall = time.perf_counter() - start
        counted = [f"{e.kind}@{e.step}" for e in t.events if e.counted]
        row = {"mode": args.mode, "set": name, "seed": args.seed, "steps": args.steps, "width": args.width,
               "flags": args.flags,
               "fault": args.fault if args.mode == "provoked" else None,
               "at": args.at if args.mode == "provoked" else None,
               "failures": counted, "sightings": [f"{e.kind}@{e.step} ({e.note})" for e in t.events
                                                  if not e.counted],
               "rollbacks": t.rollbacks, "stopped": stopped, "final_step": t.step,
               "wall_s": round(wall, 1), "precision": t.precision, "d_bias": t.cfg.d_bias,
               "lr_g": t.cfg.lr_g, "lr_d": t.cfg.lr_d,
               "date": datetime.date.today().isoformat(),
               "checkpoints": _checkpoint_scores(out, name == "digits")}
        if args.mode == "provoked":
            first = next((e for e in t.events if e.counted and e.step >= args.at), None)
            row["detected_at"] = first.step if first else None
            row["detected_kind"] = first.kind if first else None
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def table() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    print("| set | seed | width | D biases | flags | steps | failures that counted | stops | rollbacks "
          "| sightings (not counted) |")
    print("|---|---:|---:|---|---|---:|---|---|---:|---|")
    for r in (r for r in rows if r["mode"] == "healthy"):
        bias = "yes" if r.get("d_bias") else "no"  # rows before the field: a bias-free D
        flags = f"`{r['flags']}`" if r.get("flags") else "defaults"
        print(f"| {r['set']} | {r['seed']} | {r['width']} | {bias} | {flags} | {r['final_step']} | "
              f"{', '.join(r['failures']) or 'none'} | {'yes' if r['stopped'] else 'no'} | "
              f"{r['rollbacks']} | {len(r['sightings'])} |")
    print("\n| provoked failure (from step) | counted as | at step | steps to detection |")
    print("|---|---|---:|---:|")
    for r in (r for r in rows if r["mode"] == "provoked"):
        delay = r["detected_at"] - r["at"] if r["detected_at"] is not None else "not detected"
        print(f"| {r['fault']} ({r['at']}) | {r['detected_kind']} | {r['detected_at']} | {delay} |")
    print("\n| run | step | healthy | Fréchet (random features) | digit modes | KL | confidence |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        label = f"{r['set']} s{r['seed']} w{r['width']}" + (f" {r['fault']}" if r["fault"] else "")
        for c in r["checkpoints"]:
            fd = f"{c['fd']:.2f}" if c["fd"] is not None else "-"
            print(f"| {label} | {c['step']} | {c['healthy']} | {fd} | {c.get('modes', '-')} | "
                  f"{c.get('kl', '-')} | {c.get('confidence', '-')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("healthy", "provoked", "table"))
    ap.add_argument("--set", default="digits", choices=("digits", "avatars", "photos"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--width", type=int, default=64, help="--g-width and --d-width (gan-train's default: 64)")
    ap.add_argument("--flags", default="", help='gan-train flags of a candidate recipe, e.g. "--lr-g 4e-4 '
                    '--lr-d 4e-4" (default: none, every gan-train default)')
    ap.add_argument("--fault", default="collapse",
                    choices=("collapse", "black", "saturated", "flat", "dead_d", "nan"))
    ap.add_argument("--at", type=int, default=400)
    args = ap.parse_args()
    if args.mode == "table":
        table()
        return
    torch.set_num_threads(1)
    row = run(args)
    print(json.dumps({k: v for k, v in row.items() if k != "checkpoints"}))
    for c in row["checkpoints"]:
        print(json.dumps(c))


if __name__ == "__main__":
    main()
