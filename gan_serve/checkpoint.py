"""Reading and writing generator checkpoints: the one owner of the checkpoint contract.

Native format: `.safetensors` weights plus a JSON `ModelSpec` in the metadata, read and
written here. Every other format (bare state dicts, pytorch/examples `netG`, dicts holding a
generator under `gen`, `netG`, ..., wrapper prefixes) is gan_serve.legacy's: this module
sniffs the file, reads it, and hands legacy the contents. Torch files load with
``torch.load(weights_only=True)`` only; a pickle that needs code is refused before anything
in it runs (its one way in: gan_serve.full_pickle, for `convert --trust-pickle`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from . import legacy
from .arch import DCGANConfig, DCGANGenerator, infer_dcgan
from .errors import CheckpointError, InputError, UnknownArchitectureError, UnsafeCheckpointError
from .fileformat import sniff
from .fsutil import atomic_path, file_sha256
from .seam import FlatZ, takes_flat_z, unwrap
from .spec import META_KEY, LoadedModel, LoadOptions, ModelSpec, check_dcgan_config
from .torchfile import check_weights, load_weights_only

BUILTIN_ARCHS = ("dcgan",)  # the only architectures a file's metadata may name


def safe_torch_load(path: Path) -> object:
    """torch.load(weights_only=True) of a file that costs no more memory than its bytes
    (gan_serve.torchfile); every failure is a CheckpointError."""
    return load_weights_only(path, sniff(path))


def load_strict(module: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True), with missing/unexpected keys and shape errors listed."""
    own = module.state_dict()
    check_shapes(own, sd, what)
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def check_shapes(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], what: str) -> None:
    """UnknownArchitectureError listing missing/unexpected keys and shape mismatches, if any."""
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        for k in bad[:4]:
            parts.append(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
        raise UnknownArchitectureError(f"{what} does not match the weights: " + "; ".join(parts))


def import_class(arch: str) -> type:
    """Import `package.module:Class` (the user named it, so running its code is intended),
    looking in the current folder first: `--arch my_models:Gen` finds ./my_models.py."""
    mod_name, sep, cls_name = arch.partition(":")
    if not sep or not mod_name or not cls_name:
        raise InputError(f"--arch must look like package.module:Class, got {arch!r}")
    try:
        with current_folder_first():
            module = importlib.import_module(mod_name)
        cls = getattr(module, cls_name)
    except ImportError as exc:
        raise InputError(f"cannot import module {mod_name!r} for --arch: {exc}") from None
    except AttributeError:
        raise InputError(f"module {mod_name!r} has no class {cls_name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InputError(f"--arch {arch!r} is not a torch.nn.Module subclass")
    return cls


@contextlib.contextmanager
def current_folder_first() -> Iterator[None]:
    """The current folder at the front of sys.path while the user's named module imports."""
    folder = os.getcwd()
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


def _z_layouts(spec: ModelSpec) -> list[str]:
    return [spec.z_layout] if spec.z_layout in ("nchw", "flat") else ["nchw", "flat"]


def probe_custom(module: nn.Module, spec: ModelSpec) -> ModelSpec:
    """Find how a custom module takes z and what it returns, by one trial forward pass."""
    tried = []
    for layout in _z_layouts(spec):
        try:
            with torch.no_grad():
                out = FlatZ(module, spec.z_dim, layout)(torch.zeros(2, spec.z_dim))
        except Exception as exc:  # user code; we report what it raised
            tried.append(f"{layout}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            continue
        if not (isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[0] == 2):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            tried.append(f"{layout}: returned {got}, expected (2, C, H, W) images")
            continue
        if out.shape[1] not in (1, 3, 4) or out.shape[2] != out.shape[3]:
            tried.append(f"{layout}: returned images of shape {tuple(out.shape[1:])}, expected "
                         "square images with 1, 3 or 4 channels")
            continue
        spec.z_layout, spec.channels, spec.img_resolution = layout, out.shape[1], out.shape[2]
        return spec
    raise UnknownArchitectureError(
        f"{spec.arch} does not turn z of size {spec.z_dim}, given as (B, z) or (B, z, 1, 1), "
        "into (B, C, H, W) images: " + "; ".join(tried) + ". Check --z-dim and --arch-kwargs"
    )


def build_module(spec: ModelSpec) -> nn.Module:
    """Instantiate the generator described by `spec` (weights uninitialised)."""
    if spec.arch == "dcgan":
        return DCGANGenerator(DCGANConfig.from_dict(spec.config))
    cls = import_class(spec.arch)
    try:
        return cls(**spec.config)
    except TypeError as exc:
        raise InputError(f"cannot construct {spec.arch} with {spec.config}: {exc}") from None


SHAPE_FIELDS = ("z_dim", "widths", "channels", "first_kernel", "batch_norm", "bias", "out_bias")


def check_before_building(spec: ModelSpec, sd: dict[str, torch.Tensor], what: str) -> None:
    """Refuse a spec that disagrees with the weights before its module exists, so building it
    allocates no more than the file's own tensors."""
    if spec.arch == "dcgan":
        try:
            declared = check_dcgan_config(spec.config)
        except ValueError as exc:
            raise InputError(f"{what}: {exc}") from None
        try:
            found, _ = infer_dcgan(sd)
        except UnknownArchitectureError as exc:
            raise UnknownArchitectureError(f"{what}: the weights are not the DCGAN it declares "
                                           f"({str(exc).split(';')[0]})") from None
        diff = [f"{k} {getattr(declared, k)} (weights: {getattr(found, k)})"
                for k in SHAPE_FIELDS if getattr(declared, k) != getattr(found, k)]
        if diff:
            raise UnknownArchitectureError(f"{what}: declared and real shapes disagree: "
                                           + "; ".join(diff))
        return
    try:  # a class the user named: build it on the meta device (no memory) and compare
        with torch.device("meta"):
            skeleton = build_module(spec)
    except Exception:  # the user's class cannot go on meta; they trust it
        return
    check_shapes(skeleton.state_dict(), sd, what)


def finish_module(spec: ModelSpec, sd: dict, what: str) -> nn.Module:
    """The eval-mode module, wrapped once so that it takes z (B, z_dim) (gan_serve.seam)."""
    check_before_building(spec, sd, what)
    module = build_module(spec)
    load_strict(module, sd, what)
    module = module.float().eval()
    if spec.arch != "dcgan":
        probe_custom(module, spec)
    return takes_flat_z(module, spec)


def native_spec(path: Path, text: str, options: LoadOptions) -> ModelSpec:
    """The ModelSpec of a native file. Its `arch` may only name a built-in architecture: a
    custom class is imported only when the caller names it (`arch=`), and then only that one."""
    spec = ModelSpec.from_json(text, path.name)
    arch = options.arch
    if spec.arch in BUILTIN_ARCHS and arch in (None, spec.arch):
        pass
    elif arch is None or arch in BUILTIN_ARCHS:
        raise UnsafeCheckpointError(
            f"{path.name} names the architecture {spec.arch!r}, which is not built in; a file's "
            f"metadata never imports code. If you trust that class, name it yourself: --arch "
            f"{spec.arch} (Python: arch={spec.arch!r})"
        )
    else:
        spec.arch = arch  # the caller's class, with the file's (or the caller's) kwargs
        if options.arch_kwargs is not None:
            spec.config = dict(options.arch_kwargs)
    if options.output_range is not None:
        spec.output_range = options.output_range
    return spec


def nonfinite_weights(sd: dict[str, torch.Tensor]) -> dict[str, str]:
    """Tensors holding NaN or Inf values: name -> "1 NaN, 2 Inf"."""
    bad = {}
    for name, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            bad[name] = ", ".join(f"{n} {w}" for n, w in ((nan, "NaN"), (inf, "Inf")) if n)
    return bad


def check_finite(loaded: LoadedModel, what: str) -> None:
    """Refuse weights with NaN/Inf in one line: every image would be NaN-derived."""
    if loaded.nonfinite:
        listed = "; ".join(f"{k}: {v}" for k, v in list(loaded.nonfinite.items())[:4])
        more = f"; and {len(loaded.nonfinite) - 4} more tensors" if len(loaded.nonfinite) > 4 else ""
        raise CheckpointError(
            f"{what} has non-finite weights ({listed}{more}), so its images would be NaN-derived; "
            "`gan-serve inspect` lists them; use an earlier checkpoint of the run"
        )


def load_generator(path: str | Path, options: LoadOptions | None = None, name: str | None = None,
                   allow_nonfinite: bool = False) -> LoadedModel:
    """Load any supported generator checkpoint (see ARCHITECTURE.md) as an eval-mode module.

    Weights with NaN or Inf are refused unless `allow_nonfinite` (inspect reports them)."""
    path, options = Path(path), options or LoadOptions()
    sd, meta, source = read_weights(path)
    check_weights(sd, repr(str(path)), allow_int=options.arch not in (None, *BUILTIN_ARCHS))
    if META_KEY in meta:
        spec = native_spec(path, meta[META_KEY], options)
        module = finish_module(spec, sd, f"{path.name} ({spec.describe()})")
    else:  # a legacy state dict, or plain safetensors weights (gan_serve.legacy)
        spec, sd = legacy.spec_and_weights(sd, options)
        module = finish_module(spec, sd, spec.describe())
    loaded = LoadedModel(module, spec, source, file_sha256(path), name or path.stem,
                         nonfinite_weights(unwrap(module).state_dict()))
    if not allow_nonfinite:
        check_finite(loaded, repr(str(path)))
    return loaded


def read_weights(path: Path, keys: tuple[str, ...] = legacy.GENERATOR_KEYS,
                 role: str = "generator") -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(state dict, safetensors metadata, where in the file it was) of any weights file; a
    torch.save() file is read so that it costs no more than its bytes (gan_serve.torchfile)."""
    if sniff(path) == "safetensors":
        sd, meta = read_safetensors(path)
        return sd, meta, ("native safetensors" if META_KEY in meta
                          else "safetensors weights without metadata")
    sd, source = legacy.weights_in(safe_torch_load(path), path, keys, role)
    return sd, {}, source


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, corrupt files reported as CheckpointError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            sd = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is truncated or corrupt and cannot be read ({exc})"
        ) from None
    return sd, meta


def save_native(
    module: nn.Module, spec: ModelSpec, path: str | Path, dtype: torch.dtype = torch.float32
) -> Path:
    """Write the native format (safetensors + ModelSpec) atomically; fp16 halves the size."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"native checkpoints end in .safetensors, got {path.name!r}")
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous().clone()
        for k, v in unwrap(module).state_dict().items()
    }
    with atomic_path(path) as tmp:  # bytes, not save_file: that one leaves its own temp file on a kill
        tmp.write_bytes(save(tensors, metadata={META_KEY: spec.to_json()}))
    return path
