"""What a generator is, independent of how it runs: the one owner of `ModelSpec` and of the
metadata that native checkpoints and exported artifacts (ONNX, TorchScript) carry.

Torch-free: the ONNX serving path reads artifacts with this module and numpy alone.

Artifact contract (written by `export/`, read by `gan_serve.backends`):
- ONNX: input ``z`` float32 (batch, z_dim), dynamic batch; output ``images`` float32
  (batch, C, H, W) in ``spec.output_range``; ``metadata_props`` = `artifact_metadata(...)`;
  both described in their ``doc_string`` (export/onnx.py `io_docs`).
- TorchScript: a module taking z (B, z_dim) or (B, z_dim, 1, 1) float32 (gan_serve.seam) and
  returning float32 images, saved with ``_extra_files`` = `artifact_metadata(...)`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from typing import Any

from .errors import CheckpointError, InputError
from .latents import RECIPE_VERSION

META_KEY = "gan_serve"  # safetensors metadata key holding the ModelSpec JSON
ONNX_INPUT = "z"
ONNX_OUTPUT = "images"
PRECISIONS = ("fp32", "bf16", "fp16")  # what an exported artifact may declare
RUN_PRECISIONS = (*PRECISIONS, "int8")  # what a load may ask for; int8: torch on the CPU only


@dataclass
class DCGANConfig:
    z_dim: int = 100  # latent size; input is (B, z_dim) or (B, z_dim, 1, 1)
    widths: list[int] = field(default_factory=lambda: [512, 256, 128, 64])  # hidden channels
    channels: int = 3  # output image channels (1 grey, 3 RGB)
    first_kernel: int = 4  # first ConvTranspose2d kernel: 1x1 latent -> first_kernel^2 map
    batch_norm: bool = True  # BatchNorm2d after every hidden ConvTranspose2d
    bias: bool = False  # bias in the hidden ConvTranspose2d layers
    out_bias: bool = False  # bias in the last ConvTranspose2d
    output_activation: str = "tanh"  # tanh -> [-1, 1]; sigmoid -> [0, 1]; none

    @property
    def img_resolution(self) -> int:
        # the first layer makes first_kernel x first_kernel, every later one doubles it
        return self.first_kernel * 2 ** len(self.widths)

    @property
    def output_range(self) -> tuple[float, float]:
        return (0.0, 1.0) if self.output_activation == "sigmoid" else (-1.0, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DCGANConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def describe(self) -> str:
        norm = "BatchNorm" if self.batch_norm else "no norm"
        bias = "bias" if self.bias else "no bias"
        return (
            f"DCGAN z_dim={self.z_dim} widths={'-'.join(map(str, self.widths))} "
            f"channels={self.channels} resolution={self.img_resolution} ({norm}, {bias}, "
            f"{self.output_activation})"
        )


@dataclass
class ModelSpec:
    """Everything needed to rebuild a generator; saved inside every native checkpoint."""

    arch: str = "dcgan"  # "dcgan", or "package.module:Class" for anything else
    config: dict = field(default_factory=dict)  # DCGANConfig fields, or the Class kwargs
    z_dim: int = 100  # latent size
    img_resolution: int = 64  # output height = width
    channels: int = 3  # output channels
    output_range: tuple[float, float] = (-1.0, 1.0)  # value range of the raw output
    z_layout: str = "nchw"  # how z is fed: "nchw" (B, z, 1, 1) or "flat" (B, z)
    recipe_version: int = RECIPE_VERSION  # seed-to-latent recipe the images assume
    training: dict = field(default_factory=dict)  # step, epoch, data description, ...

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, what: str = "the file") -> ModelSpec:
        """Parse and check a spec (types, ranges, limits); CheckpointError in one line if bad."""
        return check_spec(loads_bounded(text, f"{what} has gan-serve metadata that"), what)

    def describe(self) -> str:
        if self.arch == "dcgan":
            return DCGANConfig.from_dict(self.config).describe()
        return f"{self.arch}({json.dumps(self.config)}) z_dim={self.z_dim}"


# Limits on what a file's metadata may declare: every size a loader derives from metadata is
# checked against these before anything is allocated (see check_spec).
MAX_Z_DIM = 16384
MAX_RESOLUTION = 4096
MAX_WIDTH = 16384  # hidden channels of one layer
MAX_LAYERS = 12  # hidden layers (resolution doubles per layer)
MAX_FIRST_KERNEL = 64
MAX_LAYER_VALUES = 2**26  # values one layer holds for one image: the largest image, 4096^2 x 4
MAX_METADATA_BYTES = 2**20  # the spec JSON (native headers are about 1.4 KB)
MAX_JSON_DEPTH = 32  # nesting of that JSON (a spec nests 3 deep)
ACTIVATIONS = ("tanh", "sigmoid", "none")
Z_LAYOUTS = ("nchw", "flat", "auto")
RECIPES = (RECIPE_VERSION,)  # seed-to-latent recipes this version knows


def _int(v: object, lo: int, hi: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {v!r:.40}")
    return v


def _choice(v: object, allowed: tuple, name: str) -> object:
    if isinstance(v, bool) or v not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {v!r:.40}")
    return v


def _range(v: object) -> tuple[float, float]:
    ok = (isinstance(v, list | tuple) and len(v) == 2
          and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v))
    if not ok or not all(math.isfinite(x) and abs(x) <= 1e6 for x in v) or not v[0] < v[1]:
        raise ValueError(f"output_range must be [low, high] with finite low < high, got {v!r:.40}")
    return (float(v[0]), float(v[1]))


# one pass over the text: an unterminated string runs to its end (the nested-quantifier form
# took quadratic time on a string of escaped quotes, hours for 1 MiB of metadata)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\Z)', re.S)


def loads_bounded(text: object, what: str) -> object:
    """json.loads of metadata text within MAX_METADATA_BYTES and MAX_JSON_DEPTH (deeper JSON
    would raise RecursionError); CheckpointError "`what` is ..." in one line otherwise."""
    if not isinstance(text, str):
        raise CheckpointError(f"{what} is not text ({type(text).__name__})")
    if len(text) > MAX_METADATA_BYTES:
        raise CheckpointError(f"{what} is {len(text):,} characters long; the limit is "
                              f"{MAX_METADATA_BYTES:,}")
    brackets = re.findall(r"[\[\]{}]", _JSON_STRING.sub("", text))
    depth = max(accumulate(1 if b in "[{" else -1 for b in brackets), default=0)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointError(f"{what} nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{what} is not JSON ({str(exc)[:120]})") from None


def activation_fault(widths: list[int], sides: list[int]) -> str | None:
    """Why hidden layers of `widths` channels on `sides` x `sides` maps hold too many values
    per image (a few KB of weights can declare a 2048^2 map of 16384 channels), or None."""
    for i, (w, side) in enumerate(zip(widths, sides, strict=True)):
        if w * side * side > MAX_LAYER_VALUES:
            return (f"layer {i} makes {w} x {side}x{side} = {w * side * side:,} values per image; "
                    f"the limit is {MAX_LAYER_VALUES:,} (a {MAX_RESOLUTION}x{MAX_RESOLUTION} RGBA image)")
    return None


def check_dcgan_config(c: object) -> DCGANConfig:
    """A DCGANConfig from a metadata dict, every field type- and range-checked (ValueError)."""
    if not isinstance(c, dict):
        raise ValueError(f"config must be an object, got {type(c).__name__}")
    d = DCGANConfig().to_dict() | {k: v for k, v in c.items() if k in DCGANConfig.__dataclass_fields__}
    _int(d["z_dim"], 1, MAX_Z_DIM, "config.z_dim")
    w = d["widths"]
    if not isinstance(w, list) or not 1 <= len(w) <= MAX_LAYERS:
        raise ValueError(f"config.widths must be a list of 1 to {MAX_LAYERS} integers, got {w!r:.40}")
    for x in w:
        _int(x, 1, MAX_WIDTH, "config.widths[]")
    _choice(d["channels"], (1, 3, 4), "config.channels")
    _int(d["first_kernel"], 1, MAX_FIRST_KERNEL, "config.first_kernel")
    for flag in ("batch_norm", "bias", "out_bias"):
        if not isinstance(d[flag], bool):
            raise ValueError(f"config.{flag} must be true or false, got {d[flag]!r:.40}")
    _choice(d["output_activation"], ACTIVATIONS, "config.output_activation")
    config = DCGANConfig(**d)
    if config.img_resolution > MAX_RESOLUTION:
        raise ValueError(f"config makes {config.img_resolution}x{config.img_resolution} images; "
                         f"the limit is {MAX_RESOLUTION}")
    fault = activation_fault(config.widths, [config.first_kernel << i for i in range(len(w))])
    if fault:
        raise ValueError(fault)
    return config


def check_spec(d: object, what: str = "the file") -> ModelSpec:
    """A ModelSpec from decoded metadata, checked whole: CheckpointError names the first fault."""
    try:
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        d = ModelSpec().__dict__ | {k: v for k, v in d.items() if k in ModelSpec.__dataclass_fields__}
        if not isinstance(d["arch"], str) or not 0 < len(d["arch"]) <= 200:
            raise ValueError(f"arch must be a name, got {d['arch']!r:.40}")
        for key in ("config", "training"):
            if not isinstance(d[key], dict):
                raise ValueError(f"{key} must be an object, got {type(d[key]).__name__}")
        spec = ModelSpec(
            arch=d["arch"], config=d["config"], training=d["training"],
            z_dim=_int(d["z_dim"], 1, MAX_Z_DIM, "z_dim"),
            img_resolution=_int(d["img_resolution"], 1, MAX_RESOLUTION, "img_resolution"),
            channels=_choice(d["channels"], (1, 3, 4), "channels"),
            output_range=_range(d["output_range"]),
            z_layout=_choice(d["z_layout"], Z_LAYOUTS, "z_layout"),
            recipe_version=_choice(d["recipe_version"], RECIPES, "recipe_version"),
        )
        if spec.arch == "dcgan":
            _check_dcgan_spec(spec, check_dcgan_config(spec.config))
    except ValueError as exc:
        raise CheckpointError(f"{what} has invalid gan-serve metadata: {exc}") from None
    return spec


def _check_dcgan_spec(spec: ModelSpec, c: DCGANConfig) -> None:
    got = (spec.z_dim, spec.img_resolution, spec.channels)
    want = (c.z_dim, c.img_resolution, c.channels)
    if got != want:
        raise ValueError(f"z_dim, img_resolution, channels {got} disagree with its config {want}")


@dataclass
class LoadedModel:
    """A generator module in eval mode with its spec and where it came from."""

    module: Any  # torch.nn.Module for torch backends, None for ONNX
    spec: ModelSpec
    source_format: str  # e.g. "native safetensors", "state dict under 'gen'"
    sha256: str  # of the file's bytes
    name: str  # file stem, or the bundled model's name
    nonfinite: dict[str, str] = field(default_factory=dict)  # tensor -> "1 NaN, 2 Inf" (inspect)


@dataclass
class LoadOptions:
    """What the user says about a checkpoint that cannot describe itself: one value from the
    CLI flags (`--arch`, `--arch-kwargs`, `--output-range`, `--z-dim`) or Python keywords
    down to the loader. All None: infer a DCGAN, or read the native file's own spec."""

    arch: str | None = None  # "module:Class" to import and build (runs its code: the user named it)
    arch_kwargs: dict | None = None  # constructor kwargs for `arch` (a DCGANConfig override for dcgan)
    output_range: tuple[float, float] | None = None  # raw output range; required with a custom arch
    z_dim: int | None = None  # latent size of a custom arch (default 100)

    def __post_init__(self) -> None:
        if self.arch_kwargs is not None and not isinstance(self.arch_kwargs, dict):
            raise InputError("--arch-kwargs must be a JSON object, e.g. '{\"ngf\": 64}'")
        if self.output_range is not None:
            lo, hi = (float(v) for v in self.output_range)
            if not lo < hi:
                raise InputError(f"output range must be LOW,HIGH with LOW < HIGH, got {lo:g},{hi:g}")
            self.output_range = (lo, hi)
        if self.z_dim is not None and not 1 <= self.z_dim <= MAX_Z_DIM:
            raise InputError(f"--z-dim must be from 1 to {MAX_Z_DIM}, got {self.z_dim}")

    @classmethod
    def from_text(cls, arch: str | None = None, arch_kwargs: str | None = None,
                  output_range: str | None = None, z_dim: int | None = None) -> LoadOptions:
        """Parse the flags' text: `--arch-kwargs` JSON and `--output-range LOW,HIGH`."""
        kwargs = None
        if arch_kwargs:
            try:
                kwargs = json.loads(arch_kwargs)
            except json.JSONDecodeError as exc:
                raise InputError(f"--arch-kwargs is not valid JSON: {exc}") from None
            except RecursionError:  # json.loads recurses once per level
                raise InputError("--arch-kwargs nests too deep: give a flat JSON object of keyword "
                                 "arguments") from None
        rng = None
        if output_range:
            try:
                lo, hi = (float(v) for v in output_range.split(","))
            except ValueError:
                raise InputError(
                    f"--output-range must be LOW,HIGH such as -1,1 or 0,1, got {output_range!r}"
                ) from None
            rng = (lo, hi)
        return cls(arch or None, kwargs, rng, z_dim)


