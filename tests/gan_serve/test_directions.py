"""Editing directions: files, edits, fits with and without labels, and the CLI commands."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gan_serve
from gan_serve import latents as lat
from gan_serve.commands.cli import app
from gan_serve.directions import MAX_FILE_BYTES, Directions, parse_edit
from gan_serve.errors import CheckpointError, InputError
from gan_serve.ganspace import contact_sheet, find_directions
from gan_serve.interfacegan import fit_directions, parse_labels
from gan_serve.request import check_span

from .one_line import one_line_exit_2
from .tiny_models import native_dcgan

Z = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return native_dcgan(tmp_path_factory.mktemp("g") / "tiny.safetensors", 8, width=4, z_dim=Z)


@pytest.fixture(scope="module")
def G(tiny):
    return gan_serve.load(tiny, backend="torch", precision="fp32")


@pytest.fixture(scope="module")
def dirs(G) -> Directions:
    return find_directions(G, samples=256, components=4)


@pytest.fixture()
def dirs_file(dirs, tmp_path):
    return dirs.save(tmp_path / "dirs.safetensors")


def test_planted_direction_is_recovered_from_synthetic_labels():
    planted = np.random.RandomState(5).randn(Z)
    planted /= np.linalg.norm(planted)
    seeds = list(range(3000))
    z = lat.latents_for_seeds(seeds, Z)
    labels = {"planted": z @ planted > 0.3, "noise": np.random.RandomState(6).rand(3000) > 0.5}
    found = fit_directions(seeds, labels, Z, condition=False)
    assert found.vector("planted") @ planted > 0.98
    assert abs(found.vector("noise") @ planted) < 0.3
    assert found.scores[0] > 0.95 and found.method == "interfacegan"


def test_conditioning_leaves_other_groups_boundaries_alone():
    seeds = list(range(2000))
    z = lat.latents_for_seeds(seeds, Z)
    mixed = z[:, 0] + z[:, 1]  # hair_x leans on bg_y's axis; conditioning takes that out
    labels = {"hair_x": mixed > 0, "hair_w": z[:, 2] > 0, "bg_y": z[:, 1] > 0}
    found, plain = fit_directions(seeds, labels, Z), fit_directions(seeds, labels, Z, condition=False)
    assert abs(found.vector("hair_x") @ plain.vector("bg_y")) < 1e-6  # orthogonal to bg's boundary
    assert found.vector("hair_x")[0] > 0.98
    assert abs(found.vector("bg_y") @ plain.vector("hair_w")) < 1e-6
    assert abs(plain.vector("hair_x") @ plain.vector("bg_y")) > 0.5
    assert found.info["conditioned"] == 1


def test_ganspace_directions_are_unit_ordered_and_deterministic(G, dirs):
    assert dirs.names == ("pc0", "pc1", "pc2", "pc3")
    assert np.allclose(np.linalg.norm(dirs.vectors, axis=1), 1, atol=1e-6)
    assert list(dirs.scores) == sorted(dirs.scores, reverse=True) and 0 < sum(dirs.scores) <= 1
    assert dirs.info["layer"].startswith("main.")  # the first nonlinearity of the DCGAN
    assert find_directions(G, samples=256, components=4).to_bytes() == dirs.to_bytes()
    pixels = find_directions(G, samples=64, components=2, layer="pixels")
    assert pixels.info["layer"] == "pixels"
    with pytest.raises(InputError, match="no layer 'nope'"):
        find_directions(G, samples=64, components=2, layer="nope")
    with pytest.raises(InputError, match="components must be from 1 to"):
        find_directions(G, samples=64, components=Z + 1)


@pytest.mark.parametrize("name", ["examples_nc3", "fc_gen"])
def test_ganspace_finds_directions_in_a_netg_and_an_arch_model(legacy, name):
    fixture = legacy[name]
    G = gan_serve.Generator.from_module(fixture.module, fixture.z_dim) if name == "fc_gen" \
        else gan_serve.load(fixture.path, backend="torch", precision="fp32")
    found = find_directions(G, samples=48, components=2)
    assert found.z_dim == fixture.z_dim and len(found) == 2
    assert found.info["layer"] != "pixels"  # a module's own activations
    z = G.latents([0])
    assert np.allclose(found.edit("pc1=-2").apply(z), z - 2 * found.vector("pc1"), atol=1e-6)


def test_file_round_trip_keeps_bytes_and_id(dirs, dirs_file):
    back = Directions.load(dirs_file)
    assert back.to_bytes() == dirs_file.read_bytes() == dirs.to_bytes()
    assert back.names == dirs.names and back.scores == dirs.scores
    assert back.id == f"dirs@sha256:{dirs.id.split(':')[1]}"
    assert np.array_equal(back.vectors, dirs.vectors)


def test_edit_moves_latents_and_is_recorded(G, dirs):
    plain = G.generate([1, 2])
    assert np.array_equal(G.generate([1, 2], edit="pc0=0", directions=dirs), plain)
    moved = G.generate([1, 2], edit={"pc0": 3.0, "pc1": -2}, directions=dirs)
    assert not np.array_equal(moved, plain)
    edit = dirs.edit("pc0=+3,pc1=-2")
    assert edit.text == "pc0=+3.0,pc1=-2.0"
    expected = lat.latents_for_seeds([1], Z) + 3 * dirs.vector("pc0") - 2 * dirs.vector("pc1")
    assert np.allclose(edit.apply(lat.latents_for_seeds([1], Z)), expected, atol=1e-6)
    req = gan_serve.request.SeedRequest.of([1], edit=edit)
    meta = req.provenance(G)
    assert meta["gan_serve.edit"] == "pc0=+3.0,pc1=-2.0" and meta["gan_serve.directions"] == dirs.id


def test_walk_passes_through_the_seed_itself(G, dirs):
    frames = G.walk(5, "pc2", dirs, steps=5, span=(-2, 2))
    assert frames.shape[0] == 5
    assert np.array_equal(frames[2], G.generate([5])[0])


def test_contact_sheet_has_a_row_per_direction(G, dirs):
    grid, meta = contact_sheet(G, dirs, seeds=[0, 1])
    rows, cols = 4, 2 * 7
    assert grid.shape == (2 + rows * (8 + 2), 2 + cols * (8 + 2), 3)
    assert meta["gan_serve.sheet"] == "pc0,pc1,pc2,pc3"


@pytest.mark.parametrize("text, message", [
    ("pc0", "is not NAME=STRENGTH"),
    ("pc0=abc", "is not a number"),
    ("pc0=1e9", "within +-50"),
    ("pc0=nan", "within +-50"),
    ("pc0=1,pc0=2", "each direction once"),
    ("=1", "is not a name"),
    ("zz=1", "unknown direction 'zz'"),
    ("pc0=1," * 40, "is not NAME=STRENGTH"),
])
def test_bad_edits_are_one_line(tiny, dirs_file, text, message):
    line = one_line_exit_2(["generate", "-m", str(tiny), "--n", "2", "--directions", str(dirs_file),
                            "--edit", text, "-o", str(dirs_file.parent / "g.png")])
    assert message in line


def test_edit_terms_are_bounded():
    with pytest.raises(InputError, match="1 to 32 terms"):
        parse_edit({f"d{i}": 1.0 for i in range(33)})
    with pytest.raises(InputError, match="must be a number"):
        parse_edit({"pc0": True})
    with pytest.raises(InputError, match="1 to 32 terms"):
        parse_edit(",".join(f"d{i}=1" for i in range(33)))
    with pytest.raises(InputError, match="at most 4,096"):
        parse_edit("pc0=1," * 1000)
    for span in ("nan,1", "1,inf", (1, 1), "1", (True, 2)):
        with pytest.raises(InputError, match="LOW,HIGH"):
            check_span(span)


def test_directions_for_another_z_dim_are_refused_in_one_line(tmp_path, dirs_file):
    other = native_dcgan(tmp_path / "z4.safetensors", 8, width=4, z_dim=4)
    line = one_line_exit_2(["generate", "-m", str(other), "--n", "2", "--directions", str(dirs_file),
                            "--edit", "pc0=1", "-o", str(tmp_path / "g.png")])
    assert "z_dim 8; this model's z_dim is 4" in line


def test_edit_needs_both_options_and_a_grid(tiny, dirs_file, tmp_path):
    assert "needs --directions" in one_line_exit_2(["generate", "-m", str(tiny), "--edit", "pc0=1"])
    assert "without --edit" in one_line_exit_2(["generate", "-m", str(tiny), "--directions",
                                                str(dirs_file)])
    line = one_line_exit_2(["generate", "-m", str(tiny), "--directions", str(dirs_file), "--edit",
                            "pc0=1", "--individual", str(tmp_path / "each")])
    assert "cannot be combined with --individual" in line


def _with_header(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _meta(**over) -> dict:
    meta = {"format": "gan_serve.directions/1", "z_dim": 2, "names": ["a"], "method": "ganspace",
            "scores": [0.5], "model_sha256": "0" * 64, "info": {}}
    return {"gan_serve.directions": json.dumps({**meta, **over})}


GOOD = {"directions": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]}}
ONE = np.array([[1.0, 0.0]], np.float32).tobytes()


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (b"\xff" * 16, "no safetensors header"),
    (_with_header({**GOOD, "__metadata__": _meta()}, ONE[:4]), "truncated"),
    (_with_header({**GOOD, "__metadata__": _meta()}, ONE + b"xx"), "truncated or padded"),
    (_with_header({"w": GOOD["directions"], "__metadata__": _meta()}, ONE), "exactly one tensor"),
    (_with_header({"directions": {**GOOD["directions"], "dtype": "F64"}, "__metadata__": _meta()}, ONE),
     "float32"),
    (_with_header({"directions": {"dtype": "F32", "shape": [10**6, 16384], "data_offsets": [0, 8]},
                   "__metadata__": _meta()}, ONE), "K <= 256"),
    (_with_header({**GOOD, "__metadata__": _meta(z_dim=3)}, ONE), "metadata says z_dim 3"),
    (_with_header({**GOOD, "__metadata__": _meta(format="x")}, ONE), "format is not"),
    (_with_header({**GOOD, "__metadata__": _meta(names=["a b"])}, ONE), "is not a name"),
    (_with_header({**GOOD, "__metadata__": _meta(scores=[1, 2])}, ONE), "one finite score each"),
    (_with_header({**GOOD, "__metadata__": _meta(info={"x": [1]})}, ONE), "info must map"),
    (_with_header({**GOOD, "__metadata__": {}}, ONE), "no gan_serve.directions metadata"),
    (_with_header({**GOOD, "__metadata__": _meta()}, np.array([[np.nan, 0]], np.float32).tobytes()),
     "finite"),
    (_with_header({**GOOD, "__metadata__": _meta()}, np.zeros(2, np.float32).tobytes()), "length 0"),
])
def test_hostile_files_are_refused_in_one_line(tmp_path, data, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message) as info:
        Directions.load(path)
    assert "\n" not in str(info.value)


def test_oversized_and_missing_files_are_refused(tmp_path):
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written or read
    with pytest.raises(CheckpointError, match="the most a directions file may be"):
        Directions.load(big)
    with pytest.raises(CheckpointError, match="no such directions file"):
        Directions.load(tmp_path / "none.safetensors")
    with pytest.raises(CheckpointError, match="is not a regular file"):
        Directions.load(tmp_path)


@pytest.mark.parametrize("rows, message", [
    ([["seeds", "a"], ["1", "0"]], "header seed,ATTRIBUTE"),
    ([["seed", "a"], ["1", "maybe"]], "labels are 0/1"),
    ([["seed", "a"], ["1", "1"], ["1", "0"]], "a seed appears twice"),
    ([["seed", "a"], ["x", "1"]], "is not an integer"),
    ([["seed", "a"], ["-1", "1"]], "outside"),
    ([["seed", "a"], ["1", "1", "0"]], "3 values, the header has 2"),
])
def test_bad_labels_are_refused(rows, message):
    with pytest.raises(InputError, match=message):
        parse_labels(rows)


def test_labels_need_both_classes():
    seeds, labels = parse_labels([["seed", "a"]] + [[str(s), "1"] for s in range(20)])
    with pytest.raises(InputError, match="at least 5 seeds labelled 1 and 5 labelled 0"):
        fit_directions(seeds, labels, Z)


def test_directions_command_writes_the_file_and_sheet(tiny, tmp_path):
    out = tmp_path / "found.safetensors"
    res = CliRunner().invoke(app, ["directions", "-m", str(tiny), "-o", str(out), "--samples", "128",
                                   "--components", "3", "--sheet-seeds", "0-1"])
    assert res.exit_code == 0, res.output
    assert "pc0: variance explained" in res.output
    found = Directions.load(out)
    assert found.names == ("pc0", "pc1", "pc2") and found.source == "found"
    sheet = Image.open(out.with_suffix(".png"))
    assert sheet.size == (2 + 14 * 10, 2 + 3 * 10)
    assert sheet.text["gan_serve.directions"] == found.id


def test_directions_command_fits_labels(tiny, tmp_path):
    z = lat.latents_for_seeds(range(400), Z)
    rows = ["seed,up"] + [f"{s},{int(z[s, 0] > 0)}" for s in range(400)]
    (tmp_path / "labels.csv").write_text("\n".join(rows))
    out = tmp_path / "fit.safetensors"
    res = CliRunner().invoke(app, ["directions", "-m", str(tiny), "-o", str(out), "--labels",
                                   str(tmp_path / "labels.csv"), "--sheet", "-"])
    assert res.exit_code == 0, res.output
    found = Directions.load(out)
    assert found.method == "interfacegan" and found.vector("up")[0] > 0.95
    assert not out.with_suffix(".png").exists()


def test_generate_and_walk_commands_match_the_python_api(G, tiny, dirs, dirs_file, tmp_path):
    grid = tmp_path / "g.png"
    res = CliRunner().invoke(app, ["generate", "-m", str(tiny), "--backend", "torch", "--precision",
                                   "fp32", "--seeds", "3,4", "--directions", str(dirs_file), "--edit",
                                   "pc1=+2", "-o", str(grid), "--latents-out", str(tmp_path / "z.npy")])
    assert res.exit_code == 0, res.output
    shown = np.asarray(Image.open(grid))
    expected = G.generate([3, 4], edit="pc1=+2", directions=dirs_file)
    assert np.array_equal(shown[2:10, 2:10], expected[0])
    assert Image.open(grid).text["gan_serve.edit"] == "pc1=+2.0"
    z = np.load(tmp_path / "z.npy")
    assert np.allclose(z, lat.latents_for_seeds([3, 4], Z) + 2 * dirs.vector("pc1"), atol=1e-6)

    strip = tmp_path / "w.png"
    res = CliRunner().invoke(app, ["walk", "-m", str(tiny), "--backend", "torch", "--precision", "fp32",
                                   "--directions", str(dirs_file), "--direction", "pc0", "--seed", "7",
                                   "--steps", "3", "--range", "-1,1", "-o", str(strip)])
    assert res.exit_code == 0, res.output
    frames = G.walk(7, "pc0", dirs_file, steps=3, span=(-1, 1))
    assert np.array_equal(np.asarray(Image.open(strip))[2:10, 12:20], frames[1])
    assert Image.open(strip).text["gan_serve.walk"] == "pc0=-1.0..1.0"
    assert "unknown direction 'zz'" in one_line_exit_2(
        ["walk", "-m", str(tiny), "--directions", str(dirs_file), "--direction", "zz"])
    assert "LOW,HIGH" in one_line_exit_2(
        ["walk", "-m", str(tiny), "--directions", str(dirs_file), "--direction", "pc0", "--range", "1"])
