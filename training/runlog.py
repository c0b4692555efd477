"""The run's data in files people read, written by rank 0 only:

    out/metrics.jsonl   one JSON object per --log-every steps: step, losses, D(x), D(G(z)), lrs, img/s
    out/events.jsonl    one JSON object per health event or sighting (present, maybe empty, from step 0)
    out/tensorboard/    the same scalars and events, with --tensorboard (the tensorboard extra)

plus a log line per --log-every steps with an ETA when stderr is not a terminal (no live bar there).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gan_serve.extras import missing_extra
from gan_serve.fsutil import write_bytes_atomic

from .monitor import Event

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter



def open_tensorboard(run_dir: Path) -> SummaryWriter:
    """A SummaryWriter logging into run_dir/tensorboard; MissingExtraError when it is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise missing_extra("tensorboard", "--tensorboard", "tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def duration(seconds: float) -> str:
    """'1h02m', '12m30s', '45s'."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class RunLog:
    """metrics.jsonl, events.jsonl, TensorBoard and the non-TTY log line of one run."""

    def __init__(self, run_dir: Path, main: bool, tensorboard: bool, echo: Callable[[str], None]) -> None:
        self.run_dir, self.main, self.echo = run_dir, main, echo
        self.tb = open_tensorboard(run_dir) if tensorboard and main else None
        self.clock = (0, time.perf_counter())
        if main:
            (run_dir / "events.jsonl").touch()

    def start(self, step: int) -> None:
        """A segment starts at `step`: the ETA is judged on the steps from here (checkpoints,
        sample checks and evaluations included)."""
        self.clock = (step, time.perf_counter())

    def rewrite(self, history: list[dict]) -> None:
        """metrics.jsonl as `history` says (after a resume or a rollback: no replayed step twice)."""
        if self.main:
            write_bytes_atomic(self.run_dir / "metrics.jsonl",
                               "".join(json.dumps(row) + "\n" for row in history).encode())

    def metrics(self, row: dict, total_steps: int) -> None:
        if not self.main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, value in row.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, row["step"])
        if not sys.stderr.isatty():  # no live bar in a log file: a line instead
            start, then = self.clock
            per_step = (time.perf_counter() - then) / max(row["step"] - start, 1)
            eta = (total_steps - row["step"]) * per_step
            self.echo(f"step {row['step']}/{total_steps}  D {row['d_loss']:.3f}  G {row['g_loss']:.3f}  "
                      f"D(x) {row['d_real']:.2f}  D(G(z)) {row['d_fake']:.2f}  "
                      f"{row['images_per_s']:.0f} img/s  ETA {duration(eta)}")

    def event(self, event: Event) -> None:
        if not self.main:
            return
        with open(self.run_dir / "events.jsonl", "a") as fh:
            fh.write(json.dumps(event.to_dict()) + "\n")
        if self.tb is not None:
            self.tb.add_text(f"events/{event.kind}", event.message, event.step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
