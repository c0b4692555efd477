"""Each detector, provoked in a tiny run, names the failure, its likely cause and what to try."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from training import Trainer, TrainingFailure, monitor, steps
from training.monitor import Monitor


def failures(trainer: Trainer) -> list:
    """The events that counted (sightings inside the warm-up or seen once carry a note)."""
    return [e for e in trainer.events if e.counted]


def kinds(trainer: Trainer) -> set[str]:
    return {e.kind for e in failures(trainer)}


def first(trainer: Trainer, kind: str):
    return next(e for e in failures(trainer) if e.kind == kind)


def test_misplaced_detach_in_the_g_step_stops_at_the_first_g_step(tiny, monkeypatch):
    real_g_step = steps.g_step
    # seed 003's bug, injected: `g_pred = d_model(fake_img.detach())` in the G step
    monkeypatch.setattr(steps, "g_step", lambda nets, setup, step, fake, check:
                        real_g_step(nets, setup, step, fake.detach(), check))
    with pytest.raises(TrainingFailure) as err:
        Trainer(tiny(on_failure="warn")).train()
    assert err.value.event.kind == "no_gradient" and err.value.event.step == 0
    assert "D(fake.detach()) in the G step" in str(err.value)
    assert "detach only in the D step" in str(err.value)


def test_the_normal_loop_detaches_in_the_d_step_only(tiny):
    t = Trainer(tiny(steps=1))
    t.train()
    assert "no_gradient" not in kinds(t)
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in t.G.parameters())


class UnitRange(torch.utils.data.Dataset):
    """Real images left in [0, 1] (ToTensor without Normalize), or in [0, 255]."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) * self.scale


@pytest.mark.parametrize("scale,match", [(1.0, r"i\.e\. \[0, 1\]"), (255.0, r"outside the \[-1, 1\]")])
def test_real_data_in_the_wrong_range_fails_before_training(tiny, scale, match):
    t = Trainer(tiny(), dataset=UnitRange(scale))
    with pytest.raises(TrainingFailure, match=match) as err:
        t.train()
    assert "mean 0.5 and std 0.5" in str(err.value) and err.value.event.step == 0
    assert t.step == 0 and t.history == []  # not a single step was taken


def _poison_once_at(step_to_poison: int, module: str = "G"):
    done = []

    def poison(trainer: Trainer, step: int) -> None:
        if step == step_to_poison and not done:
            done.append(step)
            with torch.no_grad():
                next(getattr(trainer, module).parameters()).fill_(float("nan"))
    return poison


def test_nan_rolls_back_to_the_last_healthy_checkpoint_with_half_the_lr(tiny):
    t = Trainer(tiny(on_failure="warn", warmup=100), hooks=(_poison_once_at(5),))
    # NaN rolls back even in warn
    t.train()
    assert "nan" in kinds(t) and t.rollbacks == 1 and t.lr_scale == 0.5 and t.step == 12
    assert t.opt_g.param_groups[0]["lr"] == pytest.approx(t.cfg.lr_g / 2)
    assert t.opt_d.param_groups[0]["lr"] == pytest.approx(t.cfg.lr_d / 2)
    assert all(torch.isfinite(p).all() for p in t.G.parameters())
    logged = [json.loads(line) for line in (t.run_dir / "events.jsonl").read_text().splitlines()]
    logged = [e for e in logged if not e["note"]]  # failures; the untrained G's sightings are notes
    assert logged[0]["kind"] == "nan" and logged[0]["step"] == 5
    assert "halve the learning rates" in logged[0]["message"]
    assert "rollback" in (t.run_dir / "report.html").read_text()


def test_nan_without_a_checkpoint_stops(tiny):
    def poison(trainer: Trainer, step: int) -> None:
        with torch.no_grad():
            next(trainer.D.parameters()).fill_(float("inf"))

    with pytest.raises(TrainingFailure, match="no healthy checkpoint yet"):
        Trainer(tiny(on_failure="rollback"), hooks=(poison,)).train()


def test_repeated_nan_gives_up_after_max_rollbacks(tiny):
    def poison(trainer: Trainer, step: int) -> None:
        if step == 5:
            with torch.no_grad():
                next(trainer.G.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingFailure, match="2 rollbacks already"):
        Trainer(tiny(on_failure="rollback", warmup=100, max_rollbacks=2), hooks=(poison,)).train()


