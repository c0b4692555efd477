"""Reading `torch.save` files so that they cost no more memory than the bytes they hold.

``torch.load(weights_only=True)`` runs no code, but a few KB can still declare gigabytes:
a tensor may be a stride-0 expansion of one value (4 bytes that become 1 GiB when copied
into a module), a pickle may call ``bytearray(3 * 2**30)``, a quantized tensor is allocated
from its declared shape before its storage is attached, and a compressed zip member may
inflate. So, before torch.load: the zip's members must fit in the file and the pickle may
name none of `REFUSED`; after it, before anything is copied: `check_views` refuses every
tensor whose values are not all in its own bytes, and `check_dtypes` every exotic dtype,
each by name in one line (CheckpointError). Storages themselves are what the file holds:
torch checks each zip record's size against its declared size before allocating it.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import CheckpointError, UnsafeCheckpointError, first_line
from .trust import torchscript_refused

MAX_PICKLE_BYTES = 64 * 2**20  # data.pkl of a state dict is ~100 bytes per tensor
# Names torch's weights_only unpickler allows that a checkpoint of dense weights never needs,
# each of which builds something larger than its bytes or that the loaders cannot use.
REFUSED = {
    "builtins.bytearray": "a bytearray sized by a number in the file",
    "torch._utils._rebuild_qtensor": "a quantized tensor (allocated from its declared shape)",
    "torch._utils._rebuild_sparse_tensor": "a sparse tensor",
    "torch._utils._rebuild_nested_tensor": "a nested tensor",
    "torch._utils._rebuild_meta_tensor_no_storage": "a meta tensor (a shape without values)",
    "torch._utils._rebuild_wrapper_subclass": "a tensor subclass without storage",
    "torch._utils._rebuild_device_tensor_from_numpy": "a tensor copied at load time",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "a tensor copied at load time",
    "torch.serialization._get_layout": "a non-strided (sparse) tensor layout",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER, the first pickle
REFUSED_MODULES = ("torch.nested.", "torch.distributed.")  # jagged and distributed tensors
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"refused {str(path)!r}: {why}; nothing was allocated for it")


def scan_pickle(data: bytes | object, path: Path) -> list[object]:
    """Refuse a pickle that names one of `REFUSED` (before torch.load builds anything).

    `data` is bytes or a binary file positioned at a pickle; the last string pushed before
    a GLOBAL is, in a state dict, the key of the value it builds, so the message names it."""
    last_str, args = None, []
    try:
        for op, arg, _ in pickletools.genops(data):
            args.append(arg)
            if op.name == "GLOBAL":
                full = str(arg).replace(" ", ".")
                why = REFUSED.get(full) or ("a jagged or distributed tensor"
                                            if full.startswith(REFUSED_MODULES) else None)
                if why:
                    near = f" at key {last_str!r}" if last_str else ""
                    raise _fail(path, f"it holds {why} ({full}){near}; gan-serve loads dense "
                                      "float tensors only")
            elif isinstance(arg, str):
                last_str = arg[:80]
    except (ValueError, EOFError) as exc:  # genops on bytes that are not a pickle
        raise CheckpointError(f"{str(path)!r} is truncated or corrupt and cannot be read "
                              f"({first_line(exc, 120)})") from None
    return args


def prescan(path: Path, kind: str) -> None:
    """Checks that need no torch.load: zip members fit in the file, and every pickle in it
    names nothing in `REFUSED`."""
    if kind == "torch-zip":
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                total = sum(i.file_size for i in infos)
                if total > path.stat().st_size:  # stored members never exceed the file
                    raise _fail(path, f"its zip members unpack to {total:,} bytes but the file "
                                      f"holds {path.stat().st_size:,} (compressed members; "
                                      "torch.save never compresses)")
                pkl = [i for i in infos if i.filename.rsplit("/", 1)[-1] == "data.pkl"]
                if len(pkl) != 1 or pkl[0].file_size > MAX_PICKLE_BYTES:
                    return  # torch.load reports the missing or oversized record
                data = zf.read(pkl[0])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(f"{str(path)!r} is truncated or corrupt and cannot be read "
                                  f"({first_line(exc, 120)})") from None
        scan_pickle(data, path)
        return
    with open(path, "rb") as fh:  # legacy format: 5 pickles, then the raw storages
        if LEGACY_MAGIC not in scan_pickle(fh, path):
            return  # one plain pickle: torch.load refuses it (weights_only or bad magic)
        for _ in range(4):
            scan_pickle(fh, path)


def load_weights_only(path: Path, kind: str) -> object:
    """torch.load(weights_only=True) after `prescan`, then `check_views`; every failure is a
    CheckpointError (UnsafeCheckpointError for a pickle that would need code)."""
    if kind not in ("torch-zip", "torch-legacy"):
        raise CheckpointError(f"{str(path)!r} is a {kind} file, not a torch.save() file")
    prescan(path, kind)
    try:
        with open(path, "rb") as fh:  # a file object: torch.load reads a path ending in
            obj = torch.load(fh, map_location="cpu", weights_only=True)  # .safetensors as one
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise UnsafeCheckpointError(
                f"refused {str(path)!r}: it is a pickle that needs arbitrary code to load "
                "(a pickled module or object, e.g. torch.save(model)); nothing in it was run. "
                "Re-save the weights with torch.save(model.state_dict(), path), or, for a file you "
                "made or trust, convert it once: gan-serve convert FILE g.safetensors --trust-pickle "
                "(that runs code from the file)"
            ) from None
        raise CheckpointError(f"{str(path)!r} is corrupt: {exc}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError,
            MemoryError, TypeError, AttributeError, IndexError) as exc:
        if "TorchScript" in str(exc):  # torch's own zip reader saw a TorchScript archive
            raise torchscript_refused(path) from None
        raise CheckpointError(
            f"{str(path)!r} is truncated or corrupt and cannot be read ({first_line(exc, 200)})"
        ) from None
    check_views(obj, repr(str(path)))
    return obj


def _key_text(k: object) -> str:
    # str() of a deeply nested tuple key would recurse without bound
    return k[:80] if isinstance(k, str) else repr(k) if isinstance(k, int | float) else type(k).__name__


def tensors_in(obj: object) -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted key, tensor) for every tensor in nested dicts, lists and tuples. Iterative,
    and each container once: a pickle can nest deeper than Python recursion goes, and its
    memo can share one list so often that walking every path would never end."""
    stack, seen = [("", obj)], set()
    while stack:
        prefix, cur = stack.pop()
        if isinstance(cur, torch.Tensor):
            yield prefix, cur
        elif isinstance(cur, dict | list | tuple) and id(cur) not in seen:
            seen.add(id(cur))
            items = cur.items() if isinstance(cur, dict) else enumerate(cur)
            for k, v in reversed(list(items)):
                key = _key_text(k) if isinstance(cur, dict) else f"[{k}]"
                stack.append((f"{prefix}.{key}" if prefix and isinstance(cur, dict)
                              else prefix + key, v))


