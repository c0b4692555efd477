"""Data: flat folders, ImageFolder trees and zips; unreadable files skipped; empty is an error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_serve.errors import InputError
from training.data import ImageFiles, batch_indices, describe, load_dataset, probe


def _write_images(folder, n, size=(80, 60)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = np.full((size[1], size[0], 3), i * 20 % 255, np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")


def test_flat_folder_with_an_unreadable_file(tmp_path):
    _write_images(tmp_path / "images", 5)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not really a jpeg")
    ds = load_dataset(str(tmp_path / "images"), 32, 3)
    assert len(ds) == 5 and ds.skipped == 1
    x = ds[0]
    assert tuple(x.shape) == (3, 32, 32) and -1.0 <= float(x.min()) <= float(x.max()) <= 1.0


def test_imagefolder_tree_and_greyscale(tmp_path):
    _write_images(tmp_path / "faces" / "class_a", 3)
    _write_images(tmp_path / "faces" / "class_b", 2)
    ds = load_dataset(str(tmp_path / "faces"), 64, 1)
    assert len(ds) == 5 and tuple(ds[4].shape) == (1, 64, 64)


def test_zip_of_images(tmp_path):
    _write_images(tmp_path / "src", 4)
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as zf:
        for p in sorted((tmp_path / "src").iterdir()):
            zf.write(p, f"inner/{p.name}")
    ds = ImageFiles(str(tmp_path / "data.zip"), 32, 3)
    assert len(ds) == 4 and tuple(ds[2].shape) == (3, 32, 32)


def test_empty_and_missing_data_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no readable images"):
        load_dataset(str(tmp_path / "empty"), 64, 3)
    with pytest.raises(InputError, match="neither a folder"):
        load_dataset(str(tmp_path / "nope"), 64, 3)
    with pytest.raises(InputError, match="builtin:avatars"):
        load_dataset("builtin:cats", 64, 3)


def test_batch_order_is_a_function_of_seed_and_step():
    a = [batch_indices(s, 50, 8, seed=1) for s in range(20)]
    assert a == [batch_indices(s, 50, 8, seed=1) for s in range(20)]
    epoch0 = sum(a[:7], [])[:50]  # 6.25 batches of 8 make one epoch
    assert sorted(epoch0) == list(range(50))  # every item once per epoch
    r0, r1 = batch_indices(3, 50, 4, 1, rank=0, world=2), batch_indices(3, 50, 4, 1, rank=1, world=2)
    assert not set(r0) & set(r1)


def test_a_file_that_fails_to_decode_mid_run_is_replaced_by_the_next(tmp_path):
    _write_images(tmp_path / "images", 3)
    ds = load_dataset(str(tmp_path / "images"), 32, 3)
    damaged = tmp_path / "images" / "img1.png"
    damaged.write_bytes(damaged.read_bytes()[:40])  # truncated after the data set was listed
    assert torch.equal(ds[1], ds[2])  # img2 stands in for img1, the same way every time


def test_probe_and_data_range_of_real_folders(tmp_path):
    _write_images(tmp_path / "images", 5)
    sample = probe(load_dataset(str(tmp_path / "images"), 32, 3), seed=0)
    assert sample.shape == (5, 3, 32, 32) and float(sample.min()) >= -1.0 and float(sample.max()) <= 1.0


# -- hostile data: bombs, links out, files that go bad ----------------------------------------
def png_bomb(path, side: int) -> int:
    """A 1-bit PNG of side x side zero pixels, written by hand (never held in memory whole):
    a few tens of KB on disk that decode to side**2 pixels. Returns the file size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    rows = 4096
    idat = b"".join(z.compress(row * min(rows, side - i)) for i in range(0, side, rows)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path.stat().st_size


def test_decompression_bombs_are_skipped_unread_and_counted(tmp_path):
    _write_images(tmp_path / "images", 2)
    size = png_bomb(tmp_path / "images" / "bomb.png", 20_000)  # 400 M pixels: over PIL's own limit
    assert size < 100_000
    png_bomb(tmp_path / "images" / "big.png", 5_000)  # 25 M pixels: over ours, under PIL's error
    ds = load_dataset(str(tmp_path / "images"), 32, 3)
    assert len(ds) == 2 and ds.skips == {"too large": 2}
    assert describe(ds, "x") == "x: 2 images (skipped: 2 too large (over 16,777,216 pixels))"
    with pytest.raises(InputError, match=r"skipped 4 too large \(over 4,799 pixels\)"):
        load_dataset(str(tmp_path / "images"), 32, 3, max_pixels=80 * 60 - 1)  # --max-image-pixels


def test_a_zip_bomb_member_is_not_read_into_memory(tmp_path, monkeypatch):
    _write_images(tmp_path / "images", 2)
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((tmp_path / "images").iterdir()):
            zf.write(p, p.name)
        with zf.open("huge.png", "w", force_zip64=True) as fh:  # 64 MiB of zeros, ~64 KB compressed
            for _ in range(64):
                fh.write(bytes(1 << 20))
    assert path.stat().st_size < 200_000
    reads: list[int] = []
    real_read = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: reads.append(n) or real_read(self, n))
    ds = load_dataset(str(path), 32, 3, max_pixels=1_000_000)  # members over ~5 MB are refused
    assert len(ds) == 2 and ds.skips == {"too large": 1}
    assert all(0 < n <= ds.max_bytes + 1 for n in reads)  # never a whole-member read


def test_links_out_of_the_data_folder_are_skipped_and_counted(tmp_path):
    _write_images(tmp_path / "images", 2)
    _write_images(tmp_path / "private", 1)
    (tmp_path / "images" / "secret.png").symlink_to(tmp_path / "private" / "img0.png")
    (tmp_path / "images" / "elsewhere").symlink_to(tmp_path / "private", target_is_directory=True)
    (tmp_path / "images" / "inside.png").symlink_to(tmp_path / "images" / "img0.png")  # stays in
    ds = load_dataset(str(tmp_path / "images"), 32, 3)
    assert len(ds) == 3 and ds.skips["links out of the data folder"] >= 1
    assert not any("private" in str(Path(n).resolve()) for n in ds.items)


def test_files_that_go_bad_during_the_run_are_counted_in_the_log(tmp_path, capsys):
    _write_images(tmp_path / "images", 3)
    ds = load_dataset(str(tmp_path / "images"), 32, 3, max_pixels=10_000)
    png_bomb(tmp_path / "images" / "img0.png", 20_000)  # replaced by a bomb after listing
    (tmp_path / "images" / "img1.png").write_bytes(b"gone bad")
    for _ in range(3):
        assert torch.equal(ds[0], ds[2]) and torch.equal(ds[1], ds[2])
    assert ds.went_bad == {str(tmp_path / "images" / f"img{i}.png") for i in (0, 1)}
    log = capsys.readouterr().err.splitlines()
    assert len(log) == 2 and "img0.png (too large since the run started)" in log[0]
