"""Each detector, provoked in a tiny run, names the failure and what to try."""

from __future__ import annotations

import json

import pytest
import torch

from training import Trainer, TrainingFailure


def kinds(trainer: Trainer) -> set[str]:
    return {e.kind for e in trainer.events}


def test_misplaced_detach_in_the_g_step_stops_at_the_first_g_step(tiny, monkeypatch):
    monkeypatch.setattr(Trainer, "fake", lambda self, z: self.G_train(z).detach())  # seed 003's bug
    with pytest.raises(TrainingFailure) as err:
        Trainer(tiny(on_failure="warn")).train()
    assert err.value.event.kind == "no_gradient" and err.value.event.step == 0
    assert "D(fake.detach()) in the G step" in str(err.value)


class UnitRange(torch.utils.data.Dataset):
    """Real images left in [0, 1] (ToTensor without Normalize)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) * self.scale


@pytest.mark.parametrize("scale,match", [(1.0, r"i\.e\. \[0, 1\]"), (255.0, r"outside \[-1, 1\]")])
def test_real_data_in_the_wrong_range_fails_before_training(tiny, scale, match):
    with pytest.raises(TrainingFailure, match=match) as err:
        Trainer(tiny(), dataset=UnitRange(scale)).train()
    assert "mean 0.5, std 0.5" in str(err.value) and err.value.event.step == 0


def test_nan_rolls_back_to_the_last_healthy_checkpoint_with_half_the_lr(tiny):
    poisoned = []

    def poison(trainer: Trainer, step: int) -> None:
        if step == 5 and not poisoned:
            poisoned.append(step)
            with torch.no_grad():
                next(trainer.G.parameters()).fill_(float("nan"))

    t = Trainer(tiny(on_failure="rollback", warmup=100), hooks=(poison,))
    t.train()
    assert "nan" in kinds(t) and t.rollbacks == 1 and t.lr_scale == 0.5 and t.step == 12
    assert t.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert all(torch.isfinite(p).all() for p in t.G.parameters())
    logged = [json.loads(line) for line in (t.run_dir / "events.jsonl").read_text().splitlines()]
    assert logged[0]["kind"] == "nan" and logged[0]["step"] == 5


def test_nan_without_a_checkpoint_stops(tiny):
    def poison(trainer: Trainer, step: int) -> None:
        with torch.no_grad():
            next(trainer.D.parameters()).fill_(float("inf"))

    with pytest.raises(TrainingFailure, match="no healthy checkpoint yet"):
        Trainer(tiny(on_failure="rollback"), hooks=(poison,)).train()


def test_discriminator_domination(tiny):
    t = Trainer(tiny(lr_g=0.0, lr_d=5e-3, n_d=3, steps=40, window=10))
    t.train()
    event = next(e for e in t.events if e.kind == "d_dominates")
    assert "--label-smoothing" in event.message and "D(G(z))" in event.message


def _ignore_z(trainer: Trainer, step: int) -> None:
    with torch.no_grad():
        trainer.G.main[0].weight.zero_()  # the first layer no longer sees z


def test_mode_collapse_when_g_ignores_z(tiny):
    t = Trainer(tiny(), hooks=(_ignore_z,))
    t.train()
    event = next(e for e in t.events if e.kind == "mode_collapse")
    assert "only a few faces" in event.message and "near-duplicate" in event.message


def test_collapse_with_on_failure_stop_stops(tiny):
    with pytest.raises(TrainingFailure) as err:
        Trainer(tiny(on_failure="stop"), hooks=(_ignore_z,)).train()
    assert err.value.event.kind == "mode_collapse"


def test_black_output(tiny):
    def blacken(trainer: Trainer, step: int) -> None:
        with torch.no_grad():
            main = trainer.G.main
            main[-2].weight.copy_(-main[-2].weight.abs() - 0.05)  # output conv all negative
            main[-4].bias.fill_(5.0)  # the last BatchNorm feeds it large positive activations

    t = Trainer(tiny(), hooks=(blacken,))
    t.train()
    assert "black" in kinds(t)
    assert "mostly black" in next(e for e in t.events if e.kind == "black").message


def test_discriminator_that_scores_everything_the_same(tiny):
    def kill_d(trainer: Trainer, step: int) -> None:
        with torch.no_grad():
            trainer.D.main[-1].weight.zero_()

    t = Trainer(tiny(), hooks=(kill_d,))
    t.train()
    assert "same score" in next(e for e in t.events if e.kind == "d_constant").message


def test_healthy_tiny_run_fires_nothing_and_writes_a_report(tiny):
    t = Trainer(tiny(steps=8, ema=0.99, warmup=100))  # an untrained G is flat: no sample checks
    t.train()
    assert not [e for e in t.events if e.kind in ("no_gradient", "nan", "data_range")]
    report = (t.run_dir / "report.html").read_text()
    assert "Fixed-noise samples" in report and (t.run_dir / "best.safetensors").exists()


def test_repeated_nan_gives_up_after_max_rollbacks(tiny):
    def poison(trainer: Trainer, step: int) -> None:
        if step == 5:
            with torch.no_grad():
                next(trainer.G.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingFailure, match="2 rollbacks already"):
        Trainer(tiny(on_failure="rollback", warmup=100, max_rollbacks=2), hooks=(poison,)).train()


def test_options_hinge_lsgan_smoothing_r1_channels_last_and_curves(tiny):
    for kw in ({"loss": "hinge"}, {"loss": "lsgan", "label_smoothing": 0.1},
               {"r1_gamma": 1.0, "n_d": 2, "lr_d": 1e-4, "channels_last": True}):
        t = Trainer(tiny(steps=4, warmup=100, **kw))
        t.train()
        assert t.step == 4 and all(torch.isfinite(p).all() for p in t.G.parameters())
    assert (t.run_dir / "curves.png").exists()  # matplotlib is part of the train extra
