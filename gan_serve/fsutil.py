"""Atomic file output: temp file in the target folder, fsync, rename.

Nothing half-written is ever left at the destination, and a failed write leaves
no temp file behind either. Temp files carry the writer's process id
(`.NAME.gs<pid>-XXXXXXXX.tmp`), so the ones a killed process left behind are recognised
and removed by the next run that writes into that folder.

A destination that is not a regular file is never replaced: a FIFO or a character device
(`/dev/null`, `/dev/stdout`, also reached through a symlink) is written through, anything
else (a symlink to a file, a folder, a socket) is refused. `-` means stdout.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

_UMASK = os.umask(0)  # read once at import: os.umask can only be read by setting it
os.umask(_UMASK)
STDOUT = "-"
_TEMP_NAME = re.compile(r"^\..+\.gs(?P<pid>\d+)-[a-z0-9_]{8}\.tmp$")
_cleaned: set[str] = set()  # folders whose stale temp files this process has removed


def check_output_dir(folder: str | os.PathLike) -> Path:
    """Raise OutputError unless `folder` exists, is a folder, and we may write into it."""
    folder = Path(folder)
    try:
        exists = folder.exists()
    except OSError as exc:  # e.g. a parent we may not enter
        raise OutputError(f"cannot reach output folder {str(folder)!r}: {exc.strerror}") from None
    if not exists:
        raise OutputError(f"output folder {str(folder)!r} does not exist; create it first")
    if not folder.is_dir():
        raise OutputError(f"output folder {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {str(folder)!r} is not writable")
    return folder


def writes_through(path: str | os.PathLike) -> bool:
    """True when `path` is a FIFO or character device (directly or through a link): outputs
    are written into it. False for a regular file or nothing; OutputError for anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot reach {str(path)!r}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        return False
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.stat(path).st_mode) or stat.S_ISCHR(os.stat(path).st_mode):
            return True
    kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode)
            else "a device or socket")
    raise OutputError(f"{str(path)!r} is {kind}, not a regular file; refusing to replace it "
                      "(remove it or choose another output path)")


def _write_into(path: Path, src: Path) -> None:
    """Copy `src` into the FIFO or device at `path` (opened without creating or truncating)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a FIFO nobody reads: ENXIO, not a hang
    except OSError as exc:
        reason = "no process is reading it" if exc.errno == 6 else exc.strerror
        raise OutputError(f"cannot write into {str(path)!r}: {reason}") from None
    os.set_blocking(fd, True)
    with open(fd, "wb") as sink, open(src, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            sink.write(chunk)


def _pid_alive_since(pid: int, mtime: float) -> bool:
    """Whether process `pid` runs and started before `mtime` (so it may still hold the file)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    try:  # Linux: a pid reused by a process that started after the file was written is not its writer
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") <= mtime + 1
    except (OSError, ValueError, IndexError, StopIteration):
        return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files our writers left in `folder` when they were killed (their process
    is gone); return what was removed. Temp files of running processes are kept."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            m = _TEMP_NAME.match(entry.name)
            with contextlib.suppress(OSError):
                if m and entry.is_file(follow_symlinks=False) and not _pid_alive_since(
                        int(m["pid"]), entry.stat(follow_symlinks=False).st_mtime):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is fsynced and renamed onto `path`
    (or copied into it when `path` is a FIFO or a device: see `writes_through`)."""
    if str(path) == STDOUT:
        raise OutputError("'-' (stdout) is not supported for this output; give a file name")
    path = Path(path)
    writes_through(path)  # refuse a destination we would not replace before doing any work
    folder = check_output_dir(path.parent if str(path.parent) else ".")
    if str(folder.resolve()) not in _cleaned:
        _cleaned.add(str(folder.resolve()))
        clean_stale_temps(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.gs{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write into folder {str(folder)!r}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if writes_through(path):
            _write_into(path, tmp_path)
            return
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get normal modes
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path; `-` writes to stdout."""
    if str(path) == STDOUT:
        if sys.stdout.isatty():
            raise OutputError("refusing to write image bytes to a terminal; redirect stdout "
                              "(> file, | program) or give -o FILE")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (the model id in provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