def test_discriminator_domination(tiny):
    t = Trainer(tiny(lr_g=0.0, lr_d=5e-3, n_d=3, steps=40, window=10, sample_every=100))
    t.train()
    event = first(t, "d_dominates")
    assert "--label-smoothing" in event.message and "D(G(z))" in event.message
    assert "G's loss climbs" in event.message


def _fires(g_losses: np.ndarray) -> list[int]:
    # a D that wins throughout (loss at its floor, D(G(z)) 0.01): at which steps is it a failure?
    m, fired = Monitor(window=200, warmup=0), []
    for step, g in enumerate(g_losses):
        m.record(0.01, float(g), 0.01)
        if m.check_domination(step) is not None:
            fired.append(step)
    return fired


def test_domination_needs_g_loss_to_climb_beyond_noise():
    noise = np.random.default_rng(0).normal(0.0, 1.5, 4000)  # G's loss in the bundled run: ~6.5 +- 1.5
    assert _fires(6.5 + noise) == []  # steady: D wins, G still learns (a half-window comparison fired)
    climbing = _fires(np.linspace(1.0, 10.0, 1000) + noise[:1000])  # seed 002's curve
    assert climbing and climbing[0] < 400  # a real climb is named within two windows


def test_after_a_rollback_domination_is_judged_on_a_fresh_window(tiny, monkeypatch):
    # with half and a quarter of the lr, the tiny run's G loss climbs ~5% a window: count that
    monkeypatch.setattr(monitor, "CLIMB_SHARE", 0.04)
    messages: list[str] = []
    cfg = tiny(lr_g=0.0, lr_d=5e-3, n_d=3, steps=80, window=10, sample_every=100, on_failure="rollback",
               max_rollbacks=2)
    t = Trainer(cfg, echo=messages.append)
    with pytest.raises(TrainingFailure, match="2 rollbacks already"):
        t.train()
    restored = [int(m.split()[4]) for m in messages if m.startswith("rolled back to step")]
    fired = [e.step for e in t.events if e.kind == "d_dominates"]
    assert len(restored) == 2 and len(fired) == 3
    # the restored checkpoint's window no longer re-fires at once: a full window of new steps first
    assert all(f >= r + cfg.window - 1 for r, f in zip(restored, fired[1:], strict=True))


def _ignore_z(trainer: Trainer, step: int) -> None:
    with torch.no_grad():
        trainer.G.main[0].weight.zero_()  # the first layer no longer sees z


def _learnt(tiny, **kw):
    """A tiny run long enough (175 steps, ~3 s) for G's samples to differ: checked at steps 150 and
    175 (a failure counts when two checks in a row see it)."""
    return tiny(g_width=16, d_width=16, lr_g=1e-3, lr_d=1e-3, steps=175, ckpt_every=175,
                sample_every=150, warmup=150, log_every=25, **kw)


def test_mode_collapse_with_a_one_dimensional_latent_but_not_with_100(tiny):
    healthy = Trainer(_learnt(tiny))
    healthy.train()
    assert not failures(healthy) and healthy.evals[-1]["duplicates"] < 0.3
    collapsed = Trainer(_learnt(tiny, z_dim=1, out=str(healthy.run_dir) + "_z1"))  # seed 002: latent_dim = 1
    collapsed.train()
    event = first(collapsed, "mode_collapse")
    assert "only a few faces" in event.message and "near-duplicate" in event.message


def test_mode_collapse_when_g_stops_using_z(tiny):
    late = lambda trainer, step: step >= 125 and _ignore_z(trainer, step)  # noqa: E731
    t = Trainer(_learnt(tiny), hooks=(late,))
    t.train()
    assert "a larger --z-dim" in first(t, "mode_collapse").message


def test_collapse_with_on_failure_stop_stops(tiny):
    with pytest.raises(TrainingFailure) as err:
        Trainer(tiny(on_failure="stop", warmup=4), hooks=(_ignore_z,)).train()
    # seen at the checks of steps 4 and 8: it counts at the second (PERSIST_CHECKS)
    assert err.value.event.kind == "mode_collapse" and err.value.event.step == 8


def _kill_d_from(first_step: int):
    def kill_d(trainer: Trainer, step: int) -> None:
        if step >= first_step and trainer.rollbacks == 0:
            with torch.no_grad():
                trainer.D.main[-1].weight.zero_()  # every input gets the score 0
    return kill_d


