"""What a failure makes the run do (decide, the --on-failure rule) and the loop acting on it: a
rollback is a Decision a step returns, and the run goes on from the restored checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training import Trainer, TrainingFailure, loop
from training.checkpoints import checkpoints, load_state
from training.decision import GO_ON, Action, Decision, decide
from training.monitor import Event

DEAD_D = Event(5, "d_constant", "the discriminator gives every input the same score")
NAN = Event(5, "nan", "NaN/Inf in D loss at step 5")
BUG = Event(0, "no_gradient", "the generator received no gradient", fatal=True)
HEALTHY = Path("run/ckpt/step_0000004")


@pytest.mark.parametrize("on_failure,event,rollbacks,healthy,action", [
    ("warn", DEAD_D, 0, HEALTHY, Action.GO_ON),  # said and reported, never acted on
    ("warn", NAN, 0, HEALTHY, Action.ROLL_BACK),  # NaN cannot be trained through, even in warn
    ("rollback", DEAD_D, 0, HEALTHY, Action.ROLL_BACK),
    ("rollback", DEAD_D, 3, HEALTHY, Action.STOP),  # --max-rollbacks 3 used up
    ("rollback", DEAD_D, 0, None, Action.GO_ON),  # nothing to go back to yet
    ("rollback", NAN, 0, None, Action.STOP),
    ("stop", DEAD_D, 0, HEALTHY, Action.STOP),
    ("warn", BUG, 0, HEALTHY, Action.STOP),  # a configuration bug stops whatever --on-failure says
])
def test_the_on_failure_rule(tiny, on_failure, event, rollbacks, healthy, action):
    decision = decide(event, tiny(on_failure=on_failure), rollbacks, lambda: healthy)
    assert decision.action is action
    if action is Action.ROLL_BACK:
        assert decision.folder == HEALTHY and decision.event is event


def test_a_stop_after_rollbacks_says_why_and_is_fatal(tiny):
    used_up = decide(DEAD_D, tiny(on_failure="rollback"), 3, lambda: HEALTHY)
    assert used_up.event.fatal and used_up.event.message.endswith("Stopping: 3 rollbacks already")
    no_target = decide(NAN, tiny(on_failure="rollback"), 0, lambda: None)
    assert no_target.event.message.endswith("Stopping: no healthy checkpoint yet")
    going_on = decide(DEAD_D, tiny(on_failure="rollback"), 0, lambda: None)
    assert going_on.note == "no healthy checkpoint to roll back to yet: going on from step 5"


def test_checkpoints_are_read_only_when_a_rollback_is_the_answer(tiny):
    asked: list[int] = []

    def healthy() -> Path:
        asked.append(1)
        return HEALTHY

    sighting = Event(5, "mode_collapse", "seen", note="inside the warm-up")
    for on_failure, event in (("rollback", sighting), ("warn", DEAD_D), ("stop", NAN), ("rollback", BUG)):
        assert decide(event, tiny(on_failure=on_failure), 0, healthy).action is not Action.ROLL_BACK
    assert asked == []


def test_acting_on_a_rollback_restores_the_checkpoint_and_keeps_what_happened(tiny):
    messages: list[str] = []
    t = Trainer(tiny(steps=8), echo=messages.append)
    t.train()  # healthy checkpoints at steps 4 and 8
    four = checkpoints(t.run_dir)[0]
    t.events.append(DEAD_D)
    best = t.best
    t.act(Decision(Action.ROLL_BACK, DEAD_D, four))  # returns: nothing is unwound
    saved = load_state(four)
    assert t.step == 4 and t.rollbacks == 1 and t.lr_scale == 0.5 and t.healthy()
    assert all(torch.equal(w, saved["G"][k]) for k, w in t.G.state_dict().items())
    assert all(torch.equal(w, saved["D"][k]) for k, w in t.D.state_dict().items())
    assert t.history == json.loads(saved["history"])  # the curves go back to step 4 ...
    assert t.events[-1] is DEAD_D and t.best == best  # ... what happened and best.safetensors stay
    assert messages[-1] == "rolled back to step 4 (step_0000004); learning rates x0.5"
    t.act(GO_ON)
    assert t.step == 4 and t.rollbacks == 1
    with pytest.raises(TrainingFailure) as err:
        t.act(Decision(Action.STOP, NAN))
    assert err.value.event is NAN


def test_the_loop_goes_on_from_a_rollback_a_step_returns(tiny, monkeypatch):
    # a warn run, whose rule never rolls back for a dead D: here it answers the first failure
    # with a rollback, which the step returns and the loop acts on
    def roll_back_once(event, cfg, rollbacks, healthy):
        return Decision(Action.ROLL_BACK, event, healthy()) if rollbacks == 0 else GO_ON

    def kill_d(trainer: Trainer, step: int) -> None:
        if step == 5 and trainer.rollbacks == 0:
            with torch.no_grad():
                trainer.D.main[-1].weight.zero_()  # every input gets the score 0

    monkeypatch.setattr(loop, "decide", roll_back_once)
    messages: list[str] = []
    t = Trainer(tiny(on_failure="warn", warmup=100), hooks=(kill_d,), echo=messages.append)
    assert t.train() == t.run_dir
    assert t.step == 12 and t.rollbacks == 1 and t.lr_scale == 0.5
    assert "rolled back to step 4 (step_0000004); learning rates x0.5" in messages
    assert [e.kind for e in t.events if e.counted] == ["d_constant"]
    rows = [json.loads(line) for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))  # replayed steps once, at half the lr
    assert [r["lr_scale"] for r in rows] == [1.0] * 4 + [0.5] * 8
    assert all(load_state(c)["healthy"] for c in checkpoints(t.run_dir))
