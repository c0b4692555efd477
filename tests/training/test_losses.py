import math

import pytest
import torch

from gan_serve.errors import InputError
from training.config import TrainConfig
from training.losses import d_loss, d_loss_floor, g_loss, top_k


def test_top_k_keeps_the_fakes_d_rates_most_real_and_only_they_pull_g():
    torch.manual_seed(0)
    fake = torch.randn(8, 3, 4, 4, requires_grad=True)
    logits = fake.mean((1, 2, 3))
    kept = set(logits.argsort(descending=True)[:4].tolist())
    g_loss(top_k(logits, 0.5), "ns").backward()
    pulled = {i for i in range(8) if fake.grad[i].abs().sum() > 0}
    assert pulled == kept


@pytest.mark.parametrize(("share", "n"), [(1.0, 8), (0.5, 4), (0.3, 2), (0.01, 1)])
def test_top_k_size(share, n):
    logits = torch.arange(8.0)
    out = top_k(logits, share)
    assert len(out) == n and out.min() == 8 - n


def test_top_k_flag_range():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(InputError, match="--top-k must be in"):
            TrainConfig(top_k=bad).validate()
    TrainConfig(top_k=0.25).validate()


def test_d_loss_floor_is_the_smoothed_target_entropy():
    real = torch.full((4,), math.log(9.0))  # sigmoid = 0.9, the smoothed target
    fake = torch.full((4,), -50.0)
    assert d_loss(real, fake, "ns", 0.1).item() == pytest.approx(d_loss_floor("ns", 0.1), abs=1e-6)
    assert d_loss_floor("hinge", 0.1) == 0.0
