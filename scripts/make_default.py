"""Turn a gan-train run on builtin:avatars into gan-serve's bundled default generator.

    python scripts/make_default.py RUN_DIR [--checkpoint step_0005000] [--command "gan-train ..."]
        [--minutes M]

Evaluates the chosen checkpoint (default: the run's best) with the avatars mode-coverage
metric on 10,000 samples (seeds 0-9999), records the figures, the training command and, given
--minutes, its duration in the model's metadata (absent without it: a run paused, resumed and
shared with other work on the machine has no honest single figure), and writes
gan_serve/models/default.safetensors as fp16, plus its verified ONNX export default.onnx (what
`--backend auto` runs the bundled model on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import gan_serve
from gan_serve.checkpoint import save_native
from training.avatars import evaluate_generator

OUT = Path(__file__).resolve().parents[1] / "gan_serve" / "models" / "default.safetensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--checkpoint", default=None, help="a step_* folder name (default: best)")
    ap.add_argument("--command", default="", help="the gan-train command that made the run")
    ap.add_argument("--minutes", type=float, default=None,
                    help="wall-clock training time (left out of the metadata when not given)")
    args = ap.parse_args()
    src = (args.run / "ckpt" / args.checkpoint / "generator.safetensors" if args.checkpoint
           else args.run / "best.safetensors")
    G = gan_serve.load(src)
    report = evaluate_generator(G, n=10_000)
    print(report.render())
    spec = G.spec
    spec.training = {**spec.training, "coverage": report.to_dict(), "command": args.command,
                     "train_minutes": args.minutes, "source": f"{args.run.name}/{src.parent.name}"}
    if args.minutes is None:  # no figure rather than an invented one
        del spec.training["train_minutes"]
    spec.training.pop("placeholder", None)
    save_native(G.module, spec, OUT, dtype=torch.float16)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    from export import export_onnx, prepare

    print(export_onnx(prepare(gan_serve.load(OUT, backend="torch")), OUT.with_suffix(".onnx")).render())
    print(json.dumps(spec.training["coverage"]))


if __name__ == "__main__":
    main()
