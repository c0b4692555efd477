"""train_recipes.py's intermediate checks (--eval-every): a run's figures at steps before its last.

A check scores the generator as the run would be served at that step (gan-train: EMA weights,
BatchNorm re-estimated, eval mode; the reference: as the example samples) on fewer samples than
the final score (1,000 by default, as the bundled model's checkpoints are checked). Checks draw
their latents from their own generator, score under a forked global RNG (the scorers' nets are
built from it) and time themselves: a run trains the same with and without them (a test holds
it), and its wall times leave the checks' seconds out.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable

import torch

from benchmarks.digits import ModeScore


def figures(s: ModeScore) -> dict:
    """A score's numbers as a results row keeps them."""
    return {"modes": s.modes, "modes_total": s.modes_total, "kl": round(s.kl, 4),
            "confidence": round(s.confidence, 4),
            "marginal_kl": None if s.marginal_kl is None else round(s.marginal_kl, 4),
            "frechet": None if s.frechet is None else round(s.frechet, 3), "samples": s.samples}


@dataclasses.dataclass
class Checks:
    """Scores of the generator every `every` steps before the last (0: none). Each entry of
    `rows`: the step, the training wall seconds so far and the figures; `spent` is the seconds the
    checks took, which every wall time leaves out."""

    every: int
    samples: int
    scorer: Callable[[torch.Tensor], ModeScore]
    rows: list[dict] = dataclasses.field(default_factory=list)
    spent: float = 0.0
    t0: float = 0.0

    def start(self, t0: float) -> None:
        self.t0, self.spent, self.rows = t0, 0.0, []

    def due(self, done: int, steps: int) -> bool:
        return self.every > 0 and done % self.every == 0 and done < steps

    def record(self, done: int, sample: Callable[[], torch.Tensor]) -> None:
        t = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # scorers build nets from the global RNG: not the run's
            score = self.scorer(sample())
        self.rows.append({"step": done, "wall_s": round(t - self.t0 - self.spent, 1), **figures(score)})
        print(f"check {json.dumps(self.rows[-1])}", file=sys.stderr, flush=True)  # progress of a long run
        self.spent += time.perf_counter() - t


REACH = {"avatars": (0.1, 0.2, 0.5), "digits": (0.85,), "stacked": (0.85,)}  # confidence marks


def reached(row: dict, mark: float) -> str:
    """The first check (or the end) at which a run's confidence reached `mark`: "step (wall s)",
    or "not by STEP (BEST)" with the best figure it had."""
    points = [*row["checks"], {**row, "step": row["steps"]}]
    hit = next((c for c in points if c["confidence"] >= mark), None)
    if hit is None:
        return f"not by {row['steps']} ({max(c['confidence'] for c in points):.3f})"
    return f"{hit['step']} ({hit['wall_s']:.0f} s)"
