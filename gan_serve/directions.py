"""Editing directions in z: a `Directions` file (data) and edits parsed from `pc0=+2,hair_blue=+1.5`.

A directions file is safetensors holding one float32 tensor `directions` (K, z_dim), unit
rows, plus JSON metadata under `gan_serve.directions` (format, z_dim, names, scores, method,
the model's sha256). It is data, never code, and it is read like a checkpoint: size, header
and every declared shape are checked before anything is allocated, and a fault is one line.

An edit moves latents by z' = z + sum(strength * direction) after truncation; a direction is
unit length and the projection of a recipe-v1 latent on it is N(0, 1), so a strength is in
standard deviations of z along it (+-3 covers nearly every seed). Torch-free: the ONNX-only
server applies edits too. Directions are found without labels by gan_serve.ganspace and
fitted to labels by gan_serve.interfacegan.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, InputError
from .fsutil import atomic_path

FORMAT = "gan_serve.directions/1"
META_KEY = "gan_serve.directions"
TENSOR = "directions"
MAX_DIRECTIONS = 256  # directions in one file (a contact sheet shows ~10)
MAX_Z_DIM = 16384  # gan_serve.spec.MAX_Z_DIM: no model has a larger z
MAX_FILE_BYTES = MAX_DIRECTIONS * MAX_Z_DIM * 4 + 2**20  # the largest tensor plus 1 MiB of header
MAX_HEADER_BYTES = 2**20
MAX_STRENGTH = 50.0  # |strength| of one term: 50 standard deviations is far off the shell already
MAX_TERMS = 32  # terms in one edit
MAX_EDIT_CHARS = 4096
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
METHODS = ("ganspace", "interfacegan")


@dataclass(frozen=True)
class Directions:
    """Named unit directions in a model's z space, with what found them."""

    vectors: np.ndarray = field(compare=False)  # (K, z_dim) float32, unit rows
    names: tuple[str, ...]
    method: str  # "ganspace" (no labels) or "interfacegan" (labels)
    scores: tuple[float, ...]  # ganspace: variance fraction explained; interfacegan: accuracy
    model_sha256: str = "0" * 64  # the generator they were found for
    info: Mapping[str, object] = field(default_factory=dict, compare=False)  # samples, layer, ...
    source: str = "in-memory"  # file stem, for provenance

    def __post_init__(self) -> None:
        v = np.asarray(self.vectors)
        if v.ndim != 2 or not 1 <= len(v) <= MAX_DIRECTIONS or not 1 <= v.shape[1] <= MAX_Z_DIM:
            raise InputError(f"directions must be shaped (K, z_dim) with K in 1..{MAX_DIRECTIONS}, "
                             f"got {v.shape}")
        if v.dtype.kind != "f" or not np.isfinite(v).all():
            raise InputError("directions must be finite floats")
        norms = np.linalg.norm(v.astype(np.float64), axis=1)
        if (norms < 1e-6).any():
            raise InputError("a direction has length 0")
        if np.abs(norms - 1).max() > 1e-6:  # unit rows stay as they are: a reloaded file's bytes
            v = v / norms[:, None]
        object.__setattr__(self, "vectors", np.ascontiguousarray(v, np.float32))
        object.__setattr__(self, "names", tuple(check_names(self.names, len(v))))
        if self.method not in METHODS:
            raise InputError(f"unknown direction method {self.method!r}; one of {', '.join(METHODS)}")
        scores = tuple(float(s) for s in self.scores)
        if len(scores) != len(v) or not all(math.isfinite(s) for s in scores):
            raise InputError(f"directions need one finite score each ({len(v)}), got {len(scores)}")
        object.__setattr__(self, "scores", scores)
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.model_sha256)):
            raise InputError("model_sha256 must be 64 lowercase hex digits")

    @property
    def z_dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def vector(self, name: str) -> np.ndarray:
        """The unit direction called `name`."""
        if name not in self.names:
            shown = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
            raise InputError(f"unknown direction {name!r}; {self.source} has {shown}")
        return self.vectors[self.names.index(name)]

    def check_model(self, z_dim: int) -> None:
        """Refuse a model whose z has another size (one line)."""
        if z_dim != self.z_dim:
            raise InputError(f"the directions in {self.source} are for z_dim {self.z_dim}; this "
                             f"model's z_dim is {z_dim}")

    def edit(self, edit: str | Mapping[str, float]) -> LatentEdit:
        """The edit `pc0=+2,hair_blue=+1.5` (or {"pc0": 2, ...}) resolved to an offset in z."""
        terms = parse_edit(edit)
        offset = np.zeros(self.z_dim, np.float64)
        for name, strength in terms:
            offset += strength * self.vector(name).astype(np.float64)
        return LatentEdit(offset.astype(np.float32), format_edit(terms), self.id)

    @property
    def metadata(self) -> dict[str, object]:
        return {"format": FORMAT, "z_dim": self.z_dim, "names": list(self.names),
                "method": self.method, "scores": list(self.scores),
                "model_sha256": self.model_sha256, "info": dict(self.info)}

    def to_bytes(self) -> bytes:
        """The file's bytes: the same directions always give the same bytes."""
        from safetensors.numpy import save

        text = json.dumps(self.metadata, sort_keys=True, separators=(",", ":"))
        return save({TENSOR: np.ascontiguousarray(self.vectors)}, metadata={META_KEY: text})

    @functools.cached_property
    def id(self) -> str:
        """`dirs@sha256:0123456789ab`: the source's name and the hash of its bytes (provenance)."""
        return f"{self.source}@sha256:{hashlib.sha256(self.to_bytes()).hexdigest()[:12]}"

    def save(self, path: str | Path) -> Path:
        """Write the file atomically (temp file, fsync, rename)."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise InputError(f"directions are saved as .safetensors, got {path.name!r}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Directions:
        """Read a directions file: every fault one CheckpointError line, nothing run."""
        return read_directions(Path(path))

    def top(self, k: int) -> list[str]:
        """The first `k` names (PCA order: most variance first)."""
        return list(self.names[:k])


@dataclass(frozen=True)
class LatentEdit:
    """An edit resolved against directions: latents move by `offset` (z_dim,)."""

    offset: np.ndarray = field(compare=False)
    text: str  # canonical: "pc0=+2.0,hair_blue=+1.5"
    source: str  # the directions' id

    def apply(self, z: np.ndarray) -> np.ndarray:
        """z (N, z_dim) + offset, float32."""
        if z.shape[-1] != len(self.offset):
            raise InputError(f"the edit is for z_dim {len(self.offset)}; these latents have "
                             f"z_dim {z.shape[-1]}")
        return (z + self.offset).astype(np.float32)

    def provenance(self) -> dict[str, str]:
        return {"edit": self.text, "directions": self.source}


def check_names(names: Sequence[object], count: int) -> list[str]:
    """`count` distinct direction names, each `NAME` (a letter or _, then letters, digits, _.-)."""
    names = list(names)
    if len(names) != count:
        raise InputError(f"{count} directions need {count} names, got {len(names)}")
    for name in names:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InputError(f"direction name {str(name)[:70]!r} is not a name: a letter or _, then "
                             "up to 63 letters, digits, _ . or -")
    if len(set(names)) != len(names):
        raise InputError("direction names must be distinct")
    return names


def parse_edit(edit: str | Mapping[str, float]) -> list[tuple[str, float]]:
    """Terms of `pc0=+2,hair_blue=-1.5` (or a mapping name -> strength), checked."""
    if isinstance(edit, Mapping):
        items = list(edit.items())
    elif isinstance(edit, str):
        if len(edit) > MAX_EDIT_CHARS:
            raise InputError(f"--edit is {len(edit):,} characters; at most {MAX_EDIT_CHARS:,}")
        items = []
        for part in edit.split(","):
            name, eq, value = part.strip().partition("=")
            if not eq:
                raise InputError(f"edit term {part.strip()[:40]!r} is not NAME=STRENGTH "
                                 "(e.g. pc0=+2,hair_blue=-1.5)")
            items.append((name.strip(), _number(value.strip(), name.strip())))
    else:
        raise InputError("an edit is text like 'pc0=+2,hair_blue=-1.5' or a mapping of names to "
                         "strengths")
    if not 1 <= len(items) <= MAX_TERMS:
        raise InputError(f"an edit has 1 to {MAX_TERMS} terms, got {len(items)}")
    terms = []
    for name, value in items:
        check_names([name], 1)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"the strength of {name!r} must be a number, got {value!r:.40}")
        if not math.isfinite(value) or abs(value) > MAX_STRENGTH:
            raise InputError(f"the strength of {name!r} must be within +-{MAX_STRENGTH:g}, got {value}")
        terms.append((name, float(value)))
    if len({n for n, _ in terms}) != len(terms):
        raise InputError("an edit names each direction once")
    return terms


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"the strength of {name[:64]!r} is not a number: {text[:40]!r}") from None


def format_edit(terms: Sequence[tuple[str, float]]) -> str:
    """The canonical text of an edit (repr keeps every bit of each strength)."""
    return ",".join(f"{n}={'+' if s >= 0 else ''}{s!r}" for n, s in terms)


def resolve_edit(edit: str | Mapping[str, float] | LatentEdit | None,
                 directions: Directions | str | Path | None, z_dim: int) -> LatentEdit | None:
    """What the Python API's `edit=`/`directions=` mean for a model with `z_dim`."""
    if edit is None:
        if directions is not None:
            raise InputError("directions were given without an edit to make with them")
        return None
    if isinstance(edit, LatentEdit):
        found = edit
    else:
        if directions is None:
            raise InputError("an edit needs the directions it names (directions=... or "
                             "--directions FILE)")
        if not isinstance(directions, Directions):
            directions = Directions.load(directions)
        directions.check_model(z_dim)
        found = directions.edit(edit)
    if len(found.offset) != z_dim:
        raise InputError(f"the edit is for z_dim {len(found.offset)}; this model's z_dim is {z_dim}")
    return found


