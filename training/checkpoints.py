"""Run folders: atomic checkpoints (the servable generator + the training state), last K kept.

    out/ckpt/step_0000500/generator.safetensors   native gan-serve checkpoint (EMA weights)
    out/ckpt/step_0000500/state.pt                 weights, optimizers, EMA, monitor, step
    out/best.safetensors                            best healthy generator so far

A checkpoint folder is written under a temporary name and renamed into place, so a kill -9
at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from gan_serve.checkpoint import save_native
from gan_serve.spec import ModelSpec


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


def save(run_dir: Path, step: int, generator: torch.nn.Module, spec: ModelSpec, state: dict,
         keep: int) -> Path:
    ckpt = run_dir / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    final, tmp = ckpt / f"step_{step:07d}", ckpt / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_native(generator, spec, tmp / "generator.safetensors")
    torch.save(state, tmp / "state.pt")
    _fsync_tree(tmp)
    if final.exists():  # a run replayed after a rollback writes the same step again
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temporary ones are ignored)."""
    ckpt = run_dir / "ckpt"
    if not ckpt.is_dir():
        return []
    return sorted(p for p in ckpt.glob("step_*") if (p / "state.pt").exists())


def load_state(folder: Path) -> dict:
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)


def latest(run_dir: Path, healthy_only: bool = False) -> Path | None:
    for folder in reversed(checkpoints(run_dir)):
        if not healthy_only or load_state(folder).get("healthy", True):
            return folder
    return None


def promote_best(run_dir: Path, folder: Path) -> Path:
    best = run_dir / "best.safetensors"
    tmp = run_dir / ".best.safetensors.tmp"
    shutil.copyfile(folder / "generator.safetensors", tmp)
    os.replace(tmp, best)
    return best