def test_a_failure_with_rollback_restores_and_halves_the_lr(tiny):
    t = Trainer(tiny(on_failure="rollback", warmup=100), hooks=(_kill_d_from(5),))
    t.train()
    assert "d_constant" in kinds(t) and t.rollbacks == 1 and t.lr_scale == 0.5 and t.step == 12
    assert t.healthy() and t.best["step"] == 12


def test_no_checkpoint_after_a_warning_counts_as_best(tiny):
    t = Trainer(tiny(on_failure="warn", warmup=100), hooks=(_kill_d_from(5),))
    t.train()
    assert "d_constant" in kinds(t) and t.rollbacks == 0 and t.best["step"] == 4
    assert json.loads((t.run_dir / "best.json").read_text())["step"] == 4
    import gan_serve

    assert gan_serve.load(t.run_dir / "best.safetensors").spec.training["step"] == 4
    from training.checkpoints import checkpoints, load_state

    assert [bool(load_state(c)["healthy"]) for c in checkpoints(t.run_dir)] == [True, False, False]


def _set_output(kind: str):
    def hook(trainer: Trainer, step: int) -> None:
        with torch.no_grad():
            main = trainer.G.main
            if kind == "black":
                main[-2].weight.copy_(-main[-2].weight.abs() - 0.05)  # output conv all negative
                main[-4].bias.fill_(5.0)  # the last BatchNorm feeds it large positive activations
            elif kind == "saturated":
                main[-2].weight.copy_(main[-2].weight.abs() + 0.5)  # every pixel pushed to white
            else:
                main[-2].weight.zero_()  # tanh(0): one flat grey
    return hook


@pytest.mark.parametrize("kind,words", [("black", "mostly black"), ("saturated", "saturated"),
                                        ("flat", "a single flat colour")])
def test_black_saturated_and_flat_output(tiny, kind, words):
    t = Trainer(tiny(), hooks=(_set_output(kind),))
    t.train()
    assert kind in kinds(t) and words in first(t, kind).message
    assert "Lower the learning rates" in first(t, kind).message


def test_discriminator_that_scores_everything_the_same(tiny):
    t = Trainer(tiny(), hooks=(_kill_d_from(0),))
    t.train()
    assert "same score" in first(t, "d_constant").message and "--lr-d" in first(t, "d_constant").message


def test_avatars_mode_coverage_detector():
    m = Monitor(window=10, warmup=0)
    assert m.check_coverage(100, modes_covered=3, modes_total=240, good=1000).kind == "mode_collapse"
    assert m.check_coverage(100, modes_covered=230, modes_total=240, good=1000) is None
    assert m.check_coverage(100, modes_covered=3, modes_total=240, good=20) is None  # too few good ones
    early = Monitor(window=10, warmup=500)
    seen = early.confirm(100, "coverage", [early.check_coverage(100, 3, 240, 1000)])
    assert seen[0].note == "inside the warm-up" and not seen[0].counted


def test_healthy_tiny_run_fires_nothing_and_writes_a_report(tiny):
    t = Trainer(tiny(steps=8, ema=0.99, warmup=100))  # an untrained G is flat: no sample checks yet
    t.train()
    assert not failures(t)
    report = (t.run_dir / "report.html").read_text()
    assert "Fixed-noise samples" in report and (t.run_dir / "best.safetensors").exists()
    assert (t.run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kw", [{"loss": "hinge"}, {"loss": "lsgan", "label_smoothing": 0.1},
                                {"r1_gamma": 1.0, "n_d": 2, "lr_d": 1e-4, "channels_last": True},
                                {"precision": "bf16", "label_smoothing": 0.1},
                                {"top_k": 0.5, "pack": 2}])
def test_options_train(tiny, kw):
    t = Trainer(tiny(steps=4, warmup=100, **kw))
    t.train()
    assert t.step == 4 and all(torch.isfinite(p).all() for p in t.G.parameters()) and not failures(t)


# -- persistence: a failure counts once it persists; a dip never stops a run ---------------------
def _sighting(kind: str = "mode_collapse") -> list:
    return [monitor.Event(0, kind, "seen")]


