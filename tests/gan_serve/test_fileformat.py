"""The format sniffer reads a safetensors header by its structure before any pickle marker:
a header length whose bytes look like a pickle's PROTO opcode (0x80, then 2..5) is no pickle."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import pytest
import torch

from gan_serve.arch import DCGANGenerator
from gan_serve.checkpoint import load_generator, save_native
from gan_serve.errors import CheckpointError
from gan_serve.fileformat import sniff, sniff_stream
from gan_serve.spec import DCGANConfig, ModelSpec

TENSOR = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
MAX_HEADER = 64 * 1024


class Window:
    """The first `size` bytes of a shared buffer, read the way sniff_stream reads a file
    (seek, read), so that 65,529 headers cost no 65,529 copies of up to 64 KiB."""

    def __init__(self, buf: bytearray, size: int) -> None:
        self.view, self.size, self.pos = memoryview(buf), size, 0

    def seek(self, pos: int) -> None:
        self.pos = pos

    def read(self, n: int) -> bytes:
        end = min(self.pos + n, self.size)
        out = bytes(self.view[self.pos : end])
        self.pos = end
        return out


def test_every_header_length_from_8_bytes_to_64_kib_is_safetensors():
    """Header n (8 <= n <= 64 KiB) = `{}` and blanks while a tensor does not fit, then one
    tensor and metadata padded with x, written in place into one buffer (then 4 data bytes)."""
    pre = b'{"__metadata__":{"p":"'
    post = b'"},' + json.dumps(TENSOR, separators=(",", ":")).encode()[1:]
    buf = bytearray(b"x" * (8 + MAX_HEADER + 4))
    wrong, last = [], None
    for n in range(8, MAX_HEADER + 1):
        if n < len(pre) + len(post):
            buf[8 : 8 + n] = b"{}" + b" " * (n - 2)
        else:
            if last is not None:
                buf[last : last + len(post) + 4] = b"x" * (len(post) + 4)  # the previous tail
            buf[8 : 8 + len(pre)] = pre
            last = 8 + n - len(post)
            buf[last : 8 + n + 4] = post + b"\0\0\0\0"
        buf[:8] = struct.pack("<Q", n)
        if sniff_stream(Window(buf, 8 + n + 4), 8 + n + 4) != "safetensors":
            wrong.append(n)
    header = bytes(buf[8 : 8 + MAX_HEADER])
    assert json.loads(header)["w"] == TENSOR["w"] and len(header) == MAX_HEADER  # well-formed
    assert not wrong, f"{len(wrong)} header lengths misread, e.g. {wrong[:8]}"


def tiny_file_with_header_length(path: Path, n: int) -> Path | None:
    """A tiny DCGAN saved by gan-serve, its header padded to exactly `n` bytes: native (spec in
    the metadata) when that fits, else plain weights (inferred on load); None if neither fits."""
    if not path.with_name("tiny.safetensors").exists():
        config = DCGANConfig(z_dim=2, widths=[2], channels=1, first_kernel=1)
        spec = ModelSpec(config=config.to_dict(), z_dim=2, img_resolution=2, channels=1)
        save_native(DCGANGenerator(config), spec, path.with_name("tiny.safetensors"))
    raw = path.with_name("tiny.safetensors").read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8 : 8 + size]), raw[8 + size :]
    for meta in (header["__metadata__"], {}):  # native first, then without the spec
        header["__metadata__"] = {**meta, "pad": ""}
        base = len(json.dumps(header, separators=(",", ":")))
        if n >= base:
            header["__metadata__"]["pad"] = "x" * (n - base)
            text = json.dumps(header, separators=(",", ":")).encode()
            path.write_bytes(struct.pack("<Q", len(text)) + text + data)
            return path
    return None


def test_files_with_pickle_like_header_lengths_load(tmp_path):
    """Every header length whose first byte is 0x80, the pickle PROTO opcode, from the
    shortest file gan-serve can write to 64 KiB (1,408 = 0x580 is `80 05`, a protocol-5
    marker, and about a native header's size), loads, natively where the spec fits."""
    lengths = [n for n in range(8, MAX_HEADER + 1) if n & 0xFF == 0x80] + [1409, 65535, MAX_HEADER]
    misread_before = [n for n in lengths if n < 0x600]  # 80 00 .. 80 05: read as a pickle
    kinds = {}
    for n in lengths:
        path = tiny_file_with_header_length(tmp_path / f"g{n}.safetensors", n)
        if path is None:
            continue
        assert path.read_bytes()[8 + n - 1 : 8 + n] == b"}" and sniff(path) == "safetensors"
        loaded = load_generator(path)
        assert loaded.spec.z_dim == 2 and loaded.spec.img_resolution == 2
        kinds[n] = loaded.source_format
        path.unlink()
    assert kinds[1408] == "native safetensors" and kinds[MAX_HEADER] == "native safetensors"
    assert min(kinds) <= 640 and len(kinds) >= len(lengths) - 3  # plain weights from 640 up
    assert set(misread_before) - set(kinds) <= {0x080, 0x180, 0x280}  # too short for any tensor


def test_pickles_and_zips_are_still_told_apart(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "new.pth")
    torch.save({"w": torch.zeros(1)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"w": 1}, protocol=2))
    assert sniff(tmp_path / "new.pth") == "torch-zip"
    assert sniff(tmp_path / "old.pth") == "torch-legacy"
    assert sniff(tmp_path / "plain.pkl") == "torch-legacy"


@pytest.mark.parametrize("data", [
    struct.pack("<Q", 1408) + b"{" + b" " * 50,  # a length longer than the file
    struct.pack("<Q", 20) + b"{" + b"x" * 19,  # no closing brace
    struct.pack("<Q", 2**40) + b"{}",
    b"\x80\x05" + b"\0" * 6 + b"[]",  # a pickle marker and no header: not safetensors
    b"junk",
])
def test_a_header_that_does_not_fit_is_not_safetensors(tmp_path, data):
    assert sniff_stream(io.BytesIO(data), len(data)) != "safetensors"
    (tmp_path / "x.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError):
        load_generator(tmp_path / "x.safetensors")
