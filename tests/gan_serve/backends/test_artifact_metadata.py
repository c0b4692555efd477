"""An exported artifact's gan_serve.* metadata is checked against its graph (ONNX) or its
output (ONNX with open dims, TorchScript) before an image buffer sized from it is filled."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import gan_serve
from gan_serve.errors import CheckpointError
from gan_serve.spec import DCGANConfig, ModelSpec, artifact_metadata
from tests.gan_serve.one_line import one_line_exit_2


def relabel(src: Path, dest: Path, spec_text: str | None = None, **spec_edits: object) -> Path:
    """A copy of the exported `src` whose gan_serve.spec is edited (or replaced by text)."""
    model = onnx.load(str(src))
    props = {p.key: p for p in model.metadata_props}
    if spec_text is None:
        d = json.loads(props["gan_serve.spec"].value)
        config = DCGANConfig(**{**d["config"], **spec_edits})
        spec = ModelSpec(**{**d, "config": config.to_dict(), "z_dim": config.z_dim,
                            "img_resolution": config.img_resolution, "channels": config.channels})
        spec_text = spec.to_json()
    props["gan_serve.spec"].value = spec_text
    onnx.save(model, str(dest))
    return dest


@pytest.mark.parametrize(("edit", "words"), [
    ({"z_dim": 17}, "z_dim 100 (metadata: 17)"),
    ({"widths": [32, 16, 8, 4, 2]}, "height 64 (metadata: 128)"),
    ({"channels": 1}, "channels 3 (metadata: 1)"),
])
def test_metadata_that_disagrees_with_the_graph_is_refused_at_load(artifacts, tmp_path, edit, words):
    bad = relabel(artifacts["onnx"], tmp_path / "bad.onnx", **edit)
    with pytest.raises(CheckpointError, match="does not match its graph") as err:
        gan_serve.load(bad)
    assert words in str(err.value)
    line = one_line_exit_2(["generate", "-m", str(bad), "-o", str(tmp_path / "g.png")])
    assert "does not match its graph" in line
    assert not (tmp_path / "g.png").exists()


def open_dims_model(path: Path, z_dim: int, first_kernel: int, widths: list[int]) -> Path:
    """z (batch, zdim) -> images = z reshaped to (batch, 1, 2, zdim / 2): every dim but the
    channel is symbolic in the graph, so only a run shows what it returns."""
    h = onnx.helper
    shape = h.make_node("Shape", ["z"], ["s"])
    zd = h.make_node("Slice", ["s", "one", "two"], ["zd"])
    half = h.make_node("Div", ["zd", "two"], ["w"])
    target = h.make_node("Concat", ["head", "w"], ["shape"], axis=0)
    reshape = h.make_node("Reshape", ["z", "shape"], ["images"])
    ints = [h.make_tensor(n, onnx.TensorProto.INT64, [len(v)], v)
            for n, v in (("one", [1]), ("two", [2]), ("head", [-1, 1, 2]))]
    graph = h.make_graph(
        [shape, zd, half, target, reshape], "open",
        [h.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["batch", "zdim"])],
        [h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 1, "h", "w"])], ints)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    config = DCGANConfig(z_dim=z_dim, widths=widths, channels=1, first_kernel=first_kernel)
    spec = ModelSpec(config=config.to_dict(), z_dim=z_dim, img_resolution=config.img_resolution,
                     channels=1)
    onnx.helper.set_model_props(model, artifact_metadata(spec, "fp32", ""))
    onnx.save(model, str(path))
    return path


def test_symbolic_dims_are_checked_on_the_images_the_graph_returns(tmp_path):
    """Dims the graph leaves open cannot be checked at load: each run checks the images it
    returns, and a mismatch is one line, never a buffer sized from the metadata alone."""
    honest = gan_serve.load(open_dims_model(tmp_path / "ok.onnx", 4, 1, [3]))  # (B, 1, 2, 2)
    assert honest.generate([0, 1]).shape == (2, 2, 2, 1)
    wide = gan_serve.load(open_dims_model(tmp_path / "wide.onnx", 4, 2, [3]))  # declares 4x4
    with pytest.raises(CheckpointError, match=r"returned images of shape \(16, 1, 2, 2\), but"):
        wide.generate([0])
    odd = gan_serve.load(open_dims_model(tmp_path / "odd.onnx", 7, 1, [3]))  # 16 x 7 into 2 x 3s
    with pytest.raises(CheckpointError, match="the ONNX graph failed on latents of shape"):
        odd.generate([0])
    line = one_line_exit_2(["generate", "-m", str(tmp_path / "wide.onnx"), "-o",
                            str(tmp_path / "g.png")])
    assert "returned images of shape" in line and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"arch": "dcgan", "training": ' + '{"a": ' * 5000 + "1"
                                  + "}" * 5001, '{"pad": "' + "x" * (2**20) + '"}'])
def test_deep_or_huge_metadata_json_is_one_line(artifacts, tmp_path, text):
    bad = relabel(artifacts["onnx"], tmp_path / "deep.onnx", spec_text=text)
    with pytest.raises(CheckpointError, match="the limit is"):
        gan_serve.load(bad)
    assert "the limit is" in one_line_exit_2(["inspect", str(bad)])


def test_a_torchscript_module_is_held_to_its_metadata_too(artifacts, tmp_path):
    """A trusted TorchScript file whose extra files declare 128x128 images while the module
    makes 64x64 ones: one line when it runs, not a broadcasting traceback."""
    import zipfile

    src, dest = zipfile.ZipFile(artifacts["ts"]), tmp_path / "relabelled.pt"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("extra/gan_serve.spec"):
                d = json.loads(data)
                config = DCGANConfig(**{**d["config"], "widths": [*d["config"]["widths"], 4]})
                data = ModelSpec(**{**d, "config": config.to_dict(),
                                    "img_resolution": config.img_resolution}).to_json().encode()
            out.writestr(info, data)
    G = gan_serve.load(dest, backend="torchscript", trust_code=True)
    assert G.img_resolution == 128
    with pytest.raises(CheckpointError, match=r"the TorchScript module returned images of shape "
                                              r"\(16, 3, 64, 64\)"):
        G.generate([0])
