"""Hostile files in a data folder: FIFOs, devices, sockets, symlink loops and links out, at the
start of a run and swapped in during it. Every open is bounded: each test runs the open in a
thread and fails if it has not returned after a generous wait (a hang, not a speed, is tested)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_serve.errors import InputError
from training.config import MAX_IMAGE_PIXELS
from training.data import NOT_REGULAR, OUTSIDE, UNREADABLE, LinksOut, NotRegular, load_dataset, open_regular

HANG = 60  # seconds: a bounded open returns at once; one that blocks on a FIFO never does


def bounded(fn, *args):
    """fn(*args) in a daemon thread: its result or its exception, or a failure if it hangs."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return: it blocks")
    if "error" in out:
        raise out["error"]
    return out["value"]


def _write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((40, 40, 3), 30 + 60 * i, np.uint8)).save(folder / f"img{i}.png")


def _swap(path: Path, make) -> None:
    """Replace a listed file by something else, as another process could during a run."""
    path.unlink()
    make(path)


def test_a_fifo_named_png_is_skipped_at_start_without_blocking(tmp_path):
    _write_images(tmp_path / "images", 2)
    os.mkfifo(tmp_path / "images" / "x.png")  # opening it for reading would wait for a writer
    ds = bounded(load_dataset, str(tmp_path / "images"), 32, 3)
    assert len(ds) == 2 and ds.skips == {NOT_REGULAR: 1}
    assert "1 not regular files" in ds.skip_note()


def test_a_file_swapped_for_a_fifo_mid_run_is_skipped_without_blocking(tmp_path, capsys):
    _write_images(tmp_path / "images", 3)
    ds = load_dataset(str(tmp_path / "images"), 32, 3)
    fifo = tmp_path / "images" / "img1.png"
    _swap(fifo, os.mkfifo)
    with pytest.raises(NotRegular):
        bounded(open_regular, fifo, ds.root)  # the loader's open, on its own
    assert torch.equal(bounded(ds.__getitem__, 1), ds[2])  # the next readable file stands in
    assert ds.went_bad == {str(fifo)}
    assert "img1.png (not a regular file since the run started)" in capsys.readouterr().err


def test_the_open_itself_does_not_block_when_a_fifo_slips_past_the_stat(tmp_path, monkeypatch):
    """A swap between the stat and the open (a race) meets the non-blocking open and its fstat."""
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    real_stat = os.stat
    looks_regular = os.stat_result((stat.S_IFREG | 0o644, *real_stat(fifo)[1:]))
    monkeypatch.setattr(os, "stat",
                        lambda p, *a, **k: looks_regular if Path(p) == fifo else real_stat(p, *a, **k))
    with pytest.raises(NotRegular):
        bounded(open_regular, fifo, tmp_path.resolve())


def test_a_symlink_loop_is_skipped_and_counted_as_unreadable(tmp_path):
    _write_images(tmp_path / "images", 2)
    images = tmp_path / "images"
    (images / "a.png").symlink_to(images / "b.png")
    (images / "b.png").symlink_to(images / "a.png")
    (images / "self.png").symlink_to(images / "self.png")
    ds = bounded(load_dataset, str(images), 32, 3)
    assert len(ds) == 2 and ds.skips == {UNREADABLE: 3}
    with pytest.raises(OSError):
        open_regular(images / "self.png", ds.root)


def test_gan_train_starts_on_a_folder_with_a_loop_and_a_fifo(tmp_path):
    _write_images(tmp_path / "images", 4)
    (tmp_path / "images" / "loop.png").symlink_to(tmp_path / "images" / "loop.png")
    os.mkfifo(tmp_path / "images" / "pipe.png")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-m", "training", "--dry-run", "--data", str(tmp_path / "images"),
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                         env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "4 images (skipped: 1 not regular files" in res.stderr and "1 unreadable" in res.stderr


def test_a_file_swapped_for_a_link_out_mid_run_is_not_followed(tmp_path, capsys):
    _write_images(tmp_path / "images", 3)
    _write_images(tmp_path / "private", 2)
    ds = load_dataset(str(tmp_path / "images"), 32, 3)
    link = tmp_path / "images" / "img1.png"
    _swap(link, lambda p: p.symlink_to(tmp_path / "private" / "img0.png"))
    with pytest.raises(LinksOut):
        open_regular(link, ds.root)
    assert torch.equal(ds[1], ds[2])
    assert "img1.png (a link out of the data folder since the run started)" in capsys.readouterr().err


def test_a_folder_on_the_way_swapped_for_a_link_out_is_not_followed(tmp_path):
    _write_images(tmp_path / "images" / "cls", 2)
    _write_images(tmp_path / "images" / "other", 1)
    _write_images(tmp_path / "private", 2)
    ds = load_dataset(str(tmp_path / "images"), 32, 3)
    cls = tmp_path / "images" / "cls"
    for p in cls.iterdir():
        p.unlink()
    cls.rmdir()
    cls.symlink_to(tmp_path / "private", target_is_directory=True)  # same names, other files
    with pytest.raises(LinksOut):
        open_regular(cls / "img0.png", ds.root)
    assert all(torch.equal(ds[i], ds[2]) for i in (0, 1))


def test_devices_and_sockets_are_never_read(tmp_path):
    _write_images(tmp_path / "images", 2)
    images = tmp_path / "images"
    (images / "null.png").symlink_to("/dev/null")  # a device, and outside the folder
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(images / "sock.png"))
        ds = bounded(load_dataset, str(images), 32, 3)
    finally:
        sock.close()
    assert len(ds) == 2 and ds.skips == {OUTSIDE: 1, NOT_REGULAR: 1}


def test_a_device_node_inside_the_folder_is_not_opened(tmp_path):
    _write_images(tmp_path / "images", 2)
    dev = tmp_path / "images" / "zero.png"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: endless bytes if read
    except (PermissionError, OSError):
        pytest.skip("this machine does not let the tests create device nodes (needs CAP_MKNOD)")
    ds = bounded(load_dataset, str(tmp_path / "images"), 32, 3)
    assert len(ds) == 2 and ds.skips == {NOT_REGULAR: 1}
    with pytest.raises(NotRegular):
        bounded(open_regular, dev, ds.root)


def test_a_fifo_given_as_the_zip_is_one_line_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "data.zip")
    with pytest.raises(InputError, match="is not a regular file"):
        bounded(load_dataset, str(tmp_path / "data.zip"), 32, 3)


def test_the_pixel_limit_is_bounded_by_the_code_and_leaves_pil_alone(tmp_path):
    _write_images(tmp_path / "images", 2)
    before = Image.MAX_IMAGE_PIXELS
    load_dataset(str(tmp_path / "images"), 32, 3, max_pixels=MAX_IMAGE_PIXELS)
    assert before == Image.MAX_IMAGE_PIXELS  # nothing a run says switches PIL's own check off
    with pytest.raises(InputError, match="max_pixels must be an integer from 1 to 134,217,728"):
        load_dataset(str(tmp_path / "images"), 32, 3, max_pixels=10**15)
