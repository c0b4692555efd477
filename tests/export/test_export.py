"""Exports of every legacy format, verification, metadata, fp16, Triton, bad input."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

import gan_serve
from export import ExportRefused, export_onnx, export_torchscript, prepare, read_config
from export.cli import app
from export.fold import fold_batchnorm, recalibrate_batchnorm
from export.onnx import initializer_dtypes, onnx_io
from gan_serve.spec import spec_from_artifact_metadata

runner = CliRunner()
FORMATS = ["seed000", "examples_nc3", "examples_nc1", "examples_ngf64", "seed001_dict", "prefixed"]


@pytest.mark.parametrize("name", FORMATS)
def test_every_legacy_format_exports_to_a_verified_single_file_onnx(legacy, tmp_path, name):
    G = gan_serve.load(legacy[name].path)
    report = export_onnx(prepare(G), tmp_path / "g.onnx")
    assert report.passed and report.max_abs_diff <= 1 and report.batch_sizes == [1, 3, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]  # no .onnx.data, no temp
    (z_in,), outs = onnx_io(tmp_path / "g.onnx")
    assert z_in[0] == "z" and z_in[2] == ["batch", G.z_dim]
    assert outs[0][0] == "images" and outs[0][2] == ["batch", G.channels, 64, 64]


def test_metadata_round_trips_and_names_the_source(legacy, artifacts):
    model = onnx.load(str(artifacts["onnx"]))
    meta = {p.key: p.value for p in model.metadata_props}
    spec, precision, sha = spec_from_artifact_metadata(meta, "g.onnx")
    G = gan_serve.load(legacy["examples_nc3"].path)
    assert spec == G.spec and precision == "fp32" and sha == G.loaded.sha256
    assert meta["gan_serve.z_dim"] == "100" and meta["gan_serve.output_range"] == "-1,1"


def test_fp16_onnx_has_fp16_weights_and_fp32_io(artifacts):
    assert np.dtype("float16") in initializer_dtypes(artifacts["onnx16"])
    assert np.dtype("float32") not in initializer_dtypes(artifacts["onnx16"])
    (z_in,), (img_out,) = onnx_io(artifacts["onnx16"])
    assert z_in[1] == onnx.TensorProto.FLOAT and img_out[1] == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("name", ["seed000", "examples_nc1"])
def test_fp16_with_folded_batchnorm_is_within_tolerance(legacy, tmp_path, name):
    G = gan_serve.load(legacy[name].path)
    report = export_onnx(prepare(G, fp16=True, fold_bn=True), tmp_path / "g.fp16.onnx")
    assert report.passed and report.max_abs_diff <= 3 and report.psnr >= 35
    nodes = {n.op_type for n in onnx.load(str(tmp_path / "g.fp16.onnx")).graph.node}
    assert "BatchNormalization" not in nodes


def test_batchnorm_folding_is_exact_in_fp32(legacy):
    module = copy.deepcopy(gan_serve.load(legacy["examples_nc3"].path).module)
    z = torch.randn(4, 100, 1, 1)
    with torch.no_grad():
        before = module(z)
        assert fold_batchnorm(module) == 4
        assert torch.allclose(module(z), before, atol=1e-6)


def test_recalibrate_batchnorm_is_deterministic(legacy):
    a = copy.deepcopy(gan_serve.load(legacy["examples_nc1"].path).module)
    b = copy.deepcopy(a)
    assert recalibrate_batchnorm(a, 2, 64) == 4
    recalibrate_batchnorm(b, 2, 64)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    assert not a.training


def test_recalibration_leaves_the_callers_model_alone(legacy):
    from export.prepared import prepare

    G = gan_serve.load(legacy["examples_nc1"].path)
    before = {k: v.clone() for k, v in G.module.state_dict().items()}
    p = prepare(G, recalibrate_bn=2)
    assert all(torch.equal(before[k], v) for k, v in G.module.state_dict().items())
    recalibrated = p.module.module.state_dict()  # the exported copy got the new statistics
    assert any(not torch.equal(before[k], recalibrated[k]) for k in before if "running" in k)
    assert p.reference.module is not G.module  # verified against the recalibrated fp32 copy


def test_custom_arch_exports(legacy, tmp_path):
    G = gan_serve.load(legacy["fc_gen"].path, arch="benchmarks.reference_nets:FcGen", output_range=(0, 1))
    assert export_onnx(prepare(G), tmp_path / "fc.onnx").passed
    served = gan_serve.load(tmp_path / "fc.onnx")
    assert served.spec.output_range == (0.0, 1.0) and served.spec.z_layout == "flat"
    assert np.abs(served.generate([1, 2]).astype(int) - G.generate([1, 2]).astype(int)).max() <= 1


def test_torchscript_fp32_and_fp16(artifacts, legacy):
    G = gan_serve.load(legacy["examples_nc3"].path, backend="torch")  # fp32 eager
    ts = gan_serve.load(artifacts["ts"], backend="torchscript", trust_code=True)
    assert ts.backend == "torchscript/cpu/fp32"
    assert np.array_equal(ts.generate(range(8)), G.generate(range(8)))
    ts16 = gan_serve.load(artifacts["ts16"], backend="torchscript", trust_code=True)
    assert ts16.backend == "torchscript/cpu/fp16"
    assert np.abs(ts16.generate(range(8)).astype(int) - G.generate(range(8)).astype(int)).max() <= 3


@pytest.mark.parametrize("fixture", ["ts", "ts16"])
def test_torchscript_takes_z_flat_and_as_a_1x1_image(artifacts, fixture):
    # the tutorial feeds torch.randn(b, nz, 1, 1); gan-serve feeds (b, nz): both are z
    ts = torch.jit.load(str(artifacts[fixture]))
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        flat, image = ts(z), ts(z[:, :, None, None])
    assert flat.shape == (3, 3, 64, 64) and torch.equal(flat, image)


@pytest.mark.parametrize(("arch", "name", "output_range"), [
    ("benchmarks.reference_nets:FcGen", "fc_gen", (0, 1)),  # a class that takes z flat
    ("benchmarks.reference_nets:SeedGenerator", "seed000", (-1, 1)),  # one that takes (B, z, 1, 1)
])
def test_torchscript_of_a_named_class_takes_both_shapes(legacy, tmp_path, arch, name, output_range):
    G = gan_serve.load(legacy[name].path, arch=arch, output_range=output_range)
    export_torchscript(prepare(G), tmp_path / "g.pt")
    ts = torch.jit.load(str(tmp_path / "g.pt"))
    z = torch.from_numpy(G.latents([4, 5]))
    with torch.no_grad():
        assert torch.equal(ts(z), ts(z[:, :, None, None]))


def test_onnx_documents_its_input_and_output(artifacts):
    graph = onnx.load(str(artifacts["onnx"])).graph
    assert graph.input[0].doc_string.startswith("z: latents (batch, 100) float32, recipe v1: seed s")
    assert graph.output[0].doc_string.startswith("images: (batch, 3, 64, 64) float32 in [-1, 1]")


def test_a_broken_artifact_is_refused_and_nothing_is_left(legacy, tmp_path):
    G = gan_serve.load(legacy["examples_nc3"].path)
    p = prepare(G)
    with torch.no_grad():  # corrupt the copy that gets exported, not the reference
        p.module.module.main[-2].weight.mul_(-1.0)  # the output layer, negated
    with pytest.raises(ExportRefused, match="REFUSED"):
        export_onnx(p, tmp_path / "bad.onnx")
    with pytest.raises(ExportRefused):
        export_torchscript(p, tmp_path / "bad.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", FORMATS)
def test_every_legacy_format_exports_to_torchscript_and_a_triton_repository(legacy, tmp_path, name):
    path = legacy[name].path
    res = runner.invoke(app, ["torchscript", str(path), "-o", str(tmp_path / "g.pt")])
    assert res.exit_code == 0 and "verified" in res.stdout, res.output
    ts = gan_serve.load(tmp_path / "g.pt", backend="torchscript", trust_code=True)
    assert ts.backend == "torchscript/cpu/fp32"
    res = runner.invoke(app, ["triton", str(path), "-o", str(tmp_path / "repo"), "--name", "m"])
    assert res.exit_code == 0, res.output
    cfg = read_config((tmp_path / "repo" / "m" / "config.pbtxt").read_text())
    (_, _, dims), = onnx_io(tmp_path / "repo" / "m" / "1" / "model.onnx")[1]
    assert list(cfg.output[0].dims) == dims[1:]
