"""Learning rates over a run (--lr-decay-from, rollbacks) and new runs from old weights
(--init-from): the loop's and checkpoints' parts that decide where training starts and how
fast it moves."""

from __future__ import annotations

import pytest
import torch

from gan_serve.errors import InputError
from training import TrainConfig, Trainer
from training.checkpoints import checkpoints, load_state


def _record_lr(seen: list[tuple[float, float]]):
    def hook(trainer: Trainer, step: int) -> None:
        seen.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
    return hook


def test_lr_falls_linearly_to_zero_from_the_decay_step(tiny):
    seen: list[tuple[float, float]] = []
    t = Trainer(tiny(steps=8, lr_decay_from=4, lr_g=4e-4, lr_d=2e-4), echo=lambda m: None,
                hooks=(_record_lr(seen),))
    t.train()
    g, d = zip(*seen, strict=True)
    assert g == pytest.approx([4e-4] * 5 + [3e-4, 2e-4, 1e-4])  # steps 0-4 at full rate, then down
    assert d == pytest.approx([x / 2 for x in g])  # both networks, each from its own rate
    assert t.history[-1]["lr_scale"] == pytest.approx(0.25)  # the curves show the schedule


def test_constant_lr_by_default_and_rollbacks_still_halve_it(tiny):
    seen: list[tuple[float, float]] = []
    t = Trainer(tiny(steps=4), echo=lambda m: None, hooks=(_record_lr(seen),))
    t.train()
    assert [g for g, _ in seen] == pytest.approx([t.cfg.lr_g] * 4) and t.cfg.lr_g == TrainConfig().lr_g
    decaying = Trainer(tiny(steps=8, lr_decay_from=4), echo=lambda m: None)
    decaying.lr_scale = 0.5  # what a rollback leaves: the schedule goes on at half height
    assert decaying.lr_factor(2) == 0.5 and decaying.lr_factor(6) == pytest.approx(0.25)


def test_lr_decay_must_start_inside_the_run(tiny):
    for bad in (-1, 12, 20):
        with pytest.raises(InputError, match="--lr-decay-from must be >= 0 and below --steps"):
            tiny(lr_decay_from=bad).validate()


def test_init_from_starts_a_new_run_from_another_runs_weights(tiny, tmp_path):
    source = Trainer(tiny(steps=4, ema=0.9), echo=lambda m: None)
    source.train()
    saved = load_state(checkpoints(source.run_dir)[-1])
    for init_from in (source.run_dir, checkpoints(source.run_dir)[-1]):  # a run folder or a checkpoint
        out = tmp_path / f"new-{init_from.name}"
        # lr 0: the weights stay what was loaded, so they can be compared after a step
        t = Trainer(tiny(steps=2, ema=0.9, lr_g=0.0, lr_d=0.0, init_from=str(init_from), out=str(out)),
                    echo=lambda m: None)
        t.train()
        assert t.step == 2 and [p.name for p in checkpoints(out)] == ["step_0000002"]
        for key, module in (("G", t.G), ("D", t.D)):
            params = dict(module.named_parameters())
            assert all(torch.equal(params[name], saved[key][name]) for name in params), key
        for name, p in t.G_ema.named_parameters():  # the loaded EMA, two steps of decay 0.9 on (warm)
            g, ema = saved["G"][name], saved["G_ema"][name]
            assert torch.allclose(p, g + 0.81 * (ema - g), atol=1e-7), name
        assert load_state(checkpoints(out)[-1])["opt_g"]["state"][0]["step"] == 2  # fresh optimizers


def test_init_from_names_the_shape_that_differs_or_the_missing_checkpoint(tiny, tmp_path):
    source = Trainer(tiny(steps=4), echo=lambda m: None)
    source.train()
    with pytest.raises(InputError, match=r"other shapes: --g-width 16 \(it has 8\), --pack 2 \(it has 1\)"):
        Trainer(tiny(g_width=16, pack=2, init_from=str(source.run_dir), out=str(tmp_path / "a")),
                echo=lambda m: None).train()
    with pytest.raises(InputError, match="neither a gan-train checkpoint folder.*nor a generator file"):
        Trainer(tiny(init_from=str(tmp_path / "nothing"), out=str(tmp_path / "b")),
                echo=lambda m: None).train()


def test_init_from_a_bare_generator_file_loads_g_and_starts_d_fresh(tiny, tmp_path):
    source = Trainer(tiny(steps=4), echo=lambda m: None)
    source.train()
    trained = source.G.state_dict()
    torch.save(trained, tmp_path / "g_epoch_85.pth")  # the pytorch/examples way: netG's state dict
    said: list[str] = []
    t = Trainer(tiny(steps=1, lr_g=0.0, lr_d=0.0, init_from=str(tmp_path / "g_epoch_85.pth"),
                     out=str(tmp_path / "new")), echo=said.append)
    t.train()
    assert any("the generator" in m and "D starts fresh" in m for m in said)
    g = dict(t.G.named_parameters())
    assert all(torch.equal(g[name], trained[name]) for name in g)
    fresh_d = Trainer(tiny(out=str(tmp_path / "fresh")), echo=lambda m: None).D  # the DCGAN init of D
    d = dict(fresh_d.named_parameters())
    assert all(torch.equal(p, d[name]) for name, p in t.D.named_parameters())
    with pytest.raises(InputError, match=r"its generator is DCGAN z_dim=100 widths=32-16-8.*"
                                         r"pass --z-dim 100 --g-width 8 --resolution 32 --channels 3"):
        Trainer(tiny(g_width=16, init_from=str(tmp_path / "g_epoch_85.pth"), out=str(tmp_path / "c")),
                echo=lambda m: None).train()


def test_resume_may_start_the_lr_decay_from_its_own_step_on(tiny):
    Trainer(tiny(steps=4), echo=lambda m: None).train()  # constant rates, stopped at step 4
    said: list[str] = []
    seen: list[tuple[float, float]] = []
    t = Trainer(tiny(steps=8, lr_decay_from=4), resume=True, echo=said.append, hooks=(_record_lr(seen),))
    t.train()
    full = TrainConfig().lr_g
    assert [g for g, _ in seen] == pytest.approx([full, full * 0.75, full * 0.5, full * 0.25])
    assert any("--lr-decay-from 4: from step 4 both learning rates fall linearly to 0 at step 8" in m
               for m in said)
    assert load_state(checkpoints(t.run_dir)[-1])["config"].count('"lr_decay_from": 4') == 1
    with pytest.raises(InputError, match="--lr-decay-from 6 is before the resumed run's step 8"):
        Trainer(tiny(steps=12, lr_decay_from=6), resume=True, echo=lambda m: None)
    said.clear()  # a second anneal, from where the first one ended
    Trainer(tiny(steps=12, lr_decay_from=8), resume=True, echo=said.append)
    assert "fall linearly to 0 at step 12 (before: from step 4)" in said[-1]
