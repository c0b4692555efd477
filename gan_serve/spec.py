"""What a generator is, independent of how it runs: the one owner of `ModelSpec` and of the
metadata that native checkpoints and exported artifacts (ONNX, TorchScript) carry.

Torch-free: the ONNX serving path reads artifacts with this module and numpy alone.

Artifact contract (written by `export/`, read by `gan_serve.backends`):
- ONNX: input ``z`` float32 (batch, z_dim), dynamic batch; output ``images`` float32
  (batch, C, H, W) in ``spec.output_range``; ``metadata_props`` = `artifact_metadata(...)`.
- TorchScript: a module taking z (B, z_dim) float32 and returning float32 images, saved with
  ``_extra_files`` = `artifact_metadata(...)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import CheckpointError
from .latents import RECIPE_VERSION

META_KEY = "gan_serve"  # safetensors metadata key holding the ModelSpec JSON
ONNX_INPUT = "z"
ONNX_OUTPUT = "images"
PRECISIONS = ("fp32", "bf16", "fp16")


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
    def from_json(cls, text: str) -> ModelSpec:
        d = json.loads(text)
        d["output_range"] = tuple(d.get("output_range", (-1.0, 1.0)))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def describe(self) -> str:
        if self.arch == "dcgan":
            return DCGANConfig.from_dict(self.config).describe()
        return f"{self.arch}({json.dumps(self.config)}) z_dim={self.z_dim}"


@dataclass
class LoadedModel:
    """A generator module in eval mode with its spec and where it came from."""

    module: Any  # torch.nn.Module for torch backends, None for ONNX
    spec: ModelSpec
    source_format: str  # e.g. "native safetensors", "state dict under 'gen'"
    sha256: str  # of the file's bytes
    name: str  # file stem, or the bundled model's name



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
    try:
        spec = ModelSpec.from_json(meta["gan_serve.spec"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{what} has unreadable gan-serve metadata: {exc}") from None
    precision = meta.get("gan_serve.precision", "fp32")
    if precision not in PRECISIONS:
        raise CheckpointError(f"{what} declares unknown precision {precision!r}")
    return spec, precision, meta.get("gan_serve.source_sha256", "")
