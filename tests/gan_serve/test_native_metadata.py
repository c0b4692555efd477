"""Native metadata is checked whole, against the tensors' shapes, before any module is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import gan_serve
from gan_serve import checkpoint
from gan_serve.arch import DCGANGenerator
from gan_serve.checkpoint import load_generator, save_native
from gan_serve.commands.cli import app
from gan_serve.errors import GanServeError
from gan_serve.http.app import load_models
from gan_serve.http.settings import ServeSettings
from gan_serve.spec import META_KEY, DCGANConfig, LoadOptions, ModelSpec
from training.cli import app as train_app

CONFIG = DCGANConfig(z_dim=8, widths=[16, 8], channels=3)  # 16x16 images


@pytest.fixture()
def native(tmp_path: Path) -> Path:
    spec = ModelSpec(config=CONFIG.to_dict(), z_dim=8, img_resolution=16, channels=3)
    return save_native(DCGANGenerator(CONFIG), spec, tmp_path / "good.safetensors")


def rewrite(src: Path, dest: Path, edit: object) -> Path:
    """A copy of `src` whose metadata is `edit(spec dict)` (a str is written as it is)."""
    from safetensors import safe_open

    with safe_open(str(src), "pt") as fh:
        meta = fh.metadata()
    d = json.loads(meta[META_KEY])
    text = edit if isinstance(edit, str) else json.dumps(edit(d))
    save_file(load_file(str(src)), str(dest), metadata={META_KEY: text})
    return dest


def top(**kw: object):
    return lambda d: {**d, **kw}


def cfg(**kw: object):
    return lambda d: {**d, "config": {**d["config"], **kw}}


def both(**kw: object):  # consistent top level and config, but not the weights
    def edit(d: dict) -> dict:
        c = DCGANConfig(**{**d["config"], **kw})
        return {**d, "config": c.to_dict(), "z_dim": c.z_dim, "img_resolution": c.img_resolution}
    return edit


CASES = {
    "not json": ("{not json", "not JSON"),
    "a list": ("[1, 2]", "expected a JSON object, got list"),
    "unknown activation": (cfg(output_activation="swish"), "output_activation must be one of"),
    "channels 2": (top(channels=2), "channels must be one of 1, 3, 4"),
    "config channels 2": (cfg(channels=2), "config.channels must be one of"),
    "resolution 32 vs 16": (top(img_resolution=32), "disagree with its config"),
    "output range [1,1]": (top(output_range=[1, 1]), "output_range must be [low, high]"),
    "output range string": (top(output_range="abc"), "output_range must be [low, high]"),
    "output range NaN": ("X", "output_range must be [low, high]"),
    "widths abc": (cfg(widths="abc"), "config.widths must be a list"),
    "widths negative": (cfg(widths=[-16, 8]), "config.widths[] must be an integer from 1"),
    "z_dim 7": (top(z_dim=7), "disagree with its config"),
    "z_dim 7 both": (both(z_dim=7), "declared and real shapes disagree: z_dim 7 (weights: 8)"),
    "widths swapped": (both(widths=[8, 16]), "declared and real shapes disagree: widths"),
    "z_dim 1e9": (both(z_dim=10**9), "z_dim must be an integer from 1 to 16384"),
    "resolution 2^20": (top(img_resolution=2**20), "img_resolution must be an integer from 1 to 4096"),
    "widths 1e6": (cfg(widths=[10**6, 8]), "config.widths[] must be an integer from 1 to 16384"),
    "widths 200000": (cfg(widths=[200_000, 8]), "config.widths[] must be an integer"),
    "first kernel 2^20": (cfg(first_kernel=2**20), "config.first_kernel must be an integer from 1 to 64"),
    "many layers": (cfg(widths=[8] * 40), "config.widths must be a list of 1 to 12"),
    "recipe 2": (top(recipe_version=2), "recipe_version must be one of 1"),
    "z_layout": (top(z_layout="diagonal"), "z_layout must be one of nchw, flat, auto"),
    "bool z_dim": (top(z_dim=True), "z_dim must be an integer"),
    "batch_norm string": (cfg(batch_norm="yes"), "config.batch_norm must be true or false"),
    "config a list": (top(config=[1]), "config must be an object"),
    "nested 100,000 deep": ("[" * 100_000 + "]" * 100_000, "nests 100000 levels deep; the limit is 32"),
    "training nested 40 deep": (top(training=json.loads('{"a": ' * 40 + "1" + "}" * 40)),
                                "nests 41 levels deep"),
    "brackets in strings do not count": (top(training={"note": '\\"[[[[' * 100}, z_dim=7),
                                         "disagree with its config"),
    "2 MiB of metadata": (top(training={"pad": "x" * 2**21}), "characters long; the limit is 1,048,576"),
    "a 2048x2048 map of 32 channels": (both(widths=[8] * 9 + [32], first_kernel=4, z_dim=8),
                                       "values per image; the limit is 67,108,864"),
}


@pytest.fixture()
def no_build(monkeypatch):
    """Fail the test if a generator module is built (the check must come first)."""
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("a module was built from metadata that should have been refused")
    monkeypatch.setattr(checkpoint, "DCGANGenerator", refuse)


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_metadata_is_refused_before_building(native, tmp_path, no_build, case):
    edit, match = CASES[case]
    if case == "output range NaN":
        edit = '{"output_range": [NaN, 1], "arch": "dcgan"}'
    path = rewrite(native, tmp_path / "bad.safetensors", edit)
    with pytest.raises(GanServeError) as err:
        load_generator(path)
    assert match in str(err.value) and "\n" not in str(err.value)
    assert "bad.safetensors" in str(err.value)
    res = CliRunner().invoke(app, ["inspect", str(path), "--samples", "0"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert match in res.stderr


def test_serve_and_init_from_refuse_it_the_same_way(native, tmp_path, no_build):
    path = rewrite(native, tmp_path / "bad.safetensors", cfg(widths=[200_000, 8]))
    with pytest.raises(GanServeError, match="config.widths"):
        load_models(ServeSettings(models=[str(path)]))
    res = CliRunner().invoke(train_app, ["--dry-run", "--init-from", str(path),
                                         "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "config.widths" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_the_good_file_still_loads(native):
    G = gan_serve.load(native)
    assert (G.z_dim, G.img_resolution, G.channels) == (8, 16, 3)


def test_a_custom_class_is_sized_on_the_meta_device_first(legacy, tmp_path):
    arch = "benchmarks.reference_nets:FcGen"
    G = gan_serve.load(legacy["fc_gen"].path, arch=arch, output_range=(0, 1))
    good = G.save(tmp_path / "fc.safetensors")
    # z_dim 10^9 would be a 32 TB Linear layer if it were built for real
    bad = rewrite(good, tmp_path / "huge.safetensors", top(config={"z_dim": 10**9}))
    with pytest.raises(GanServeError, match=r"fc.weight: file \(8192, 100\) vs model \(8192, 10+\)"):
        load_generator(bad, LoadOptions(arch))
    assert gan_serve.load(good, arch=arch).generate([0]).shape == (1, 64, 64, 3)
    assert torch.get_default_device().type == "cpu"  # the meta device did not leak


@pytest.mark.parametrize("header", [b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                    b'{"__metadata__":{"gan_serve":' + b"{" * 5000 + b"}" * 5000 + b"}}"])
def test_a_deeply_nested_safetensors_header_is_one_line(tmp_path, header):
    """The header itself (parsed by the safetensors library) nested far deeper than any parser
    recurses: one line, never a RecursionError."""
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(GanServeError) as err:
        load_generator(path)
    assert "\n" not in str(err.value)
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output


SPEC_KEYS = ["arch", "config", "z_dim", "img_resolution", "channels", "output_range", "z_layout",
             "recipe_version", "training", "widths", "first_kernel", "batch_norm"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4) | st.just("dcgan"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(SPEC_KEYS), inner,
                                                                max_size=5),
    max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(doc=JSON, depth=st.integers(0, 3000))
def test_any_metadata_json_is_a_spec_or_one_checkpoint_error(doc, depth):
    """Generated metadata of any shape, wrapped in up to 3,000 levels of lists."""
    text = "[" * depth + json.dumps(doc) + "]" * depth
    try:
        spec = ModelSpec.from_json(text, "g.safetensors")
    except GanServeError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("g.safetensors")
    else:
        assert depth == 0 and spec.arch


def test_metadata_of_escaped_quotes_is_read_in_one_pass():
    # 1 MiB of `"\"\"...`: the old string pattern backtracked quadratically (hours); a bounded
    # wait in a thread tells a hang from an answer, and asserts nothing about speed
    import threading

    from gan_serve.errors import CheckpointError
    from gan_serve.spec import MAX_METADATA_BYTES, loads_bounded

    text = '{"a": "' + '\\"' * (MAX_METADATA_BYTES // 2 - 8)
    answer: list[str] = []

    def read() -> None:
        try:
            loads_bounded(text, "metadata")
        except CheckpointError as exc:
            answer.append(str(exc))

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(60)
    assert answer and "is not JSON" in answer[0]
    assert loads_bounded('{"a": "x\\"]]]]", "b": [[1]]}', "metadata") == {"a": 'x"]]]]', "b": [[1]]}


def test_deep_arch_kwargs_are_one_line():
    with pytest.raises(GanServeError, match="--arch-kwargs nests too deep"):
        LoadOptions.from_text(arch_kwargs="[" * 3000)