def _gb(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**27 else f"{nbytes:,} bytes"


def view_fault(t: torch.Tensor) -> str | None:
    """Why tensor `t` holds values that are not all in its own bytes, or is no dense CPU
    tensor at all; None when copying it costs no more than its storage."""
    if t.layout != torch.strided:
        return f"has the non-dense layout {t.layout}"
    if t.is_quantized or t.is_nested:
        return "is a quantized tensor" if t.is_quantized else "is a nested tensor"
    if t.device.type != "cpu":
        return f"is a {t.device.type} tensor (a shape without values)"
    need = t.numel() * t.element_size()
    if any(s == 0 and n > 1 for n, s in zip(t.shape, t.stride(), strict=True)):
        return (f"is a stride-0 expansion to {tuple(t.shape)}: copying it would take {_gb(need)} "
                f"from {t.untyped_storage().nbytes():,} bytes in the file")
    have = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
    if need > have:
        return (f"declares {t.numel():,} values ({_gb(need)}) but its storage holds "
                f"{max(have, 0):,} bytes (overlapping strides)")
    return None


def check_views(obj: object, what: str, every_name: bool = False) -> None:
    """CheckpointError naming the first tensor whose values are not all its own bytes:
    non-dense, stride-0 or overlapping, or sharing one storage with other tensors whose
    values together need more than it holds. Identical views under several names (G and
    G_ema of one module) count once, unless `every_name`: in the state dict a module is
    built from, each name becomes its own parameter."""
    shared: dict[int, dict[object, int]] = {}  # storage -> {view or name: bytes it needs}
    sizes: dict[int, int] = {}
    names: dict[int, list[str]] = {}
    for name, t in tensors_in(obj):
        fault = view_fault(t)
        if fault:
            raise CheckpointError(f"{what}: tensor {name!r} {fault}; refused before anything "
                                  "was allocated for it")
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            key = name if every_name else (t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            shared.setdefault(ptr, {})[key] = t.numel() * t.element_size()
            names.setdefault(ptr, []).append(name)
            sizes[ptr] = t.untyped_storage().nbytes()
    for ptr, views in shared.items():
        need = sum(views.values())
        if need > sizes[ptr]:
            listed = ", ".join(repr(n) for n in names[ptr][:4])
            raise CheckpointError(
                f"{what}: tensors {listed}{' ...' if len(names[ptr]) > 4 else ''} are views of one "
                f"storage of {sizes[ptr]:,} bytes that together declare {_gb(need)}; refused "
                "before anything was allocated for them")


def check_weights(sd: dict[str, torch.Tensor], what: str, allow_int: bool = False) -> None:
    """The state dict a module is built from: `check_views` counting every name, then
    `check_dtypes`; CheckpointError naming the first bad tensor."""
    check_views(sd, what, every_name=True)
    check_dtypes(sd, what, allow_int)


def check_dtypes(sd: dict[str, torch.Tensor], what: str, allow_int: bool = False) -> None:
    """CheckpointError naming the first tensor whose dtype is not a float (an integer only
    for BatchNorm's num_batches_tracked, or anywhere when `allow_int`, for a class the user
    named)."""
    for name, t in sd.items():
        ok = t.dtype in FLOATS or (t.dtype in INTS and (allow_int or name.endswith(
            "num_batches_tracked"))) or (allow_int and t.dtype == torch.bool)
        if not ok:
            raise CheckpointError(
                f"{what}: tensor {name!r} has dtype {str(t.dtype).removeprefix('torch.')}; weights "
                "are float16, bfloat16, float32 or float64 (an integer only for BatchNorm's "
                "num_batches_tracked)")
