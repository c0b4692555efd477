"""Optional dependencies: which extra installs each, and the one-line message when one is missing.

The core install (numpy, pillow, typer, tqdm, safetensors) runs nothing by itself; the extras
in pyproject.toml add what each use needs (README "Installs"):

    cpu    onnxruntime (CPU, every platform): the bundled model and exported .onnx files
    gpu    onnxruntime-gpu (Linux/Windows, CUDA/TensorRT) instead of `cpu`, never beside it
    torch  torch: .pth/.safetensors checkpoints, TorchScript, --rank-with
    serve  fastapi, starlette, pydantic, uvicorn, pydantic-settings, prometheus-client: `gan-serve serve`
    onnx   onnx (+ torch): `gan-export`
    train  matplotlib (+ torch): `gan-train`;  tensorboard, triton, ray: their flags and commands
    video  av (PyAV, FFmpeg inside its wheels): .mp4/.webm videos

Every entry point that finds an extra missing raises `MissingExtraError` (exit 2 on the CLI)
through `missing_extra` or `require_extras`, so the wording and the two install commands live here
only. A command that needs several extras names every missing one at once, in one command.
"""

from __future__ import annotations

import os
from importlib import metadata
from importlib.util import find_spec

from .errors import MissingExtraError

# top-level module -> the extra that installs it
EXTRA_OF = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "cpu",
    "fastapi": "serve",
    "uvicorn": "serve",
    "starlette": "serve",
    "pydantic": "serve",
    "pydantic_settings": "serve",
    "prometheus_client": "serve",
    "matplotlib": "train",
    "tensorboard": "tensorboard",
    "tritonclient": "triton",
    "ray": "ray",
    "av": "video",
}

# distributions that all install the `onnxruntime` module, over each other's files
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def install_command(extra: str) -> str:
    """Both ways to add `extra` (or several, "onnx,cpu"): from a clone and from a package index."""
    return f'pip install -e ".[{extra}]" in a clone, or pip install "gan-serve[{extra}]"'


SHOWN = {"onnxruntime": "ONNX Runtime"}  # module names as the messages print them


def _needs(extra: str, modules: str) -> str:
    name = f"the {extra} extra" + ("; on a CUDA machine the gpu extra instead" if extra == "cpu" else "")
    return f"{modules} ({name})" if modules else name


def missing_extra(extra: str, what: str, modules: str = "") -> MissingExtraError:
    """`WHAT needs MODULES (the EXTRA extra): both install commands`, as one line."""
    return MissingExtraError(f"{what} needs {_needs(extra, modules)}: {install_command(extra)}")


def require_extras(what: str, needs: dict[str, tuple[str, ...]]) -> None:
    """One line naming every extra of `needs` (extra -> modules it installs) that is not all
    there, and one install command for all of them: what it says to install is then enough."""
    absent = {extra: missing(*modules) for extra, modules in needs.items()}
    absent = {extra: modules for extra, modules in absent.items() if modules}
    if absent:
        parts = " and ".join(_needs(e, " and ".join(SHOWN.get(m, m) for m in ms)) for e, ms in absent.items())
        raise MissingExtraError(f"{what} needs {parts}: {install_command(','.join(absent))}")


def model_needs(models: list[str] | None) -> dict[str, tuple[str, ...]]:
    """The extras that run `models` (paths or bundled names; None: the bundled default, unless
    GAN_SERVE_MODEL(S) names others): ONNX Runtime (cpu) for .onnx files and the bundled models
    (which run on torch instead when it is there), torch for the rest."""
    from .models import BUNDLED, DEFAULT_MODEL

    if models is None:
        models = [] if {"GAN_SERVE_MODELS", "GAN_SERVE_MODEL"} & set(os.environ) else [DEFAULT_MODEL]
    needs: dict[str, tuple[str, ...]] = {}
    for model in models:
        if model in BUNDLED and not missing("torch"):
            continue
        if model in BUNDLED or model.lower().endswith(".onnx"):
            needs["cpu"] = ("onnxruntime",)
        else:
            needs["torch"] = ("torch",)
    return needs


def missing(*modules: str) -> list[str]:
    """The top-level modules among `modules` that are not installed."""
    return [m for m in modules if not _importable(m)]


def _importable(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it (tests hide packages this way)
        return False


def require(extra: str, what: str, *modules: str) -> None:
    """Raise `missing_extra` unless every module (default: the ones `extra` installs) imports."""
    require_extras(what, {extra: modules or tuple(m for m, e in EXTRA_OF.items() if e == extra)})


def from_import_error(exc: ModuleNotFoundError, what: str) -> MissingExtraError | None:
    """The missing-extra error for an import that failed because an optional package is absent
    (a safety net under the explicit `require` checks); None for any other import failure."""
    top = (exc.name or "").partition(".")[0]
    if top not in EXTRA_OF or _importable(top):
        return None
    return missing_extra(EXTRA_OF[top], what, top)


def installed_ort() -> list[str]:
    """The ONNX Runtime distributions installed here (pip metadata, not the module)."""
    found = []
    for dist in ORT_DISTRIBUTIONS:
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        found.append(dist)
    return found


def require_onnxruntime(what: str) -> None:
    """ONNX Runtime importable, from exactly one distribution: two (say `[cpu]` and `[gpu]`)
    overwrite each other's files, and removing either one breaks the other."""
    dists = installed_ort()
    if len(dists) > 1:
        raise MissingExtraError(
            f"{' and '.join(dists)} are installed together and overwrite each other's files; keep one: "
            f"pip uninstall -y {' '.join(dists)} && pip install onnxruntime-gpu (CUDA machines) "
            "or onnxruntime (CPU)")
    if missing("onnxruntime"):
        raise missing_extra("cpu", what, "ONNX Runtime")
