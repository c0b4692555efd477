"""What may run code from a file: the one owner of that rule.

Trusted from any source (nothing in them runs): safetensors, pickles that load with
``torch.load(weights_only=True)``, ONNX. A TorchScript archive is a program (its ``forward``
and ``__setstate__`` are code that can, for example, write files), so it is loaded only when
the user asks for it by name: ``--backend torchscript --trust-code`` (Python:
``backend="torchscript", trust_code=True``), never because a file's bytes look like one.
A full-model pickle is refused by the checkpoint reader; `convert --trust-pickle` alone opens
one (gan_serve.full_pickle). Torch-free, so the sniffing works in an ONNX-only deployment.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import UnsafeCheckpointError

OPT_IN = '--backend torchscript --trust-code (Python: backend="torchscript", trust_code=True)'


def is_torchscript(path: Path) -> bool:
    """True for a zip holding TorchScript code (`code/` or `constants.pkl`), whatever its name."""
    try:
        if not (path.is_file() and zipfile.is_zipfile(path)):
            return False
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False  # the checkpoint reader reports the corruption
    return any(n.startswith("code/") or "/code/" in n or n.rsplit("/", 1)[-1] == "constants.pkl"
               for n in names)


def torchscript_refused(path: Path, opt_in: str = OPT_IN) -> UnsafeCheckpointError:
    """The one-line refusal for a TorchScript file that was not explicitly trusted."""
    return UnsafeCheckpointError(
        f"refused {str(path)!r}: it is a TorchScript archive, which is a program: loading it runs "
        f"code from the file. Nothing in it was run. If you trust its author, load it with {opt_in}"
    )


def refuse_torchscript(path: Path) -> None:
    """Raise the refusal when `path` is a TorchScript archive (every format sniffer calls this)."""
    if is_torchscript(path):
        raise torchscript_refused(path)
