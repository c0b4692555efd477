"""A run's latest checkpoint, packed small enough to keep in a repository, and back.

    python -m training.pack RUN_DIR DEST      # DEST/ckpt/step_N/{state.pt, generator.safetensors}
    cp -r DEST runs/continued && gan-train --out runs/continued --resume --steps 200000

The packed state.pt keeps everything `--resume` needs (G, D, EMA, both Adam optimizers, step,
monitor, history) with the weights and buffers of G, D and the EMA in fp16 (values in fp16's
range; 11 significant bits) and the optimizers' moments in bf16 (fp32's range: Adam's second
moments go down to 1e-20 and would flush to zero in fp16, which blows up the next steps).
Loading casts them back: `load_state_dict` copies into the fp32 parameters, and the optimizer
casts its state to the parameters' dtype. Half the size of the fp32 state; a resumed run is
the same run to within that rounding (not bit for bit, unlike a resume from the run folder).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch

from gan_serve.errors import CheckpointError, GanServeError
from gan_serve.fsutil import write_bytes_atomic

from . import checkpoints as ck

MODULES = ("G", "D", "G_ema")  # module state dicts: fp16
OPTIMIZERS = ("opt_g", "opt_d")  # optimizer state dicts: bf16 moments


def _half(sd: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in sd.items()}


def _check_fp16(name: str, sd: dict) -> None:
    for k, v in sd.items():
        if torch.is_tensor(v) and v.is_floating_point() and v.numel() and v.abs().max() > 60000:
            raise CheckpointError(f"{name}.{k} holds values beyond fp16's range; not packed")


def pack_state(state: dict) -> dict:
    """`state` with G, D and EMA tensors in fp16 and the optimizers' moments in bf16."""
    packed = dict(state)
    for name in MODULES:
        if state.get(name):
            _check_fp16(name, state[name])
            packed[name] = _half(state[name], torch.float16)
    for name in OPTIMIZERS:
        opt = state[name]
        packed[name] = {**opt, "state": {i: {k: (v if k == "step" else v.to(torch.bfloat16))
                                              if torch.is_tensor(v) and v.is_floating_point() else v
                                              for k, v in s.items()}
                                         for i, s in opt["state"].items()}}
    return packed


def pack_run(run_dir: Path, dest: Path) -> Path:
    """Write the run's newest intact checkpoint, packed, to DEST/ckpt/<its name>; return it."""
    found = ck.intact_state(run_dir, echo=lambda m: print(m, file=sys.stderr))
    if found is None:
        raise CheckpointError(f"{str(run_dir)!r} has no checkpoint to pack")
    folder, state = found
    out = dest / "ckpt" / folder.name
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(pack_state(state), buf)
    write_bytes_atomic(out / "state.pt", buf.getvalue())
    write_bytes_atomic(out / "generator.safetensors", (folder / "generator.safetensors").read_bytes())
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a gan-train run folder (--out)")
    ap.add_argument("dest", type=Path, help="the folder to write DEST/ckpt/step_N/ into")
    args = ap.parse_args(argv)
    try:
        out = pack_run(args.run, args.dest)
    except GanServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"packed {out} ({size:,} bytes); continue with: cp -r {args.dest} runs/NAME && "
          f"gan-train --out runs/NAME --resume")


if __name__ == "__main__":
    main()
