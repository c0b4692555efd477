"""Triton Inference Server model repository that speaks seeds, laid out as

    repo/<name>/           the generator: z (B, z_dim) fp32 -> images (B, C, H, W) fp32, either
                           python (default; ONNX Runtime inside the Python model) or onnxruntime_onnx
    repo/<name>_latents/   python: seeds (B, 1) int64, optional psi (B, 1) fp32 -> z, recipe v1
    repo/<name>_pixels/    python: images -> pixels (B, H, W, C) uint8, gan_serve's mapping
    repo/<name>_by_seed/   ensemble of the three: seeds (+ psi) -> pixels

The generator's default is the python variant (`GENERATOR_BACKENDS`): every Triton build has the
python backend, including the one a pip install gives (nvidia-pytriton bundles no other), and it
runs gan-serve's fixed CPU micro-batch, so its pixels are `gan-serve generate`'s byte for byte
whatever batches Triton forms. The onnxruntime variant needs a build with the onnxruntime
backend (NGC's containers) and is the one for GPUs.

Every config.pbtxt is built as Triton's own `ModelConfig` protobuf message (tritonclient's
model_config_pb2) and read back with protobuf's text format, which refuses unknown fields.
The Python models' recipe is gan_serve's own code: `recipe_files()` copies gan_serve/latents.py,
errors.py and runtime.py (and to_uint8's source) into a package gan_serve_recipe/ in each Python model's
version folder, so Triton needs numpy only (and ONNX Runtime for the python generator), and a
client asking by seed gets the pixels `gan-serve generate` writes.
"""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path
from types import ModuleType

from gan_serve import errors, images, latents, runtime
from gan_serve.backends import micro_batch_for
from gan_serve.errors import InputError, OutputError
from gan_serve.extras import missing_extra
from gan_serve.fsutil import atomic_path, check_output_dir, write_bytes_atomic
from gan_serve.spec import ONNX_INPUT, ONNX_OUTPUT

from . import GENERATOR_BACKENDS
from .onnx import onnx_io

_TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # ONNX TensorProto elem types
MODEL_FILE = Path(__file__).with_name("triton_models") / "model.py"
RECIPE_PACKAGE = "gan_serve_recipe"


def model_config_pb2() -> ModuleType:
    """Triton's model-config protobuf module, or a MissingExtraError naming the install command."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb
    except (ImportError, RuntimeError):  # tritonclient without its grpc extra raises RuntimeError
        raise missing_extra("triton", "a Triton repository", "tritonclient[grpc]") from None
    return pb


def read_config(text: str) -> object:
    """Parse config.pbtxt into a ModelConfig message; a misspelled field or value raises."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def _render(config: object) -> str:
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    read_config(text)  # what Triton will parse, round-tripped
    return text


def _tensor(field: object, name: str, data_type: str, dims: list[int], optional: bool = False) -> None:
    t = field.add(name=name, data_type=data_type, dims=dims)
    if optional:
        t.optional = True


