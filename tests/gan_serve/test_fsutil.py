"""Outputs never replace what is not a regular file, and killed writers leave nothing for long."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gan_serve import fsutil
from gan_serve.commands.cli import app
from gan_serve.errors import OutputError

runner = CliRunner()


def one_line_error(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_symlink_to_a_file_is_refused_and_left_alone(tmp_path, small_ckpt):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "grid.png"
    link.symlink_to(target)
    line = one_line_error("generate", "-m", small_ckpt, "--n", 1, "-o", link)
    assert "is a symlink, not a regular file; refusing to replace it" in line
    assert link.is_symlink() and target.read_text() == "keep me"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_folder_or_dangling_link_is_refused(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        fsutil.write_bytes_atomic(tmp_path / "out.png", b"x")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="is a symlink"):
        fsutil.write_bytes_atomic(tmp_path / "dangling.png", b"x")
    assert (tmp_path / "dangling.png").is_symlink()


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    t = threading.Thread(target=reader)
    t.start()
    deadline = time.monotonic() + 10
    while True:  # the reader must have opened its end, else the write end refuses
        try:
            fsutil.write_bytes_atomic(fifo, b"\x89PNG bytes")
            break
        except OutputError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    t.join(10)
    assert got == [b"\x89PNG bytes"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO, not a file put in its place
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_fifo_nobody_reads_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="no process is reading it"):
        fsutil.write_bytes_atomic(fifo, b"x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not list(tmp_path.glob(".*.tmp"))


def test_links_to_character_devices_are_written_through(tmp_path, small_ckpt):
    null = tmp_path / "null.png"
    null.symlink_to("/dev/null")  # what -o /dev/stdout and /proc/self/fd/1 look like
    res = runner.invoke(app, ["generate", "-m", str(small_ckpt), "--n", "1", "-o", str(null)])
    assert res.exit_code == 0, res.output
    assert null.is_symlink() and os.readlink(null) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    full = tmp_path / "full.png"
    full.symlink_to("/dev/full")
    line = one_line_error("generate", "-m", small_ckpt, "--n", 1, "-o", full)
    assert "No space left on device" in line and full.is_symlink()


def test_a_device_node_in_the_output_folder_is_written_through(tmp_path):
    node = tmp_path / "null.png"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    except PermissionError:
        pytest.skip("this machine does not allow mknod (no CAP_MKNOD)")
    fsutil.write_bytes_atomic(node, b"x" * 1000)
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_dash_writes_the_same_bytes_to_stdout(tmp_path, small_ckpt):
    runner.invoke(app, ["generate", "-m", str(small_ckpt), "--n", "2", "-o", str(tmp_path / "g.png")])
    res = runner.invoke(app, ["generate", "-m", str(small_ckpt), "--n", "2", "-o", "-"])
    assert res.exit_code == 0, res.output
    assert res.stdout_bytes == (tmp_path / "g.png").read_bytes()
    assert "wrote -: 2 images" in res.stderr
    res = runner.invoke(app, ["interpolate", "-m", str(small_ckpt), "--from", "1", "--to", "2",
                              "--steps", "3", "-o", "-"])
    assert res.exit_code == 0 and res.stdout_bytes.startswith(b"\x89PNG")


# -- stale temp files -----------------------------------------------------------------------
KILLED_WRITER = """
import os, signal, sys
from gan_serve.fsutil import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half of a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_writer(path: Path) -> Path:
    """Run a writer that is SIGKILLed mid-write; return the temp file it left."""
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (left,) = path.parent.glob(f".{path.name}.gs*.tmp")
    return left


def test_a_killed_writers_temp_file_is_removed_by_the_next_run(tmp_path, small_ckpt):
    left = killed_writer(tmp_path / "model.safetensors")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = tmp_path / f".grid.png.gs{live.pid}-abcdefgh.tmp"  # a running writer's
        held.write_bytes(b"in progress")
        reused = tmp_path / f".x.png.gs{live.pid}-zzzzzzzz.tmp"  # older than the process of that pid
        reused.write_bytes(b"old")
        os.utime(reused, (time.time() - 3600, time.time() - 3600))
        foreign = tmp_path / ".tmpABC123"  # not ours: never touched
        foreign.write_bytes(b"")
        res = runner.invoke(app, ["convert", str(small_ckpt), str(tmp_path / "out.safetensors")])
        assert res.exit_code == 0, res.output
        assert not left.exists() and not reused.exists()
        assert held.exists() and foreign.exists()
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        held.name, ".tmpABC123"]


def test_convert_writes_through_no_temp_file_but_ours(tmp_path, small_ckpt, monkeypatch):
    made: list[str] = []
    real_open = os.open

    def spy(path, flags, *a, **kw):
        if flags & os.O_CREAT:
            made.append(os.path.basename(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", spy)
    res = runner.invoke(app, ["convert", str(small_ckpt), str(tmp_path / "out.safetensors")])
    assert res.exit_code == 0, res.output
    assert made and all(fsutil._TEMP_NAME.match(name) for name in made), made
