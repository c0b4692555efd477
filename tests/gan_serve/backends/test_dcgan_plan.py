"""The CPU bf16 DCGAN plan: adopted only where it gives the module's bytes, else the module runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import gan_serve
from benchmarks.reference_nets import randomize
from gan_serve import images as img
from gan_serve.arch import DCGANGenerator
from gan_serve.backends import dcgan_plan
from gan_serve.backends.torch_backend import TorchBackend
from gan_serve.errors import CheckpointError
from gan_serve.generator import Generator
from gan_serve.spec import DCGANConfig, LoadedModel, ModelSpec


def without_plan(G: Generator) -> Generator:
    """The same generator with the module called as it is (the path before the plan)."""
    off = copy.copy(G.runner)
    off.plan = None
    return Generator(G.loaded, off)


def planned(path, **kwargs) -> Generator:
    G = gan_serve.load(path, backend="torch", precision="bf16", **kwargs)
    if G.runner.plan is None:
        pytest.skip("this CPU's oneDNN kernels sum the plan's layers differently from the module's")
    return G


def in_memory(config: DCGANConfig, seed: int) -> Generator:
    module = randomize(DCGANGenerator(config), seed)
    spec = ModelSpec(config=config.to_dict(), z_dim=config.z_dim, img_resolution=config.img_resolution,
                     channels=config.channels, output_range=config.output_range)
    loaded = LoadedModel(module, spec, "in-memory module", "0" * 64, "mem")
    return Generator(loaded, TorchBackend(module, spec, "cpu", "bf16"))


@pytest.mark.parametrize("name", ["seed000", "examples_ngf64", "examples_nc1"])
def test_the_plan_gives_the_modules_bytes(legacy, name):
    G = planned(legacy[name].path)
    before = without_plan(G)
    seeds = list(range(40)) + [2**32 - 1, 123456789]
    assert np.array_equal(G.generate(seeds), before.generate(seeds))
    assert np.array_equal(G.generate(seeds, truncation_psi=0.5), before.generate(seeds, truncation_psi=0.5))
    z = G.latents(range(16))
    assert np.array_equal(G.runner.run(z), before.runner.run(z))  # the float path too
    assert np.array_equal(G.generate([7])[0], G.generate(range(20))[7])  # still batch-independent


@pytest.mark.parametrize(("activation", "out_bias", "bias"),
                         [("sigmoid", True, False), ("none", False, True)])
def test_other_output_activations_and_biases(activation, out_bias, bias):
    config = DCGANConfig(z_dim=16, widths=[64, 32], channels=3, output_activation=activation,
                         out_bias=out_bias, bias=bias)
    G = in_memory(config, seed=7)
    if G.runner.plan is None:
        pytest.skip("this CPU's oneDNN kernels sum the plan's layers differently from the module's")
    assert np.array_equal(G.generate(range(24)), without_plan(G).generate(range(24)))


def test_a_plan_that_sums_differently_is_not_adopted(legacy, monkeypatch):
    call = dcgan_plan._Deconv.__call__
    monkeypatch.setattr(dcgan_plan._Deconv, "__call__", lambda self, x: call(self, x) * 1.01)
    G = gan_serve.load(legacy["examples_nc3"].path, backend="torch", precision="bf16")
    assert G.runner.plan is None
    assert G.backend == "torch/cpu/bf16"
    monkeypatch.undo()
    assert np.array_equal(G.generate(range(20)), planned(legacy["examples_nc3"].path).generate(range(20)))


def test_a_torch_without_the_onednn_ops_falls_back(legacy, monkeypatch):
    def missing(*args, **kwargs):
        raise RuntimeError("mkldnn::_reorder_convolution_transpose_weight: no such operator")

    monkeypatch.setattr(dcgan_plan, "_reorder", missing)
    G = gan_serve.load(legacy["examples_nc3"].path, backend="torch", precision="bf16")
    assert G.runner.plan is None
    assert G.generate(range(3)).shape == (3, G.img_resolution, G.img_resolution, 3)


def test_only_the_cpu_bf16_path_of_the_builtin_family_plans(legacy):
    assert gan_serve.load(legacy["examples_nc3"].path, backend="torch").runner.plan is None  # fp32
    G = gan_serve.load(legacy["fc_gen"].path, backend="torch", precision="bf16",
                       arch="benchmarks.reference_nets:FcGen", output_range=(0.0, 1.0))
    assert G.runner.plan is None  # not a DCGANGenerator: the module runs as it is


def test_the_table_lookup_flags_each_image_whose_output_is_not_finite(legacy):
    plan = planned(legacy["examples_nc3"].path).runner.plan
    y = torch.zeros(3, 3, 4, 4, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    y[1, 2, 3, 0] = float("nan")
    y[2, 0, 0, 0] = float("inf")  # tanh(inf) = 1: finite, as the module's output would be
    pixels, finite = plan.images(y)
    assert finite.tolist() == [True, False, True]
    want = img.to_uint8(torch.tanh(y).float().numpy())
    assert np.array_equal(pixels, want)


def test_nan_weights_still_refuse_to_write_images(legacy):
    G = planned(legacy["examples_nc3"].path)
    broken = copy.deepcopy(G.runner.runner)
    with torch.no_grad():
        broken.main[-2].weight.fill_(float("nan"))  # the last ConvTranspose2d
    spec = G.spec
    backend = TorchBackend(G.loaded.module, spec, "cpu", "bf16")
    backend.plan = dcgan_plan.DCGANPlan(*dcgan_plan._layers(broken), 16, spec.output_range)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        Generator(G.loaded, backend).generate(range(3))
