"""Key latents from .npy files and bodies: every declared size checked against the limits and
the bytes present, and a file list counted, before any data is read."""

from __future__ import annotations

import base64
import io
import os
import struct

import numpy as np
import pytest

from gan_serve import latent_files
from gan_serve.errors import InputError
from gan_serve.latent_files import MAX_LATENT_VALUES, decode_latents, read_latents


def npy(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file with this header text, as numpy lays it out (padded to 64 bytes)."""
    fmt = "<H" if version[0] == 1 else "<I"
    prefix = 6 + 2 + struct.calcsize(fmt)
    text = header + " " * ((-(prefix + len(header) + 1)) % 64) + "\n"
    return (b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(text)) + text.encode("latin1")
            + data)


def saved(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def body(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hdr(shape: str, descr: str = "'<f4'", extra: str = "") -> str:
    return f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, {extra}}}"


F16 = hdr("(2, 2)")  # 16 bytes of float32 data
HOSTILE = [  # (the file, what the one-line message says)
    (npy(hdr("(True, 4)"), b"\0" * 16), "shape (True, 4)"),
    (npy(hdr("(2, False)")), "shape (2, False)"),
    (npy(hdr("(-1, 4)")), "shape (-1, 4)"),
    (npy(hdr("(-4, -4)"), b"\0" * 64), "shape (-4, -4)"),
    (npy(hdr("(0, 4)")), "shape (0, 4)"),
    (npy(hdr("()"), b"\0" * 4), "shape ()"),
    (npy(hdr("(1, 1, 4)"), b"\0" * 16), "(1, 1, 4)"),
    (npy(hdr(f"({2**40}, {2**40})")), "at most 4,194,304"),
    (npy(hdr(f"({2**62}, 0)")), "shape (4611686018427387904, 0)"),
    (npy(hdr("(2, 2)", "'<i4'"), b"\0" * 16), "int32 values"),
    (npy(hdr("(2, 2)", "'|O'"), b"\0" * 32), "object values"),
    (npy(hdr("(2, 2)", "[('a', '<f4')]"), b"\0" * 16), "[('a'"),
    (npy(F16, b"\0" * 15), "declares 16 bytes of data, but 15"),
    (npy(F16, b"\0" * 17), "declares 16 bytes of data, but 17"),
    (npy(F16, b"\0" * 16, (3, 0)), "version 3.0"),
    (npy(hdr("[2, 2]"), b"\0" * 16), "shape"),
    (npy("{'descr': '<f4', 'shape': (2, 2), }", b"\0" * 16), "keys"),
    (npy("[1, 2]"), "dict"),
    (npy("(" * 5000 + ")" * 5000), ""),
    (npy(hdr("(2, 2)", extra="'x': " + "[" * 3000 + "]" * 3000)), ""),
    (b"\x93NUMPY\x01\x00\xff\xff{", "EOF"),
    (b"\x93NUMPZ\x01\x00", "magic"),
    (b"", "EOF"),
]


@pytest.mark.parametrize("raw,message", HOSTILE)
def test_hostile_headers_are_one_line_input_errors(raw, message, tmp_path):
    with pytest.raises(InputError, match="latents: not base64 of a .npy file") as exc:
        decode_latents(body(raw))
    assert message in str(exc.value) and "\n" not in str(exc.value)
    (tmp_path / "z.npy").write_bytes(raw)
    with pytest.raises(InputError, match="cannot read latents from ") as exc:
        read_latents([tmp_path / "z.npy"])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_honest_files_of_every_float_layout_read_as_float32(tmp_path):
    z = np.random.RandomState(0).randn(3, 5)
    for a in (z.astype(np.float32), z.astype(">f8"), z.astype(np.float16), np.asfortranarray(z)):
        got = decode_latents(body(saved(a)))
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got, a.astype(np.float32))
    assert decode_latents(body(saved(z[0]))).shape == (1, 5)  # one latent (z_dim,) is one key
    (tmp_path / "v2.npy").write_bytes(npy(hdr("(1, 2)"), np.float32([1, 2]).tobytes(), (2, 0)))
    assert read_latents([tmp_path / "v2.npy"]).tolist() == [[1.0, 2.0]]


def test_file_lists_are_counted_before_any_file_is_opened(tmp_path):
    missing = [tmp_path / f"none{i}.npy" for i in range(4097)]  # opening any would fail
    with pytest.raises(InputError, match="4,097 latent files; an interpolation passes through at "
                                         "most 4,096 keys"):
        read_latents(missing)
    with pytest.raises(InputError, match="no latent files"):
        read_latents([])


def test_headers_are_checked_before_any_data_is_read(tmp_path, monkeypatch):
    def no_data(*_):
        raise AssertionError("data was read before every header was checked")

    monkeypatch.setattr(latent_files, "read_data", no_data)
    files = []
    for i, shape in enumerate(((3, 8), (3, 8), (1, 7))):
        files.append(tmp_path / f"{i}.npy")
        files[-1].write_bytes(saved(np.zeros(shape, np.float32)))
    with pytest.raises(InputError, match="the latent files hold 6 keys of z_dim 8; an "
                                         "interpolation passes through at most 4 keys"):
        read_latents(files[:2], max_keys=4)
    with pytest.raises(InputError, match="different z sizes: 8, 8, 7"):
        read_latents(files)
    big = MAX_LATENT_VALUES // 1024 + 1  # 4,097 keys of z_dim 1024 in two files
    for name, keys in (("a.npy", big // 2), ("b.npy", big - big // 2)):
        (tmp_path / name).write_bytes(npy(hdr(f"({keys}, 1024)"), b"\0" * (keys * 4096)))
    with pytest.raises(InputError, match="hold 4,097 keys of z_dim 1024"):
        read_latents([tmp_path / "a.npy", tmp_path / "b.npy"])


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "keys.npy"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(InputError, match="keys.npy': not a regular file"):
        read_latents([fifo])
    with pytest.raises(InputError, match="Is a directory|not a regular file"):
        read_latents([tmp_path])


def test_body_lists_that_are_not_numbers_are_input_errors():
    for bad in ([["a", "b"]], [[1.0], [2.0, 3.0]], [], [1, 2], [[[1.0]]]):
        with pytest.raises(InputError, match="equally long lists of numbers"):
            decode_latents(bad)
