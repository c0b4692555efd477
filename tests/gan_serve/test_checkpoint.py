"""Loading every legacy format, converting to the native format, and refusing bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_serve.checkpoint import ModelSpec, load_generator, read_safetensors
from gan_serve.errors import CheckpointError, UnknownArchitectureError, UnsafeCheckpointError
from gan_serve.generator import Generator
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


@pytest.mark.parametrize("fp16", [False, True])
def test_convert_to_native_round_trips(legacy, tmp_path, fp16):
    fx = legacy["seed001_dict"]
    G = Generator.load(fx.path)
    out = G.save(tmp_path / "g.safetensors", fp16=fp16)
    _, meta = read_safetensors(out)
    spec = ModelSpec.from_json(meta["gan_serve"])
    assert spec.z_dim == 100 and spec.img_resolution == 64 and spec.recipe_version == 1
    G2 = Generator.load(out)
    assert G2.loaded.source_format == "native safetensors"
    a, b = G.generate(range(8)), G2.generate(range(8))
    if fp16:
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 3
    else:
        assert np.array_equal(a, b)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer left no temp file


def test_custom_arch_with_output_range_matches_original(legacy):
    fx = legacy["fc_gen"]
    loaded = load_generator(fx.path, LoadOptions("tests.legacy_models:FcGen", output_range=(0.0, 1.0)))
    assert loaded.spec.z_layout == "flat" and loaded.spec.img_resolution == 64
    z = torch.randn(3, 100)
    with torch.no_grad():
        assert torch.equal(loaded.module(z), fx.module(z))


def test_custom_arch_survives_native_conversion(legacy, tmp_path):
    G = Generator.load(legacy["fc_gen"].path, arch="tests.legacy_models:FcGen", output_range=(0, 1))
    G2 = Generator.load(G.save(tmp_path / "fc.safetensors"), arch="tests.legacy_models:FcGen")
    assert G2.spec.arch == "tests.legacy_models:FcGen" and G2.spec.output_range == (0.0, 1.0)
    assert np.array_equal(G.generate([7, 8]), G2.generate([7, 8]))


def test_unknown_architecture_lists_what_was_found_and_suggests_arch(legacy):
    with pytest.raises(UnknownArchitectureError) as err:
        load_generator(legacy["fc_gen"].path)
    msg = str(err.value)
    assert "fc.weight (8192, 100)" in msg and "--arch" in msg


def test_custom_arch_needs_an_output_range(legacy):
    with pytest.raises(Exception, match="output range"):
        load_generator(legacy["fc_gen"].path, LoadOptions("tests.legacy_models:FcGen"))


def test_mismatched_shapes_are_named(legacy, tmp_path):
    sd = dict(torch.load(legacy["examples_nc3"].path, weights_only=True))
    sd["main.3.weight"] = torch.zeros(100, 32, 4, 4)  # input channels no longer follow layer 0
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(UnknownArchitectureError, match="mismatched shapes"):
        load_generator(tmp_path / "bad.pth")


def test_arch_with_wrong_kwargs_lists_missing_and_unexpected_keys(legacy):
    with pytest.raises(UnknownArchitectureError, match="does not match the weights"):
        load_generator(legacy["examples_nc3"].path, LoadOptions("tests.legacy_models:ExamplesNetG",
                                                                {"ngf": 8}, (-1, 1)))


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("container", ["bare", "zip"])
def test_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, container):
    target = tmp_path / "pwned"
    path = tmp_path / "malicious.pth"
    if container == "zip":
        torch.save({"gen": _Payload(target)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(target), protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="nothing in it was run"):
        load_generator(path)
    assert not target.exists()


def test_whole_module_pickle_is_refused(tmp_path, legacy):
    torch.save(legacy["examples_nc1"].module, tmp_path / "full.pth")
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        load_generator(tmp_path / "full.pth")


@pytest.mark.parametrize("name", ["examples_nc3", "native"])
def test_truncated_file_is_reported_as_corrupt(legacy, tmp_path, name):
    src = legacy["examples_nc3"].path
    if name == "native":
        src = Generator.load(src).save(tmp_path / "g.safetensors")
    data = src.read_bytes()
    cut = tmp_path / f"cut{src.suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(cut)


def test_missing_empty_and_non_checkpoint_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(tmp_path / "empty.pth")
    (tmp_path / "notes.pth").write_text("hello, not a model")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_generator(tmp_path / "notes.pth")


def test_dict_without_generator_lists_its_keys(tmp_path):
    torch.save({"epoch": 3, "optimizer": {"lr": 1e-3}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"no generator weights.*'epoch'"):
        load_generator(tmp_path / "x.pth")


def test_bundled_default_loads_by_name():
    G = Generator.load()
    assert not G.is_placeholder and G.z_dim == 100 and G.img_resolution == 64
    assert G.loaded.name == "default"
    # trained by gan-train on builtin:avatars, with its command and coverage figures on board
    training = G.spec.training
    assert training["trainer"] == "gan-train" and training["data"].startswith("builtin:avatars")
    assert training["command"].startswith("gan-train ") and training["coverage"]["samples"] == 10_000


def test_checkpoint_saved_before_pytorch_0_4_1_has_no_num_batches_tracked(legacy, tmp_path):
    fx = legacy["examples_nc1"]
    old = {k: v for k, v in fx.module.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "netG_2018.pth")
    loaded = load_generator(tmp_path / "netG_2018.pth")
    z = torch.randn(3, 64, 1, 1)
    with torch.no_grad():
        assert torch.equal(loaded.module(z), fx.module(z))
