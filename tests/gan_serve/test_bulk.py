"""--individual: the files of the parallel, batch-durable writer are the per-file path's bytes."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gan_serve
from gan_serve import bulk, request
from gan_serve import outputs as out
from gan_serve.commands.cli import app
from gan_serve.errors import OutputError


@pytest.fixture(scope="module")
def G(small_ckpt):
    return gan_serve.load(small_ckpt)


@pytest.mark.parametrize("syncfs", [True, False])
def test_files_hold_the_single_image_bytes(G, tmp_path, monkeypatch, syncfs):
    if not syncfs:
        monkeypatch.setattr(bulk, "_SYNCFS", None)  # the per-file fsync fallback (macOS)
    seeds = [3, 4, 5, 900, 2**32 - 1]
    done = []
    n = bulk.write_individual(G, bulk.generated_chunks(G, seeds, 0.7, chunk=2), tmp_path, 0.7,
                              "png", progress=done.append, workers=3)
    assert n == 5 and sum(done) == 5 and len(done) == 3  # one progress step per committed chunk
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(out.seed_filename(s, "png") for s in seeds)
    for s in seeds:
        want = out.single_bytes(G, s, G.generate([s], 0.7)[0], 0.7, "png")
        assert (tmp_path / out.seed_filename(s, "png")).read_bytes() == want


def test_jobs_of_a_few_images_keep_every_seeds_bytes_and_name(G, tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "SLICE", 2)  # 5 images a chunk: jobs of 2, 2 and 1, three workers
    seeds = list(range(40, 51))
    n = bulk.write_individual(G, bulk.generated_chunks(G, seeds, 1.0, chunk=5), tmp_path, 1.0,
                              "png", workers=3)
    assert n == len(seeds) and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        out.seed_filename(s, "png") for s in seeds)
    for s, im in zip(seeds, G.generate(seeds), strict=True):
        assert (tmp_path / out.seed_filename(s, "png")).read_bytes() == out.single_bytes(G, s, im, 1.0, "png")


def test_a_failure_leaves_complete_files_and_no_temp_files(G, tmp_path, monkeypatch):
    real = out.single_encoder

    def encoder(G_, psi, fmt):
        encode = real(G_, psi, fmt)

        def failing(s, im):
            if s == 7:
                raise OSError(28, "No space left on device")
            return encode(s, im)
        return failing

    monkeypatch.setattr(out, "single_encoder", encoder)
    with pytest.raises(OutputError, match="No space left"):
        bulk.write_individual(G, bulk.generated_chunks(G, range(10), 1.0, chunk=3), tmp_path, 1.0, "png")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.startswith(".")]  # no temp file left behind
    assert names == [out.seed_filename(s, "png") for s in range(6)]  # committed chunks only
    for name in names:
        with Image.open(tmp_path / name) as im:
            im.load()  # complete, decodable


def test_generated_chunks_cover_every_seed_once(G):
    chunks = list(bulk.generated_chunks(G, range(10, 25), 1.0, chunk=4))
    assert [len(s) for s, _ in chunks] == [4, 4, 4, 3]
    assert np.array_equal(np.concatenate([im for _, im in chunks]), G.generate(range(10, 25)))


def test_individual_alone_is_not_capped_but_a_grid_is(small_ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(request, "DEFAULT_LIMITS", request.Limits(max_n=8))  # stands for 4,096
    runner = CliRunner()
    r = runner.invoke(app, ["generate", "--model", str(small_ckpt), "--seed", "1", "--n", "20",
                            "--individual", str(tmp_path / "many")])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "many").iterdir())) == 20
    r = runner.invoke(app, ["generate", "--model", str(small_ckpt), "--n", "20",
                            "-o", str(tmp_path / "g.png")])
    assert r.exit_code == 2  # the request layer's limit, with what the CLI offers instead
    assert r.stderr == ("error: n must be an integer from 1 to 8 for a grid, got 20; --individual DIR "
                        "alone (no --output) writes any number of files\n")


def test_a_symlink_among_the_files_is_refused_and_temps_are_removed(G, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / out.seed_filename(2, "png")).symlink_to(victim)
    with pytest.raises(OutputError, match="symlink"):
        bulk.write_individual(G, bulk.generated_chunks(G, range(4), 1.0), tmp_path / "out", 1.0, "png")
    assert victim.read_text() == "keep me"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_a_killed_runs_temp_files_are_cleaned_up(G, tmp_path):
    stale = tmp_path / ".seed0001.png.gs999999999-abcdef12.tmp"  # no such process
    stale.write_bytes(b"half")
    bulk.write_individual(G, bulk.generated_chunks(G, [1], 1.0), tmp_path, 1.0, "png")
    assert not stale.exists() and (tmp_path / "seed0001.png").exists()


def test_missing_seeds_are_those_without_their_final_name(tmp_path):
    assert bulk.missing_seeds(tmp_path / "none", range(3), "png") == [0, 1, 2]  # no folder yet
    (tmp_path / out.seed_filename(1, "png")).write_bytes(b"done")
    (tmp_path / out.seed_filename(2, "png")).symlink_to(tmp_path / "elsewhere")  # the writer refuses it
    (tmp_path / f".{out.seed_filename(3, 'png')}.gs1-abcd1234.tmp").write_bytes(b"half")
    (tmp_path / out.seed_filename(4, "webp")).write_bytes(b"another format")
    assert bulk.missing_seeds(tmp_path, range(6), "png") == [0, 3, 4, 5]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   PermissionError(errno.EACCES, "Permission denied")])
def test_a_full_disk_or_a_refused_write_is_one_line_and_exit_2(small_ckpt, tmp_path, monkeypatch, error):
    real, calls = bulk._write_file, []

    def write(tmp, data):
        calls.append(tmp)
        if len(calls) == 5:  # the fifth file of the first chunk
            raise error
        real(tmp, data)

    monkeypatch.setattr(bulk, "_write_file", write)
    folder = tmp_path / "many"
    r = CliRunner().invoke(app, ["generate", "--model", str(small_ckpt), "--seed", "0", "--n", "40",
                                 "--individual", str(folder)])
    assert r.exit_code == 2
    assert r.stderr == f"error: cannot write into {str(folder)!r}: {error.strerror}\n"
    assert list(folder.iterdir()) == []  # the chunk never committed: no file, no temp file