def check_images(shape: tuple[int, ...], n: int, spec: ModelSpec, where: str) -> None:
    """CheckpointError unless a backend returned (n, C, R, R) images as `spec` declares: the
    caller's buffers are sized from the spec, so a graph or program that disagrees stops here."""
    want = (n, spec.channels, spec.img_resolution, spec.img_resolution)
    if tuple(shape) != want:
        raise CheckpointError(f"{where} returned images of shape {tuple(shape)}, but its gan-serve "
                              f"metadata declares (batch, C, H, W) = {want}")


def artifact_metadata(spec: ModelSpec, precision: str, source_sha256: str) -> dict[str, str]:
    """Key/value strings stored in an exported artifact so the runtime needs nothing else."""
    lo, hi = spec.output_range
    return {
        "gan_serve.spec": spec.to_json(),
        "gan_serve.precision": precision,
        "gan_serve.source_sha256": source_sha256,
        "gan_serve.recipe": str(spec.recipe_version),
        "gan_serve.z_dim": str(spec.z_dim),
        "gan_serve.img_resolution": str(spec.img_resolution),
        "gan_serve.channels": str(spec.channels),
        "gan_serve.output_range": f"{lo:g},{hi:g}",
    }


def spec_from_artifact_metadata(meta: Mapping[str, str], what: str) -> tuple[ModelSpec, str, str]:
    """(spec, precision, source_sha256) from artifact metadata; CheckpointError if absent."""
    if "gan_serve.spec" not in meta:
        raise CheckpointError(
            f"{what} carries no gan-serve metadata; export it with `gan-export` so the runtime "
            "knows z_dim, resolution and output range"
        )
    spec = ModelSpec.from_json(meta["gan_serve.spec"], what)
    precision = meta.get("gan_serve.precision", "fp32")
    if precision not in PRECISIONS:
        raise CheckpointError(f"{what} declares unknown precision {precision!r}")
    return spec, precision, meta.get("gan_serve.source_sha256", "")