# -- reading a file ------------------------------------------------------------------------
def read_directions(path: Path) -> Directions:
    """The directions in `path`, checked before any tensor is allocated."""
    where = f"{str(path)!r}"
    if not path.exists():
        raise CheckpointError(f"no such directions file: {where}")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise CheckpointError(f"{where} is not a regular file")
    with open(path, "rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows after a stat
    if len(data) > MAX_FILE_BYTES:
        raise CheckpointError(f"{where} is over {MAX_FILE_BYTES:,} bytes, the most a directions "
                              "file may be")
    try:
        meta, shape = _header(data)
        directions = _from_meta(meta, shape, data, path.stem)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where} is not a directions file: {str(exc)[:200]}") from None
    return directions


def _header(data: bytes) -> tuple[dict, tuple[int, int]]:
    # the safetensors header, checked: one float32 tensor (K, z_dim) whose bytes are all present
    if len(data) < 8:
        raise ValueError("too short")
    n = int.from_bytes(data[:8], "little")
    if not 2 <= n <= min(len(data) - 8, MAX_HEADER_BYTES):
        raise ValueError("no safetensors header")
    header = json.loads(data[8 : 8 + n])
    if not isinstance(header, dict) or set(header) != {"__metadata__", TENSOR}:
        raise ValueError(f"it must hold exactly one tensor named {TENSOR!r} and metadata")
    info = header[TENSOR]
    shape = info.get("shape") if isinstance(info, dict) else None
    if (not isinstance(info, dict) or info.get("dtype") != "F32" or not isinstance(shape, list)
            or len(shape) != 2 or any(type(d) is not int for d in shape)
            or not 1 <= shape[0] <= MAX_DIRECTIONS or not 1 <= shape[1] <= MAX_Z_DIM):
        raise ValueError(f"the tensor must be float32 (K, z_dim), K <= {MAX_DIRECTIONS}, z_dim <= "
                         f"{MAX_Z_DIM}")
    nbytes = shape[0] * shape[1] * 4
    if info.get("data_offsets") != [0, nbytes] or len(data) != 8 + n + nbytes:
        raise ValueError("its data does not match its header (truncated or padded)")
    meta = header["__metadata__"]
    if not isinstance(meta, dict) or not isinstance(meta.get(META_KEY), str):
        raise ValueError(f"no {META_KEY} metadata")
    fields = json.loads(meta[META_KEY])
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise ValueError(f"its format is not {FORMAT}")
    return fields, (shape[0], shape[1])


def _from_meta(meta: dict, shape: tuple[int, int], data: bytes, stem: str) -> Directions:
    if meta.get("z_dim") != shape[1]:
        raise ValueError(f"metadata says z_dim {meta.get('z_dim')!r:.20}, the tensor has {shape[1]}")
    info = meta.get("info", {})
    if not isinstance(info, dict) or any(not isinstance(v, str | int | float) for v in info.values()):
        raise ValueError("info must map names to numbers or text")
    from safetensors.numpy import load

    vectors = load(data)[TENSOR]
    try:
        return Directions(vectors, tuple(meta["names"]), meta["method"], tuple(meta["scores"]),
                          meta["model_sha256"], info, stem)
    except InputError as exc:
        raise ValueError(str(exc)) from None
