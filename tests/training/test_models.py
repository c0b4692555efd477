"""The D options users reach for against D domination and mode collapse: a norm-free D,
instance noise and PacGAN packing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_serve.errors import InputError
from training import Trainer
from training.checkpoints import checkpoints
from training.models import build


def test_d_without_batch_norm_and_packed_input(tiny):
    _, D = build(tiny(d_batch_norm=False, pack=2).validate())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    first = next(m for m in D.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 6  # two RGB images stacked on the channel axis
    _, D = build(tiny().validate())
    assert any(isinstance(m, nn.BatchNorm2d) for m in D.modules())  # the DCGAN default keeps it


def test_pack_and_noise_train_and_checkpoint(tiny):
    t = Trainer(tiny(pack=4, instance_noise=0.2, d_batch_norm=False, steps=4), echo=lambda m: None)
    t.train()
    assert len(checkpoints(t.run_dir)) == 1 and t.step == 4
    assert t.history[-1]["d_real"] == t.history[-1]["d_real"]  # finite


def test_instance_noise_is_replayable_and_fades_to_zero(tiny):
    t = Trainer(tiny(instance_noise=0.5, steps=10), echo=lambda m: None)
    zeros = torch.zeros(8, 3, 32, 32)
    seen = lambda x: x  # noqa: E731 - D that returns what it was shown
    t.step = 0
    first, again, other = t.judge(seen, zeros, 0), t.judge(seen, zeros, 0), t.judge(seen, zeros, 1)
    assert torch.equal(first, again) and not torch.equal(first, other)  # a function of (step, slot)
    assert first.std().item() == pytest.approx(0.5, rel=0.05)
    t.step = 5
    assert t.judge(seen, zeros, 0).std().item() == pytest.approx(0.25, rel=0.05)  # linear fade
    t.step = 10
    assert torch.equal(t.judge(seen, zeros, 0), zeros)  # clean images by the last step


def test_instance_noise_can_fade_out_before_the_last_step(tiny):
    t = Trainer(tiny(instance_noise=0.5, instance_noise_steps=4, steps=10), echo=lambda m: None)
    zeros, seen = torch.zeros(8, 3, 32, 32), lambda x: x
    t.step = 2
    assert t.judge(seen, zeros, 0).std().item() == pytest.approx(0.25, rel=0.05)
    for t.step in (4, 7):  # clean images from step 4 on, while the run goes on to step 10
        assert torch.equal(t.judge(seen, zeros, 0), zeros)
    with pytest.raises(InputError, match="--instance-noise-steps must be >= 0"):
        tiny(instance_noise_steps=-1).validate()


def test_pack_must_divide_the_batch(tiny):
    with pytest.raises(InputError, match="--pack must be >= 1 and divide --batch-size"):
        tiny(pack=3).validate()


@pytest.mark.parametrize("native,want", [(True, ("bf16", True)), (False, ("fp32", False))])
def test_precision_auto_follows_the_cpus_bf16_hardware(monkeypatch, native, want):
    from gan_serve.backends import torch_backend
    from training.models import choose_precision

    monkeypatch.setattr(torch_backend, "cpu_bf16_is_native", lambda: native)
    precision, channels_last, why = choose_precision("auto", False, "cpu")
    assert (precision, channels_last) == want and why.startswith(f"precision auto: {want[0]}")
    assert ("computes bf16 in hardware" if native else "has no AMX or AVX512-BF16") in why
    assert choose_precision("fp32", False, "cpu")[:2] == ("fp32", False)  # asked for: as given
    assert choose_precision("bf16", True, "cpu")[:2] == ("bf16", True)


@pytest.mark.parametrize("bf16,want", [(True, ("bf16", True)), (False, ("fp32", False))])
def test_precision_auto_on_a_gpu(monkeypatch, bf16, want):
    from training.models import choose_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert choose_precision("auto", False, "cuda")[:2] == want


def test_the_trainer_runs_what_auto_chose(tiny, monkeypatch):
    from gan_serve.backends import torch_backend

    monkeypatch.setattr(torch_backend, "cpu_bf16_is_native", lambda: True)
    messages: list[str] = []
    t = Trainer(tiny(steps=1, precision="auto"), echo=messages.append)
    assert (t.precision, t.channels_last) == ("bf16", True)
    assert t.G.main[0].weight.is_contiguous(memory_format=torch.channels_last)
    t.train()
    assert any("precision auto: bf16 autocast + channels_last" in m for m in messages)
    assert t.cfg.precision == "auto"  # saved as asked: a resume elsewhere chooses again
