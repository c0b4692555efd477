"""The health monitor: names a training failure while it happens, its likely cause, what to try.

Each detector reads numbers the loop already has (losses, D's verdicts, gradients, weights,
fixed-noise samples); the seed documents are the failures it knows: a misplaced `.detach()`
(003), data left in [0, 1] for a tanh G (001, 003), NaN (001), a discriminator that wins
(001, 002), mode collapse (000, 002), black or flat output, a D that scores everything the
same (001). Thresholds are module constants, listed in docs/training.md ("The health monitor").
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch

from gan_serve.health import HealthReport, health_check

RANGE_SLACK = 0.01  # real data may overshoot [-1, 1] by this much (resampling ringing)
DOMINATION_LOSS = 0.05  # mean D loss above its floor below this ...
DOMINATION_FAKE = 0.05  # ... and mean D(G(z)) below this, while G's loss climbs: D dominates
CLIMB_T = 4.0  # G's loss climbs: its least-squares slope over the window this many standard errors
CLIMB_SHARE = 0.1  # above 0, rising by this share of its mean: a trend, not noise (nor a steady D win)
COLLAPSE_DIVERSITY = 0.1  # fake mean pairwise distance below this share of the real one
COLLAPSE_DUPLICATES = 0.5  # or more than half the fakes have a near-duplicate (and reals don't)
COVERAGE_SHARE = 0.5  # builtin:avatars: fewer distinct modes than half of what uniform gives
COVERAGE_MIN_GOOD = 100  # ... judged once at least this many samples decode as avatars
PERSIST_CHECKS = 2  # a sample-based failure counts once this many checks in a row saw it (raw and EMA G)
OUTPUT_MAJORITY = 0.5  # black / saturated / flat: more than half the fixed-noise samples
D_CONSTANT_STD = 1e-4  # std of D's logits over a real+fake batch below this: D is dead


def _climbs(values: np.ndarray) -> bool:
    # least-squares slope of values over their index: significantly above 0 and a real rise
    n = len(values)
    if n < 4:
        return False
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    slope = float(x @ (values - values.mean()) / (x @ x))
    residual = values - values.mean() - slope * x
    se = math.sqrt(float(residual @ residual) / (n - 2) / float(x @ x))
    return slope > CLIMB_T * se and slope * (n - 1) > CLIMB_SHARE * abs(float(values.mean()))


@dataclass
class Event:
    step: int
    kind: str  # no_gradient, data_range, nan, d_dominates, mode_collapse, black, saturated, flat, d_constant
    message: str  # what happened, its likely cause, and what to try
    fatal: bool = False  # configuration bugs stop the run whatever --on-failure says
    note: str = ""  # why a sighting does not count (yet): "inside the warm-up", "seen once", ...

    @property
    def counted(self) -> bool:
        """A failure (acted on by --on-failure), not a sighting shown in the report only."""
        return not self.note

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingFailure(Exception):
    """Raised to stop a run; carries the event that stopped it."""

    def __init__(self, event: Event) -> None:
        super().__init__(event.message)
        self.event = event


NORMALIZE = ("normalize them with mean 0.5 and std 0.5 "
             "(transforms.Normalize((0.5,) * C, (0.5,) * C) after ToTensor())")


def check_data_range(real: torch.Tensor) -> Event | None:
    """Real images must lie in [-1, 1] and use it (not only [0, 1]) to match G's tanh."""
    lo, hi = float(real.min()), float(real.max())
    if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
        return Event(0, "data_range", f"real images range over [{lo:.2f}, {hi:.2f}], outside the [-1, 1] "
                     f"of G's tanh output: {NORMALIZE}", fatal=True)
    if lo >= 0.0:
        return Event(0, "data_range", f"real images lie in [{lo:.2f}, {hi:.2f}], i.e. [0, 1], but G ends "
                     "in tanh and outputs [-1, 1]: D tells real from fake by the range alone and G "
                     f"learns nothing (seeds 001 and 003); {NORMALIZE} to map them to [-1, 1]", fatal=True)
    return None


