"""Which format a model file is, from its bytes: the one owner of format sniffing.

safetensors is recognised by its structure first (an 8-byte little-endian header length N,
then a JSON object of N bytes that fits inside the file), and only then are pickle and zip
markers looked at: the bytes of N can look like a pickle's protocol marker (N = 1,408 is
``80 05 00 ...``, and native headers are about that long). Torch-free, so an ONNX-only
deployment sniffs with it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from .errors import CheckpointError
from .trust import refuse_torchscript

MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library refuses longer headers too
_BLANK = b" \t\r\n"


def looks_like_safetensors(fh: BinaryIO, size: int) -> bool:
    """True when `fh` (`size` bytes) starts with a safetensors header: a length N that fits
    the file, followed by N bytes that begin with `{` and end with `}` (blanks may pad it)."""
    fh.seek(0)
    head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    if not 2 <= n <= min(size - 8, MAX_SAFETENSORS_HEADER):
        return False
    start = max(9, 8 + n - 4096)  # the writer pads with a few blanks; 4 KiB is plenty
    fh.seek(start)
    return fh.read(8 + n - start).rstrip(_BLANK).endswith(b"}")


def sniff_stream(fh: BinaryIO, size: int) -> str | None:
    """'safetensors', 'torch-zip', 'torch-legacy' or None, from the bytes of `fh`."""
    if looks_like_safetensors(fh, size):
        return "safetensors"
    fh.seek(0)
    head = fh.read(4)
    if head == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:  # a pickle's PROTO opcode
        return "torch-legacy"
    return None


def sniff(path: Path) -> str:
    """'safetensors', 'torch-zip', 'torch-legacy' or raise CheckpointError.

    A TorchScript archive (a program, see gan_serve.trust) is refused here, whatever its name.
    """
    if not path.exists():
        raise CheckpointError(f"no such file: {str(path)!r}")
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is not a file")
    with open(path, "rb") as fh:
        size = path.stat().st_size
        kind = sniff_stream(fh, size) if size else "empty"
    if kind == "empty":
        raise CheckpointError(f"{str(path)!r} is empty (0 bytes)")
    if kind == "torch-zip":
        refuse_torchscript(path)
    if kind is None:
        raise CheckpointError(
            f"{str(path)!r} is not a checkpoint: expected a .safetensors file or a torch.save() "
            "file (.pth/.pt)"
        )
    return kind
