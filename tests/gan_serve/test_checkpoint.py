"""The native format (round trips, a custom class named by the caller) and the files every format
refuses: pickles that run code, truncated, empty and missing files. The other formats:
test_legacy.py."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_serve.checkpoint import ModelSpec, load_generator, read_safetensors
from gan_serve.errors import CheckpointError, UnsafeCheckpointError
from gan_serve.generator import Generator


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


def test_custom_arch_survives_native_conversion(legacy, tmp_path):
    G = Generator.load(legacy["fc_gen"].path, arch="benchmarks.reference_nets:FcGen", output_range=(0, 1))
    G2 = Generator.load(G.save(tmp_path / "fc.safetensors"), arch="benchmarks.reference_nets:FcGen")
    assert G2.spec.arch == "benchmarks.reference_nets:FcGen" and G2.spec.output_range == (0.0, 1.0)
    assert np.array_equal(G.generate([7, 8]), G2.generate([7, 8]))


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


def test_bundled_default_loads_by_name():
    G = Generator.load()
    assert not G.is_placeholder and G.z_dim == 100 and G.img_resolution == 64
    assert G.loaded.name == "default"
    # trained by gan-train on builtin:avatars, with its command and coverage figures on board
    training = G.spec.training
    assert training["trainer"] == "gan-train" and training["data"].startswith("builtin:avatars")
    assert training["command"].startswith("gan-train ") and training["coverage"]["samples"] == 10_000
    # shipped because it beat the model it replaced on that check (the same run's step 37,000:
    # 240/240 modes, 51.7% high quality, KL 0.0494): a later model must beat its quality and KL
    # with every mode kept (step 56,000, annealed from 44,000: 59.5%, KL 0.040)
    coverage = training["coverage"]
    assert coverage["modes_covered"] == coverage["modes_total"] == 240
    assert coverage["high_quality"] > 0.517 and coverage["kl_to_uniform"] < 0.0494
    assert training.get("train_minutes", 1.0) is not None  # a wall time, or none at all: never null
