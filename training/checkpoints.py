"""Run folders: atomic checkpoints (the servable generator + the training state), last K kept.

    out/ckpt/step_0000500/generator.safetensors   native gan-serve checkpoint (EMA weights)
    out/ckpt/step_0000500/state.pt                 G, D, EMA, optimizers, step, monitor, history
    out/best.safetensors                            best healthy generator so far

A checkpoint folder is written under a temporary name, fsynced and renamed into place, so a
kill -9 at any moment leaves the previous checkpoint or the new one, never half of one.
state.pt holds only tensors, numbers, strings and dicts of them (JSON text for the rest) and
is read back with torch.load(weights_only=True): nothing in it can run code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from gan_serve.checkpoint import save_native
from gan_serve.fsutil import clean_stale_temps, write_bytes_atomic
from gan_serve.spec import ModelSpec

from .config import TrainConfig
from .statecheck import ARCH_FIELDS, check_state

STATE_VERSION = 1


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # directories cannot be fsynced everywhere
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(run_dir: Path, step: int, generator: torch.nn.Module, spec: ModelSpec, state: dict,
         keep: int) -> Path:
    """Write ckpt/step_NNNNNNN atomically; delete all but the last `keep` checkpoints."""
    ckpt = run_dir / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    final, tmp = ckpt / f"step_{step:07d}", ckpt / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_native(generator, spec, tmp / "generator.safetensors")
    torch.save(state, tmp / "state.pt")
    for p in (tmp / "state.pt", tmp):
        _fsync(p)
    if final.exists():  # a run replayed after a rollback writes the same step again
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(ckpt)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_stale(run_dir: Path) -> None:
    """Remove the temporary folders and files a killed run left behind (curves.png, samples,
    best.safetensors are written through temp files of the writer's process id)."""
    for tmp in (run_dir / "ckpt").glob(".tmp_step_*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for folder in (run_dir, run_dir / "samples", run_dir / "ckpt"):
        clean_stale_temps(folder)


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temporary ones are ignored)."""
    ckpt = run_dir / "ckpt"
    if not ckpt.is_dir():
        return []
    return sorted(p for p in ckpt.glob("step_*") if (p / "state.pt").exists())


def load_state(folder: Path) -> dict:
    """state.pt read with weights_only=True and checked whole (statecheck: every size against
    the config limits and the bytes present, every field's type and range); CheckpointError
    (one line) if refused or damaged."""
    from gan_serve.checkpoint import safe_torch_load
    from gan_serve.errors import CheckpointError

    s = safe_torch_load(folder / "state.pt")
    try:
        check_state(s, STATE_VERSION)
    except ValueError as exc:
        where = str(folder / "state.pt")
        raise CheckpointError(f"{where!r} is not a usable gan-train state ({exc})") from None
    except (TypeError, AttributeError, RuntimeError, LookupError, RecursionError) as exc:
        # a structure the checks did not foresee (they say what is wrong; this says only that)
        raise CheckpointError(f"{str(folder / 'state.pt')!r} is not a usable gan-train state "
                              f"({type(exc).__name__} while checking it)") from None
    return s


def latest(run_dir: Path, healthy_only: bool = False) -> Path | None:
    for folder in reversed(checkpoints(run_dir)):
        if not healthy_only or _readable(folder, lambda s: s.get("healthy", True)):
            return folder
    return None


def latest_intact(run_dir: Path, echo: Callable[[str], None]) -> Path | None:
    """--resume: the newest checkpoint whose state.pt reads back (see intact_state)."""
    found = intact_state(run_dir, echo)
    return found[0] if found is not None else None


def intact_state(run_dir: Path, echo: Callable[[str], None]) -> tuple[Path, dict] | None:
    """--resume: the newest checkpoint whose state.pt reads back, and that state (read once);
    damaged newer ones are skipped and named. CheckpointError when there are checkpoints but
    none is intact."""
    from gan_serve.errors import CheckpointError

    damaged = []
    for folder in reversed(checkpoints(run_dir)):
        try:
            state = load_state(folder)
        except CheckpointError as exc:
            damaged.append(f"{folder.name} ({exc})")
            continue
        if damaged:
            echo(f"note: skipped damaged checkpoint(s) {'; '.join(damaged)}; resuming from "
                 f"{folder.name}, the newest intact one")
        return folder, state
    if damaged:
        raise CheckpointError(f"no intact checkpoint in {str(run_dir)!r} to resume: "
                              + "; ".join(damaged))
    return None


def _readable(folder: Path, test: Callable[[dict], bool]) -> bool:
    from gan_serve.errors import CheckpointError

    try:
        return bool(test(load_state(folder)))
    except CheckpointError:
        return False


def promote_best(run_dir: Path, folder: Path, best: dict) -> Path:
    """Copy the folder's generator to best.safetensors, and what made it best to best.json."""
    path = write_bytes_atomic(run_dir / "best.safetensors", (folder / "generator.safetensors").read_bytes())
    write_bytes_atomic(run_dir / "best.json", json.dumps(best, indent=1).encode())
    return path


def repair_best(run_dir: Path, best: dict | None) -> None:
    """After a kill between saving a checkpoint and promoting it: promote it now."""
    if best is None:
        return
    written = run_dir / "best.json"
    if written.exists() and json.loads(written.read_text()).get("step") == best["step"]:
        return
    folder = run_dir / "ckpt" / f"step_{best['step']:07d}"
    if (folder / "generator.safetensors").exists():
        promote_best(run_dir, folder, best)


def unscored_if_step_count(best: dict | None) -> dict | None:
    """A best.json from before checkpoints had a quality score held the step count as its score:
    a resumed run treats that checkpoint as unscored, so the next real score replaces it."""
    if best and best.keys() <= {"step", "score"} and best.get("score") == best.get("step"):
        return {**best, "score": None}
    return best


def init_weights(cfg: TrainConfig, path: Path) -> tuple[dict, str]:
    """--init-from: ({"G", "D", "G_ema"} weights, what they are) of a checkpoint folder (or a
    run folder's latest checkpoint) for a new run; its step, optimizers, monitor and history
    start fresh. A generator file (g_epoch_85.pth, a .safetensors) gives G (and the EMA) only:
    D starts fresh."""
    from gan_serve.errors import InputError

    if path.is_file():
        return _init_generator(cfg, path)
    folder = latest(path) if (path / "ckpt").is_dir() else path
    if folder is None or not (folder / "state.pt").is_file():
        raise InputError(f"--init-from {str(path)!r} is neither a gan-train checkpoint folder "
                         "(ckpt/step_N with state.pt), a run folder holding one, nor a generator file")
    s = load_state(folder)
    saved = TrainConfig.from_dict(json.loads(s["config"]))
    differ = [f"--{k.replace('_', '-')} {getattr(cfg, k)} (it has {getattr(saved, k)})"
              for k in ARCH_FIELDS if getattr(cfg, k) != getattr(saved, k)]
    if differ:
        raise InputError(f"--init-from {folder}: its networks have other shapes: {', '.join(differ)}; "
                         "pass the same shape flags as the run it comes from")
    return {"G": s["G"], "D": s["D"], "G_ema": s["G_ema"]}, f"the G, D and EMA weights of {folder}"


def _init_generator(cfg: TrainConfig, path: Path) -> tuple[dict, str]:
    # any DCGAN-style generator gan-serve loads, if it has the shape this run's flags make
    from gan_serve.arch import DCGANGenerator
    from gan_serve.errors import InputError
    from gan_serve.generator import Generator

    from .models import generator_config

    loaded = Generator.load(path).module
    want = generator_config(cfg)
    if not isinstance(loaded, DCGANGenerator):
        raise InputError(f"--init-from {str(path)!r}: not a DCGAN generator ({type(loaded).__name__}); "
                         "gan-train trains the DCGAN family only")
    have = loaded.config
    if have.to_dict() != want.to_dict():
        flags = (f"--z-dim {have.z_dim} --g-width {have.widths[-1]} --resolution {have.img_resolution} "
                 f"--channels {have.channels}")
        raise InputError(f"--init-from {str(path)!r}: its generator is {have.describe()}, this run's "
                         f"is {want.describe()}; pass {flags} (and a tanh, BatchNorm, bias-free G)")
    return {"G": loaded.state_dict()}, f"the generator {path} (D starts fresh)"