def generator_config(name: str, onnx_path: Path, max_batch: int, backend: str = "python",
                     max_queue_delay_us: int = 2000, max_queue_size: int = 256,
                     timeout_us: int = 5_000_000) -> object:
    """The generator's config (`backend`: python or onnxruntime, see the module docstring): the
    ONNX file's inputs and outputs, dynamic batching with a queue that rejects past its bounds."""
    if max_batch < 1:
        raise InputError(f"--max-batch must be at least 1, got {max_batch}")
    if backend not in GENERATOR_BACKENDS:
        raise InputError(f"unknown generator backend {backend!r}; choose {' or '.join(GENERATOR_BACKENDS)}")
    pb = model_config_pb2()
    cfg = pb.ModelConfig(name=name, max_batch_size=max_batch)
    if backend == "python":
        cfg.backend = "python"
        cfg.parameters["role"].string_value = "generator"
    else:
        cfg.platform = "onnxruntime_onnx"
    inputs, outputs = onnx_io(onnx_path)
    if backend == "python":  # gan-serve's own passes on the CPU, for images of this size
        width = outputs[0][2][-1] if outputs and isinstance(outputs[0][2][-1], int) else None
        cfg.parameters["micro_batch"].string_value = str(micro_batch_for("cpu", width))
    for field, ios in ((cfg.input, inputs), (cfg.output, outputs)):
        for io_name, elem, dims in ios:
            if elem not in _TRITON_TYPES:
                raise InputError(f"tensor {io_name!r} has an ONNX type ({elem}) Triton config does not map")
            _tensor(field, io_name, _TRITON_TYPES[elem], dims[1:])  # batch dim: max_batch_size
    db = cfg.dynamic_batching
    db.preferred_batch_size.extend(sorted({b for b in (8, 32, max_batch) if b <= max_batch}))
    db.max_queue_delay_microseconds = max_queue_delay_us
    db.default_queue_policy.timeout_action = pb.ModelQueuePolicy.REJECT
    db.default_queue_policy.default_timeout_microseconds = timeout_us
    db.default_queue_policy.max_queue_size = max_queue_size
    kind = pb.ModelInstanceGroup.KIND_CPU if backend == "python" else pb.ModelInstanceGroup.KIND_AUTO
    cfg.instance_group.add(count=1, kind=kind)
    return cfg


def onnx_config(name: str, onnx_path: Path, max_batch: int, **queue: int) -> object:
    """The onnxruntime_onnx generator's config (`generator_config` with backend onnxruntime)."""
    return generator_config(name, onnx_path, max_batch, "onnxruntime", **queue)


def config_pbtxt(name: str, onnx_path: Path, max_batch: int, **queue: int) -> str:
    """The ONNX model's config.pbtxt text (see `onnx_config`)."""
    return _render(onnx_config(name, onnx_path, max_batch, **queue))


def python_config(name: str, role: str, max_batch: int, z_dim: int, image_dims: list[int],
                  output_range: str) -> object:
    """A Python-backend model running triton_models/model.py as `role` (latents or pixels)."""
    pb = model_config_pb2()
    cfg = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch)
    c, h, w = image_dims
    if role == "latents":
        _tensor(cfg.input, "seeds", "TYPE_INT64", [1])
        _tensor(cfg.input, "psi", "TYPE_FP32", [1], optional=True)
        _tensor(cfg.output, "z", "TYPE_FP32", [z_dim])
        cfg.parameters["z_dim"].string_value = str(z_dim)
    else:
        _tensor(cfg.input, "images", "TYPE_FP32", [c, h, w])
        _tensor(cfg.output, "pixels", "TYPE_UINT8", [h, w, c])
        cfg.parameters["output_range"].string_value = output_range
    cfg.parameters["role"].string_value = role
    cfg.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    return cfg


def ensemble_config(name: str, models: dict[str, str], max_batch: int, z_dim: int,
                    image_dims: list[int]) -> object:
    """seeds (+ psi) -> latents model -> ONNX model -> pixels model -> pixels."""
    pb = model_config_pb2()
    cfg = pb.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch)
    c, h, w = image_dims
    _tensor(cfg.input, "seeds", "TYPE_INT64", [1])
    _tensor(cfg.input, "psi", "TYPE_FP32", [1], optional=True)
    _tensor(cfg.output, "pixels", "TYPE_UINT8", [h, w, c])
    wiring = [(models["latents"], {"seeds": "seeds", "psi": "psi"}, {"z": "z"}),
              (models["onnx"], {ONNX_INPUT: "z"}, {ONNX_OUTPUT: "images"}),
              (models["pixels"], {"images": "images"}, {"pixels": "pixels"})]
    for model, inputs, outputs in wiring:
        step = cfg.ensemble_scheduling.step.add(model_name=model, model_version=-1)
        step.input_map.update(inputs)
        step.output_map.update(outputs)
    return cfg


