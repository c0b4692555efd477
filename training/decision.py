"""What the run does after a failure: go on, roll back to a healthy checkpoint, or stop.

A step that sees a failure returns a `Decision` (from `decide`, the --on-failure rule) up to the
loop, which acts on it in one place (`Trainer.act`): nothing is unwound by an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig
from .monitor import Event


class Action(enum.Enum):
    GO_ON = "go on"
    ROLL_BACK = "roll back"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    action: Action
    event: Event | None = None  # the failure decided on (STOP: the one TrainingFailure carries)
    folder: Path | None = None  # ROLL_BACK: the healthy checkpoint to go back to
    note: str = ""  # what the run says when it goes on from a failure it cannot roll back


GO_ON = Decision(Action.GO_ON)


def decide(event: Event, cfg: TrainConfig, rollbacks: int,
           healthy: Callable[[], Path | None]) -> Decision:
    """The --on-failure rule for `event`, after `rollbacks` rollbacks so far; `healthy()` gives
    the newest healthy checkpoint (asked only when a rollback is the answer). Fatal failures
    (configuration bugs) stop whatever --on-failure says; NaN rolls back even in warn, as a run
    cannot train through it; a sighting (event.counted false) changes nothing."""
    if not event.counted:
        return GO_ON
    if event.fatal or cfg.on_failure == "stop":
        return Decision(Action.STOP, event)
    if cfg.on_failure != "rollback" and event.kind != "nan":
        return GO_ON
    folder = healthy()
    if folder is None and event.kind != "nan":  # nothing to go back to: go on, and say so
        return Decision(Action.GO_ON, event,
                        note=f"no healthy checkpoint to roll back to yet: going on from step {event.step}")
    if folder is None or rollbacks >= cfg.max_rollbacks:
        why = "no healthy checkpoint yet" if folder is None else f"{rollbacks} rollbacks already"
        return Decision(Action.STOP, Event(event.step, event.kind, f"{event.message}. Stopping: {why}",
                                           fatal=True))
    return Decision(Action.ROLL_BACK, event, folder)
