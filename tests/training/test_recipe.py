"""--recipe: the measured default, or the DCGAN paper's settings one flag away."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from gan_serve.errors import InputError
from training import TrainConfig, Trainer
from training import checkpoints as ck
from training.cli import app
from training.config import DCGAN_RECIPE


def test_dcgan_sets_the_paper_settings():
    cfg = TrainConfig(recipe="dcgan").with_recipe()
    assert {k: getattr(cfg, k) for k in DCGAN_RECIPE} == DCGAN_RECIPE
    assert cfg.loss == "ns" and cfg.d_batch_norm and cfg.pack == 1 and cfg.ema == 0.0
    assert TrainConfig().with_recipe() == TrainConfig()  # the default recipe is the defaults


def test_a_flag_given_with_the_recipe_wins():
    cfg = TrainConfig(recipe="dcgan", ema=0.99, lr_d=3e-4).with_recipe()
    assert cfg.ema == 0.99 and cfg.lr_d == 3e-4 and cfg.loss == "ns"
    # a flag equal to the default wins too when it was given (the CLI says which were)
    default = TrainConfig().lr_d
    assert default == TrainConfig().lr_g == 8e-4 and DCGAN_RECIPE["lr_d"] == 2e-4  # the documented default
    given = TrainConfig(recipe="dcgan", lr_d=default).with_recipe(given={"lr_d"})
    assert given.lr_d == default and given.lr_g == 2e-4
    assert TrainConfig(recipe="dcgan", lr_d=default).with_recipe().lr_d == 2e-4  # not given: the recipe's


def test_an_unknown_recipe_is_one_line_and_exit_2(tmp_path):
    with pytest.raises(InputError, match="--recipe must be one of default, dcgan"):
        TrainConfig(recipe="wgan").with_recipe()
    res = CliRunner().invoke(app, ["--recipe", "wgan", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and res.stderr.strip().startswith("error: --recipe must be one of")


def test_a_dcgan_run_resumes_with_its_settings(tiny):
    cfg = tiny(recipe="dcgan", steps=4, ckpt_every=2)
    first = Trainer(cfg, echo=lambda m: None)
    first.train()
    assert first.cfg.loss == "ns" and first.cfg.ema == 0.0
    again = Trainer(dataclasses.replace(TrainConfig(), out=cfg.out, steps=6), resume=True,
                    echo=lambda m: None)  # no --recipe on the command line: the saved run's settings
    assert {k: getattr(again.cfg, k) for k in DCGAN_RECIPE} == DCGAN_RECIPE



def test_on_the_command_line_a_flag_wins_even_at_its_default_value(tmp_path):
    default_ema = TrainConfig().ema
    assert default_ema != DCGAN_RECIPE["ema"]
    for name, extra in (("given", ["--ema", str(default_ema)]), ("recipe", [])):
        args = ["--dry-run", "--recipe", "dcgan", *extra, "--out", str(tmp_path / name)]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    saved = {name: json.loads(ck.load_state(ck.latest(tmp_path / name))["config"])
             for name in ("given", "recipe")}
    assert saved["given"]["ema"] == default_ema and saved["recipe"]["ema"] == DCGAN_RECIPE["ema"]
    assert saved["given"]["loss"] == saved["recipe"]["loss"] == "ns"


def test_a_config_saved_before_spectral_norm_existed_keeps_a_plain_d():
    old = {k: v for k, v in TrainConfig(spectral_norm=False).to_dict().items() if k != "spectral_norm"}
    assert TrainConfig.from_dict(old).spectral_norm is False
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_d_has_biases_by_default_and_not_in_the_dcgan_recipe_or_older_runs():
    import torch

    from training.models import build

    def biased(cfg: TrainConfig) -> bool:
        convs = [m for m in build(cfg)[1].modules() if isinstance(m, torch.nn.Conv2d)]
        return all(c.bias is not None for c in convs)

    assert biased(TrainConfig(resolution=32, g_width=8, d_width=8))
    assert not biased(TrainConfig(recipe="dcgan", resolution=32, g_width=8, d_width=8).with_recipe())
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "d_bias"}
    assert TrainConfig.from_dict(old).d_bias is False  # a run saved before the field keeps its D


def test_a_bias_free_d_without_batch_norm_scores_a_flat_image_zero():
    """Why d_bias defaults on: such a D is positively homogeneous, D(a x) = a D(x)."""
    import torch

    from training.models import build

    D = build(TrainConfig(resolution=32, g_width=8, d_width=8, d_bias=False, pack=1))[1].eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(D(3 * x), 3 * D(x), atol=1e-5) and D(torch.zeros(1, 3, 32, 32)).abs().max() == 0
