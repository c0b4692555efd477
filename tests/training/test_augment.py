"""DiffAugment (--augment), spectral normalisation (--spectral-norm) and lazy R1 (--r1-every)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_serve.errors import InputError
from training import Trainer
from training.augment import augment, parse_policy
from training.models import build


def test_every_policy_keeps_the_shape_and_lets_gradients_through():
    x = torch.rand(6, 3, 32, 32, requires_grad=True)
    out = augment(x * 2 - 1, parse_policy("color,translation,cutout"), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x * 2 - 1)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G learns through the augmentation


def test_translation_moves_pixels_and_cutout_blanks_a_square():
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    moved = augment(x, ["translation"], torch.Generator().manual_seed(0))
    assert torch.all(moved.sum((1, 2, 3)) == 1)  # one bright pixel each (4 px from the edge at most)
    assert (moved.reshape(64, -1).argmax(1) != 16 * 32 + 16).any()  # somewhere else for some
    cut = augment(torch.ones(64, 1, 32, 32), ["cutout"], torch.Generator().manual_seed(0))
    blanked = (cut == 0).sum((1, 2, 3))
    assert blanked.min() > 0 and blanked.max() <= 16 * 16


def test_augmentation_is_a_function_of_step_and_slot(tiny):
    t = Trainer(tiny(augment="translation,cutout"), echo=lambda m: None)
    x, seen = torch.rand(8, 3, 32, 32) * 2 - 1, lambda images: images
    t.step = 3
    first, again, other = t.judge(seen, x, 0), t.judge(seen, x, 0), t.judge(seen, x, 1)
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("policy", ["flip", "color,,zoom"])
def test_an_unknown_policy_names_the_choices(tiny, policy):
    with pytest.raises(InputError, match="--augment must be a comma-separated list of color, translation"):
        tiny(augment=policy).validate()


def test_spectral_norm_wraps_every_convolution_of_d(tiny):
    _, D = build(tiny(spectral_norm=True).validate())
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    _, D = build(tiny().validate())
    assert not any(hasattr(m, "parametrizations") for m in D.modules())


def test_lazy_r1_runs_every_nth_step_with_the_weight_scaled(tiny, monkeypatch):
    import training.steps as steps  # the step maths

    calls = []
    real_penalty = steps.r1_penalty
    monkeypatch.setattr(steps, "r1_penalty", lambda out, real, gamma: calls.append(gamma)
                        or real_penalty(out, real, gamma))
    Trainer(tiny(r1_gamma=2.0, r1_every=4, steps=8, spectral_norm=True, augment="color"),
            echo=lambda m: None).train()
    assert calls == [8.0, 8.0]  # steps 0 and 4, gamma x 4
    with pytest.raises(InputError, match="--r1-every >= 1"):
        tiny(r1_every=0).validate()
