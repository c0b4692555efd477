"""Data: flat folders, ImageFolder trees and zips; unreadable files skipped; empty is an error."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from gan_serve.errors import InputError
from training.data import ImageFiles, batch_indices, load_dataset, probe


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
