"""The health monitor: names a training failure while it happens, its likely cause, what to try.

Each detector reads numbers the loop already has (losses, D outputs, gradients, fixed-noise
samples); the seed documents are the failures it knows: a misplaced `.detach()` (003), data
left in [0, 1] for a tanh G (001, 003), NaN (001), a discriminator that wins (001, 002),
mode collapse (000, 002), black or flat output, a D that scores everything the same.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch

from gan_serve.health import health_check


@dataclass
class Event:
    step: int
    kind: str  # no_gradient, data_range, nan, d_dominates, mode_collapse, black, saturated, flat, d_constant
    message: str  # what happened, its likely cause, and what to try
    fatal: bool = False  # configuration bugs stop the run whatever --on-failure says

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingFailure(Exception):
    """Raised to stop a run; carries the event that stopped it."""

    def __init__(self, event: Event) -> None:
        super().__init__(event.message)
        self.event = event


def check_data_range(real: torch.Tensor, step: int = 0) -> Event | None:
    """Real images must be in [-1, 1], and use it (not just [0, 1]), to match G's tanh."""
    lo, hi = float(real.min()), float(real.max())
    if lo < -1.01 or hi > 1.01:
        return Event(step, "data_range", f"real images range over [{lo:.2f}, {hi:.2f}], outside "
                     "[-1, 1] where the tanh generator lives: normalize them with mean 0.5, std 0.5 "
                     "(transforms.Normalize(0.5, 0.5) after ToTensor())", fatal=True)
    if lo >= 0.0:
        return Event(step, "data_range", f"real images are in [{lo:.2f}, {hi:.2f}], i.e. [0, 1], but "
                     "G ends in tanh and outputs [-1, 1]: D tells real from fake by the range alone "
                     "and G never learns (seeds 001 and 003). Normalize with mean 0.5, std 0.5 to "
                     "[-1, 1]", fatal=True)
    return None


def check_g_gradient(G: torch.nn.Module, step: int) -> Event | None:
    """After G's first backward pass: some parameter of G must have a non-zero gradient."""
    grads = [p.grad for p in G.parameters() if p.requires_grad]
    if any(g is not None and bool(torch.any(g != 0)) for g in grads):
        return None
    return Event(step, "no_gradient", "the generator received no gradient in its first G step: "
                 "its loss does not depend on G's weights. The classic cause is "
                 "D(fake.detach()) in the G step (seed 003); detach only in the D step, where "
                 "G must not be updated", fatal=True)


def check_finite(step: int, losses: dict[str, float], *modules: torch.nn.Module) -> Event | None:
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    for m in modules:
        if any(not bool(torch.isfinite(p).all()) for p in m.parameters()):
            bad.append(f"{type(m).__name__} weights")
    if not bad:
        return None
    return Event(step, "nan", f"NaN/Inf in {', '.join(bad)} at step {step}: the learning rate is "
                 "likely too high for this batch (or fp16 overflowed); rolling back to the last "
                 "healthy checkpoint with half the learning rate is the usual fix")


class Monitor:
    """Windowed statistics and the sample-based detectors."""

    def __init__(self, window: int, warmup: int) -> None:
        self.window, self.warmup = window, warmup
        self.d_loss: deque[float] = deque(maxlen=window)
        self.g_loss: deque[float] = deque(maxlen=window)
        self.d_fake: deque[float] = deque(maxlen=window)
        self.fired: set[str] = set()  # kinds that fired since the last checkpoint

    def state(self) -> dict:
        return {"d_loss": list(self.d_loss), "g_loss": list(self.g_loss), "d_fake": list(self.d_fake)}

    def load(self, state: dict) -> None:
        for key in ("d_loss", "g_loss", "d_fake"):
            getattr(self, key).extend(state.get(key, []))

    def record(self, d_loss: float, g_loss: float, d_fake: float) -> None:
        self.d_loss.append(d_loss)
        self.g_loss.append(g_loss)
        self.d_fake.append(d_fake)

    def check_domination(self, step: int) -> Event | None:
        """D loss near 0, D(G(z)) near 0 and G loss climbing, averaged over the window."""
        if len(self.d_loss) < self.window or step < self.warmup:
            return None  # D wins the first few hundred steps of most healthy runs
        half = self.window // 2
        g = list(self.g_loss)
        d_loss, d_fake = float(np.mean(self.d_loss)), float(np.mean(self.d_fake))
        rising = np.mean(g[half:]) > np.mean(g[:half])
        if d_loss < 0.05 and d_fake < 0.05 and rising:
            return Event(step, "d_dominates", f"the discriminator dominates: mean D loss {d_loss:.3f} "
                         f"and D(G(z)) {d_fake:.3f} over {self.window} steps while G's loss climbs "
                         f"to {np.mean(g[half:]):.2f}. G gets no useful gradient; try a lower D lr "
                         "(--lr-d), one-sided label smoothing (--label-smoothing 0.1), --n-d 1, "
                         "or the hinge loss")
        return None

    def check_samples(self, step: int, fake: np.ndarray, real: np.ndarray) -> list[Event]:
        """Collapse, black, saturated and flat output on fixed-noise samples (uint8 NHWC)."""
        if step < self.warmup:
            return []
        f, r = health_check(fake), health_check(real)
        events = []
        if f.mean_pairwise_distance < 0.25 * r.mean_pairwise_distance or f.duplicate_share > 0.5:
            events.append(Event(step, "mode_collapse", f"mode collapse: fixed-noise samples differ by "
                                f"{f.mean_pairwise_distance:.3f} on average against "
                                f"{r.mean_pairwise_distance:.3f} "
                                f"between real images, {f.duplicate_share:.0%} have a near-duplicate "
                                "(seed 000's 'only a few faces'). Try a lower lr, 1:1 D:G steps, "
                                "label smoothing, a larger z_dim, or roll back"))
        for kind, share, what in (("black", f.black_share, "mostly black"),
                                  ("saturated", f.saturated_share, "saturated (stuck at 0/255)"),
                                  ("flat", f.constant_share, "a single flat colour")):
            if share > 0.5:
                events.append(Event(step, kind, f"{share:.0%} of fixed-noise samples are {what}: "
                                    "G's output layer is stuck at the tanh limits or dead; check the "
                                    "data range and lower the lr, or roll back"))
        return events

    @staticmethod
    def check_d_constant(step: int, logits: torch.Tensor) -> Event | None:
        """D that gives real and fake inputs one and the same score has stopped judging."""
        if logits.numel() > 1 and float(logits.float().std()) < 1e-4:
            return Event(step, "d_constant", f"the discriminator gives every input the same score "
                         f"({float(logits.float().mean()):.3f}) (seed 001): it is dead, so G learns "
                         "nothing. Typical causes: a too-high D lr, or a sigmoid/BCE mismatch; "
                         "roll back, lower --lr-d")
        return None