_RECIPE_INIT = f'''"""gan-serve's seed recipe (v{latents.RECIPE_VERSION}) and pixel mapping, for Triton.

Written by gan-export: latents.py, errors.py and runtime.py (thread settings) are gan_serve's own
files, copied; pixels.py is the source of gan_serve.images.to_uint8 (images.py itself needs
Pillow). Do not edit.
"""

from .errors import CheckpointError, GanServeError, InputError
from .latents import RECIPE_VERSION, check_seed, latents_for_seeds, truncate
from .pixels import to_uint8
from .runtime import configure_threads, passive_wait, thread_count

__all__ = ["RECIPE_VERSION", "CheckpointError", "GanServeError", "InputError", "check_seed",
           "configure_threads", "latents_for_seeds", "passive_wait", "thread_count", "to_uint8", "truncate"]
'''


def recipe_files() -> dict[str, bytes]:
    """The package gan_serve_recipe/ that model.py imports: gan_serve's recipe, numpy only."""
    reads = inspect.getclosurevars(images.to_uint8).globals
    if set(reads) != {"np"}:  # the copy below carries numpy only
        raise TypeError(f"gan_serve.images.to_uint8 reads {sorted(reads)}; pixels.py carries only np")
    pixels = ('"""gan_serve.images.to_uint8, copied by gan-export."""\n\nfrom __future__ import annotations\n'
              "\nimport numpy as np\n\n\n" + inspect.getsource(images.to_uint8))
    return {
        f"{RECIPE_PACKAGE}/__init__.py": _RECIPE_INIT.encode(),
        f"{RECIPE_PACKAGE}/errors.py": Path(inspect.getfile(errors)).read_bytes(),
        f"{RECIPE_PACKAGE}/latents.py": Path(inspect.getfile(latents)).read_bytes(),
        f"{RECIPE_PACKAGE}/pixels.py": pixels.encode(),
        f"{RECIPE_PACKAGE}/runtime.py": Path(inspect.getfile(runtime)).read_bytes(),
    }


def _check_layout(repo: Path, name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise InputError(f"model name {name!r} may use letters, digits, '_', '-' and '.' only")
    if repo.exists() and not repo.is_dir():
        raise OutputError(f"{str(repo)!r} exists and is not a folder")
    check_output_dir(repo.parent if str(repo.parent) else Path("."))


def _write(model_dir: Path, config: object, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (model_dir / "1" / rel).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(model_dir / "1" / rel, data)
    (model_dir / "1").mkdir(parents=True, exist_ok=True)  # an ensemble's version folder is empty
    write_bytes_atomic(model_dir / "config.pbtxt", _render(config).encode())


def write_repository(repo: Path, name: str, onnx_path: Path, max_batch: int,
                     output_range: tuple[float, float], generator: str = "python") -> dict[str, Path]:
    """Lay out the four models (see the module docstring), the generator as `generator` (python
    or onnxruntime); returns role -> model folder (role "onnx" is the generator)."""
    _check_layout(repo, name)
    (z_in,), (img_out,) = onnx_io(onnx_path)
    z_dim, image_dims = int(z_in[2][1]), [int(d) for d in img_out[2][1:]]
    names = {"onnx": name, "latents": f"{name}_latents", "pixels": f"{name}_pixels",
             "ensemble": f"{name}_by_seed"}
    dirs = {role: repo / model for role, model in names.items()}
    gen_cfg = generator_config(name, onnx_path, max_batch, generator)
    code = {"model.py": MODEL_FILE.read_bytes(), **recipe_files()}
    if (dirs["onnx"] / "1" / "model.py").exists() and generator == "onnxruntime":  # a re-export's leftovers
        shutil.rmtree(dirs["onnx"] / "1")
    (dirs["onnx"] / "1").mkdir(parents=True, exist_ok=True)
    with atomic_path(dirs["onnx"] / "1" / "model.onnx") as tmp:  # a killed run's temp is ours to clean
        shutil.copyfile(onnx_path, tmp)
    _write(dirs["onnx"], gen_cfg, code if generator == "python" else {})
    lo, hi = output_range
    for role in ("latents", "pixels"):
        cfg = python_config(names[role], role, max_batch, z_dim, image_dims, f"{lo:g},{hi:g}")
        _write(dirs[role], cfg, code)
    _write(dirs["ensemble"], ensemble_config(names["ensemble"], names, max_batch, z_dim, image_dims), {})
    return dirs