def check_g_gradient(G: torch.nn.Module, step: int, loss_has_graph: bool = True) -> Event | None:
    """After G's first backward pass some weight of G must have a non-zero gradient."""
    grads = [p.grad for p in G.parameters() if p.requires_grad]
    if loss_has_graph and any(g is not None and bool(torch.any(g != 0)) for g in grads):
        return None
    return Event(step, "no_gradient", "the generator received no gradient in its first G step: its "
                 "loss does not depend on G's weights, so G would never learn and its samples stay "
                 "noise. The classic cause is D(fake.detach()) in the G step (seed 003: "
                 "`g_pred = d_model(fake_img.detach())`); detach only in the D step, where G must "
                 "not be updated, and check that G's parameters require grad", fatal=True)


def check_finite(step: int, losses: dict[str, float], *modules: torch.nn.Module) -> Event | None:
    """NaN/Inf in a loss, or (when modules are given) in a weight or BatchNorm statistic."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    for m in modules:
        if not all(bool(torch.isfinite(t).all()) for t in m.state_dict().values() if t.is_floating_point()):
            bad.append(f"{type(m).__name__} weights")
    if not bad:
        return None
    return Event(step, "nan", f"NaN/Inf in {', '.join(bad)} at step {step}: the learning rate is likely "
                 "too high (or fp16 overflowed). The usual fix, as seed 001 did by hand: go back to "
                 "the last healthy checkpoint and halve the learning rates (--on-failure rollback)")


def expected_modes(good: int, modes: int) -> float:
    """Distinct modes expected among `good` draws from `modes` equally likely ones."""
    return modes * (1.0 - (1.0 - 1.0 / modes) ** good)


class Monitor:
    """Windowed loss statistics and the sample-based detectors."""

    def __init__(self, window: int, warmup: int, loss_floor: float = 0.0) -> None:
        self.window, self.warmup, self.loss_floor = window, warmup, loss_floor
        self.d_loss: deque[float] = deque(maxlen=window)
        self.g_loss: deque[float] = deque(maxlen=window)
        self.d_fake: deque[float] = deque(maxlen=window)
        self.real: HealthReport | None = None  # diversity of real images, the collapse yardstick
        self.fired: set[str] = set()  # kinds reported since the last checkpoint (said once each)
        self.seen: dict[str, dict[str, int]] = {}  # source -> kind -> checks in a row that saw it

    def state(self) -> dict:
        return {"d_loss": list(self.d_loss), "g_loss": list(self.g_loss), "d_fake": list(self.d_fake),
                "seen": self.seen}

    def load(self, state: dict) -> None:
        for key in ("d_loss", "g_loss", "d_fake"):
            getattr(self, key).clear()
            getattr(self, key).extend(state.get(key, []))
        self.seen = {source: dict(kinds) for source, kinds in state.get("seen", {}).items()}

    def confirm(self, step: int, source: str, sighted: list[Event]) -> list[Event]:
        """The persistence rule: a sighting counts as a failure only past the warm-up and once
        PERSIST_CHECKS checks of `source` in a row saw it; the others come back with a note
        (shown in the report, never acted on). A check that does not see a kind resets it."""
        seen = self.seen.get(source, {})
        self.seen[source] = seen = {e.kind: seen.get(e.kind, 0) + 1 for e in sighted}
        for e in sighted:
            if step < self.warmup:
                e.note = "inside the warm-up"
            elif seen[e.kind] < PERSIST_CHECKS:
                e.note = f"seen by {seen[e.kind]} check(s) in a row; counts at {PERSIST_CHECKS}"
        return sighted

    def suspect(self, step: int) -> bool:
        """A sighting past the warm-up is still open: a checkpoint written now is not healthy."""
        return step >= self.warmup and any(n > 0 for kinds in self.seen.values() for n in kinds.values())

    def set_reference(self, real_u8: np.ndarray) -> None:
        self.real = health_check(real_u8)

    def record(self, d_loss: float, g_loss: float, d_fake: float) -> None:
        self.d_loss.append(d_loss)
        self.g_loss.append(g_loss)
        self.d_fake.append(d_fake)

    def check_domination(self, step: int) -> Event | None:
        """D loss near its floor, D(G(z)) near 0 and G's loss climbing, over the window: a
        trend beyond noise (CLIMB_T, CLIMB_SHARE)."""
        if len(self.d_loss) < self.window or step < self.warmup:
            return None  # D wins the first few hundred steps of most healthy runs
        half = self.window // 2
        g = list(self.g_loss)
        d_loss, d_fake = float(np.mean(self.d_loss)) - self.loss_floor, float(np.mean(self.d_fake))
        g_late = float(np.mean(g[half:]))
        if d_loss < DOMINATION_LOSS and d_fake < DOMINATION_FAKE and _climbs(np.asarray(g)):
            return Event(step, "d_dominates", f"the discriminator dominates (convergence failure): mean D "
                         f"loss {d_loss:.3f} above its floor and D(G(z)) {d_fake:.3f} over {self.window} "
                         f"steps while G's loss climbs to {g_late:.2f}. G gets no useful gradient and "
                         "its images stay garbage (seeds 001, 002, 003). Try a lower D learning rate "
                         "(--lr-d), one-sided label smoothing (--label-smoothing 0.1), --n-d 1, another "
                         "--loss, or a smaller --d-width")
        return None

    @staticmethod
    def check_d_constant(step: int, logit_std: float, logit_mean: float) -> Event | None:
        """A D that gives real and fake images one and the same score has stopped judging."""
        if logit_std < D_CONSTANT_STD:
            return Event(step, "d_constant", f"the discriminator gives every input the same score "
                         f"({logit_mean:.3f}, std {logit_std:.1e} over real and fake images; seed 001): "
                         "it no longer judges, so G learns nothing. Likely a dead D (too high --lr-d, "
                         "dead activations) or a D too weak for the data; lower --lr-d, widen D "
                         "(--d-width), or roll back")
        return None

    def check_samples(self, step: int, fake: HealthReport) -> list[Event]:
        """Collapse and black / saturated / flat output, from the fixed-noise samples' health:
        sightings, which `confirm` turns into failures. An untrained G draws the same grey blur
        for every z: inside the warm-up that is shown, not counted."""
        events = []
        real_div = self.real.mean_pairwise_distance if self.real else 0.0
        real_dup = self.real.duplicate_share if self.real else 0.0
        ratio = fake.mean_pairwise_distance / real_div if real_div > 0 else 1.0
        if ratio < COLLAPSE_DIVERSITY or (fake.duplicate_share > COLLAPSE_DUPLICATES
                                          and fake.duplicate_share > real_dup + 0.25):
            events.append(Event(step, "mode_collapse", f"mode collapse: the fixed-noise samples differ by "
                                f"{fake.mean_pairwise_distance:.3f} on average against {real_div:.3f} "
                                "between "
                                f"real images ({ratio:.0%}), and {fake.duplicate_share:.0%} have a near-"
                                "duplicate: G draws only a few faces for every z (seed 000). Likely a "
                                "too-high lr, several G steps per D step, or a D that wins; try lr 2e-4 "
                                "with --beta1 0.5, --n-d 1, --label-smoothing 0.1, a larger --z-dim, or "
                                "roll back"))
        outputs = (("black", fake.black_share, "mostly black"),
                   ("saturated", fake.saturated_share, "saturated (pixels stuck at 0 or 255)"),
                   ("flat", fake.constant_share, "a single flat colour"))
        for kind, share, what in outputs:
            if share > OUTPUT_MAJORITY:
                events.append(Event(step, kind, f"{share:.0%} of the fixed-noise samples are {what}: G's "
                                    "output layer sits at the tanh limits or has died (seed 001 saw black "
                                    "images after a few iterations). Lower the learning rates, check that "
                                    "the data is in [-1, 1], or roll back"))
        return events

    def check_coverage(self, step: int, modes_covered: int, modes_total: int, good: int) -> Event | None:
        """builtin:avatars: the good samples fall into far fewer modes than chance would give
        (a sighting; see `confirm`)."""
        if good < COVERAGE_MIN_GOOD:
            return None
        expected = expected_modes(good, modes_total)
        if modes_covered < COVERAGE_SHARE * expected:
            return Event(step, "mode_collapse", f"mode collapse: the {good} good avatars among the "
                         f"evaluation samples show only {modes_covered} of {modes_total} modes, where a "
                         f"uniform sampler would show about {expected:.0f} (seed 000: 'only a few faces'). "
                         "Try lr 2e-4 with --beta1 0.5, --n-d 1, --label-smoothing 0.1, or roll back")
        return None
