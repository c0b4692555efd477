"""Every non-native checkpoint format (gan_serve.legacy): what training scripts save, loaded
to reproduce the original module exactly, and each way such a file can fail."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from gan_serve.arch import DCGANConfig, DCGANGenerator
from gan_serve.checkpoint import load_generator
from gan_serve.errors import CheckpointError, InputError, UnknownArchitectureError
from gan_serve.legacy import (
    DISCRIMINATOR_KEYS,
    find_state_dict,
    spec_and_weights,
    strip_prefixes,
    weights_in,
)
from gan_serve.spec import LoadOptions

DCGAN_FORMATS = ["seed000", "examples_nc3", "examples_nc1", "examples_ngf64", "seed001_dict", "prefixed"]


def _original_output(fx, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return fx.module(z if fx.flat_z else z[:, :, None, None])


@pytest.mark.parametrize("name", DCGAN_FORMATS)
def test_legacy_formats_reproduce_the_original_exactly(legacy, name):
    fx = legacy[name]
    loaded = load_generator(fx.path)
    z = torch.randn(5, fx.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = loaded.module(z[:, :, None, None])
    assert torch.equal(ours, _original_output(fx, z))
    assert loaded.spec.arch == "dcgan" and loaded.spec.z_dim == fx.z_dim
    assert loaded.spec.img_resolution == 64
    assert loaded.spec.channels == (1 if name in ("examples_nc1", "prefixed") else 3)


def test_inferred_architecture_of_seed000(legacy):
    spec = load_generator(legacy["seed000"].path).spec
    assert spec.config["widths"] == [1024, 512, 256, 128]
    assert spec.config["batch_norm"] and not spec.config["bias"]
    assert spec.output_range == (-1.0, 1.0)
    assert "1024-512-256-128" in spec.describe()


def test_seed001_dict_reports_where_the_generator_was(legacy):
    assert load_generator(legacy["seed001_dict"].path).source_format == "state dict['gen']"


def test_custom_arch_with_output_range_matches_original(legacy):
    fx = legacy["fc_gen"]
    loaded = load_generator(fx.path, LoadOptions("benchmarks.reference_nets:FcGen", output_range=(0.0, 1.0)))
    assert loaded.spec.z_layout == "flat" and loaded.spec.img_resolution == 64
    z = torch.randn(3, 100)
    with torch.no_grad():
        assert torch.equal(loaded.module(z), fx.module(z))


def test_unknown_architecture_lists_what_was_found_and_suggests_arch(legacy):
    with pytest.raises(UnknownArchitectureError) as err:
        load_generator(legacy["fc_gen"].path)
    msg = str(err.value)
    assert "fc.weight (8192, 100)" in msg and "--arch" in msg


def test_custom_arch_needs_an_output_range(legacy):
    with pytest.raises(Exception, match="output range"):
        load_generator(legacy["fc_gen"].path, LoadOptions("benchmarks.reference_nets:FcGen"))


def test_mismatched_shapes_are_named(legacy, tmp_path):
    sd = dict(torch.load(legacy["examples_nc3"].path, weights_only=True))
    sd["main.3.weight"] = torch.zeros(100, 32, 4, 4)  # input channels no longer follow layer 0
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(UnknownArchitectureError, match="mismatched shapes"):
        load_generator(tmp_path / "bad.pth")


def test_arch_with_wrong_kwargs_lists_missing_and_unexpected_keys(legacy):
    with pytest.raises(UnknownArchitectureError, match="does not match the weights"):
        load_generator(legacy["examples_nc3"].path, LoadOptions("benchmarks.reference_nets:ExamplesNetG",
                                                                {"ngf": 8}, (-1, 1)))


def test_dict_without_generator_lists_its_keys(tmp_path):
    torch.save({"epoch": 3, "optimizer": {"lr": 1e-3}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"no generator weights.*'epoch'"):
        load_generator(tmp_path / "x.pth")


def test_checkpoint_saved_before_pytorch_0_4_1_has_no_num_batches_tracked(legacy, tmp_path):
    fx = legacy["examples_nc1"]
    old = {k: v for k, v in fx.module.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "netG_2018.pth")
    loaded = load_generator(tmp_path / "netG_2018.pth")
    z = torch.randn(3, 64, 1, 1)
    with torch.no_grad():
        assert torch.equal(loaded.module(z), fx.module(z))


def test_ema_weights_win_over_the_raw_generator(legacy, tmp_path):
    raw, ema = legacy["examples_nc1"], legacy["examples_nc3"]
    torch.save({"gen": raw.module.state_dict(), "g_ema": ema.module.state_dict()},
               tmp_path / "both.pth")
    loaded = load_generator(tmp_path / "both.pth")
    assert loaded.source_format == "state dict['g_ema']" and loaded.spec.channels == 3


def test_a_state_dict_two_dicts_deep_is_found_and_three_deep_is_not(legacy, tmp_path):
    sd = legacy["examples_nc1"].module.state_dict()
    assert find_state_dict({"model": {"netG": sd}})[1] == ["model", "netG"]
    assert find_state_dict({"model": {"netG": {"gen": sd}}}) is None
    with pytest.raises(CheckpointError, match=r"no generator weights .*\(top level: \['model'\]"):
        weights_in({"model": {"netG": {"gen": sd}}}, tmp_path / "deep.pth")


def test_discriminator_weights_are_found_under_their_own_keys(legacy, tmp_path):
    obj = torch.load(legacy["seed001_dict"].path, weights_only=True)
    sd, source = weights_in(obj, legacy["seed001_dict"].path, DISCRIMINATOR_KEYS,
                                   "discriminator")
    assert source == "state dict['dis']" and list(sd) == ["main.0.weight"]


def test_wrapper_prefixes_go_only_when_every_key_has_them():
    t = torch.zeros(1)
    assert list(strip_prefixes({"module._orig_mod.main.0.weight": t})) == ["main.0.weight"]
    assert list(strip_prefixes({"_orig_mod.module.a": t, "_orig_mod.module.b": t})) == ["a", "b"]
    mixed = {"module.a": t, "b": t}  # not a wrapper's: a layer that happens to be called module
    assert strip_prefixes(mixed) == mixed


def test_spec_and_weights_map_a_tutorial_netG_onto_the_builtin_dcgan(legacy):
    fx = legacy["examples_nc3"]
    spec, sd = spec_and_weights(fx.module.state_dict(), LoadOptions())
    assert spec.arch == "dcgan" and spec.z_dim == 100 and spec.output_range == (-1.0, 1.0)
    own = DCGANGenerator(DCGANConfig.from_dict(spec.config)).state_dict()
    assert set(sd) == set(own)  # the weights come back under the built-in module's names


def test_spec_and_weights_keep_the_callers_class_and_range():
    sd = {"fc.weight": torch.zeros(4, 2)}
    spec, same = spec_and_weights(sd, LoadOptions("my_models:Gen", {"z_dim": 2}, (0.0, 1.0), 2))
    assert (spec.arch, spec.config, spec.z_dim, spec.z_layout) == ("my_models:Gen", {"z_dim": 2}, 2, "auto")
    assert same is sd
    with pytest.raises(InputError, match="needs an explicit output range"):
        spec_and_weights(sd, LoadOptions("my_models:Gen"))


def test_safetensors_weights_without_metadata_are_inferred(legacy, tmp_path):
    fx = legacy["examples_nc3"]
    save_file({k: v.contiguous() for k, v in fx.module.state_dict().items()}, str(tmp_path / "g.safetensors"))
    loaded = load_generator(tmp_path / "g.safetensors")
    assert loaded.source_format == "safetensors weights without metadata"
    z = torch.randn(3, 100, 1, 1)
    with torch.no_grad():
        assert torch.equal(loaded.module(z), fx.module(z))
