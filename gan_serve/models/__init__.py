"""Generators that ship with the package, loaded by name (`--model default`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import CheckpointError

# name -> file in this folder
BUNDLED = {"default": "default.safetensors"}
DEFAULT_MODEL = "default"


def bundled_names() -> list[str]:
    return sorted(BUNDLED)


def resolve_model(model: str | Path | None) -> tuple[Path, str]:
    """Turn `--model` (a path, a bundled name, or None for the default) into (path, name)."""
    model = DEFAULT_MODEL if model is None or str(model) == "" else model
    path = Path(model)
    if path.exists():
        return path, path.stem
    if str(model) in BUNDLED:
        ref = resources.files(__package__).joinpath(BUNDLED[str(model)])
        return Path(str(ref)), str(model)
    raise CheckpointError(
        f"no such file: {str(model)!r} (and no bundled model of that name; "
        f"bundled: {', '.join(bundled_names())})"
    )


def bundled_onnx(path: Path, name: str) -> Path | None:
    """The ONNX export shipped beside bundled model `name` (same stem, .onnx), if `path` is it."""
    if name not in BUNDLED:
        return None
    ref = Path(str(resources.files(__package__).joinpath(BUNDLED[name])))
    onnx = ref.with_suffix(".onnx")
    return onnx if path.resolve() == ref.resolve() and onnx.is_file() else None