def test_a_sighting_counts_at_the_second_check_in_a_row_past_the_warm_up():
    m = Monitor(window=10, warmup=100)
    assert m.confirm(50, "samples", _sighting())[0].note == "inside the warm-up"
    assert m.confirm(100, "samples", _sighting())[0].counted  # the warm-up check counts as the first
    m = Monitor(window=10, warmup=0)
    assert not m.confirm(10, "samples", _sighting())[0].counted  # once: a note
    assert m.confirm(20, "samples", []) == [] and not m.suspect(20)  # gone: the count starts again
    assert not m.confirm(30, "samples", _sighting())[0].counted and m.suspect(30)
    assert m.confirm(40, "samples", _sighting())[0].counted
    assert not m.confirm(50, "samples", _sighting("black"))[0].counted  # another kind starts at one
    assert not m.confirm(50, "coverage", _sighting())[0].counted  # each source has its own count


def _collapse_between(first_step: int, last_step: int):
    """G ignores z from `first_step` to `last_step`, then gets its weights back: a transient dip."""
    saved: dict = {}

    def hook(trainer: Trainer, step: int) -> None:
        if step == first_step:
            saved["w"] = trainer.G.main[0].weight.detach().clone()
            _ignore_z(trainer, step)
        elif step == last_step:
            with torch.no_grad():
                trainer.G.main[0].weight.copy_(saved["w"])
    return hook


def test_a_transient_collapse_is_shown_and_never_stops_the_run(tiny):
    cfg = _learnt(tiny, on_failure="stop")
    cfg = dataclasses.replace(cfg, sample_every=25, warmup=125)
    t = Trainer(cfg, hooks=(_collapse_between(149, 150),))  # seen at the check of step 150 only
    t.train()
    assert t.step == 175 and not failures(t)
    seen = [e for e in t.events if e.kind == "mode_collapse" and e.step >= cfg.warmup]
    assert [e.step for e in seen] == [150] and "1 check(s) in a row" in seen[0].note
    assert "seen at step 150" in (t.run_dir / "report.html").read_text()


def test_a_collapse_of_the_ema_alone_does_not_count(tiny):
    def zero_ema(trainer: Trainer, step: int) -> None:
        if step >= 140:
            with torch.no_grad():
                trainer.G_ema.main[0].weight.zero_()  # the EMA G ignores z, the raw G does not

    cfg = dataclasses.replace(_learnt(tiny, ema=0.99), sample_every=25, warmup=125)
    t = Trainer(cfg, hooks=(zero_ema,))
    t.train()
    assert t.evals[-1]["diversity"] < 0.01  # the served (EMA) samples are one image
    assert "mode_collapse" not in kinds(t)


def test_rollback_without_a_healthy_checkpoint_warns_and_goes_on(tiny):
    messages: list[str] = []
    t = Trainer(tiny(on_failure="rollback"), hooks=(_kill_d_from(0),), echo=messages.append)
    t.train()
    assert t.step == 12 and t.rollbacks == 0 and "d_constant" in kinds(t)
    assert any("no healthy checkpoint to roll back to yet: going on" in m for m in messages)


def test_one_alarm_marks_only_its_own_checkpoint_unhealthy(tiny):
    def kill_d_once(trainer: Trainer, step: int) -> None:
        if step in (5, 6):
            _kill_d_from(0)(trainer, step)

    t = Trainer(tiny(on_failure="warn", warmup=100), hooks=(kill_d_once,))
    t.train()
    from training.checkpoints import checkpoints, load_state

    assert "d_constant" in kinds(t)
    assert [bool(load_state(c)["healthy"]) for c in checkpoints(t.run_dir)] == [True, False, True]
    assert t.best["step"] == 12


def test_the_first_checkpoint_comes_with_the_first_sample_check(tiny):
    t = Trainer(tiny(steps=12, sample_every=3, ckpt_every=8, keep=5))
    t.train()
    from training.checkpoints import checkpoints

    assert [c.name for c in checkpoints(t.run_dir)] == ["step_0000003", "step_0000008", "step_0000012"]


def test_inside_the_warm_up_the_report_shows_what_the_checks_saw(tiny):
    t = Trainer(tiny(warmup=100, on_failure="stop"), hooks=(_ignore_z,))
    t.train()  # never stops: nothing counts inside the warm-up
    assert not failures(t) and t.step == 12
    report = (t.run_dir / "report.html").read_text()
    assert "mode collapse</b> seen at step 4, inside the warm-up" in report
