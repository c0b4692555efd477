"""DCGAN-family discriminators: inference from a state dict, loading, and best-of-N ranking.

`gan-serve generate --rank-with netD.pth --candidates 512 --n 16` scores 512 candidate
images with the user's own trained D and keeps the 16 it likes best. D sees the quantized
uint8 images (what the user gets), mapped back to the generator's output range, so the
ranking is consistent with the files written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import latents as lat
from .arch import chain_state_dict, conv_chain, describe_found, infer_dcgan
from .checkpoint import load_strict, read_weights
from .errors import CheckpointError, GanServeError, InputError, UnknownArchitectureError
from .legacy import DISCRIMINATOR_KEYS, strip_prefixes
from .limits import DEFAULT_LIMITS
from .protocols import ImageGenerator
from .spec import (
    MAX_FIRST_KERNEL,
    MAX_LAYERS,
    MAX_RESOLUTION,
    MAX_WIDTH,
    META_KEY,
    activation_fault,
)
from .torchfile import check_weights

SUPPORTED = (
    "Supported: a chain of Conv2d(k=4, s=2, p=1) layers, each with an optional BatchNorm2d, "
    "ending in one Conv2d to a single score (seeds/000 `Detector`, pytorch/examples `netD`, "
    "gan-train's D), saved as a state dict or under one of " + ", ".join(DISCRIMINATOR_KEYS)
)


@dataclass
class DiscriminatorConfig:
    """A DCGAN-family discriminator: (channels, R, R) image -> one logit, R = img_resolution."""

    channels: int = 3  # input image channels (1 grey, 3 RGB)
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # hidden conv outputs
    final_kernel: int = 4  # last conv: (final_kernel x final_kernel) map -> one score
    batch_norm: list[bool] = field(default_factory=lambda: [False, True, True, True])  # per layer
    bias: bool = False  # bias in the hidden convolutions
    out_bias: bool = False  # bias in the final convolution
    leaky_slope: float = 0.2  # LeakyReLU slope (the DCGAN paper's; weights cannot tell)

    def __post_init__(self) -> None:
        if len(self.batch_norm) != len(self.widths):
            raise InputError(f"batch_norm needs one flag per hidden layer ({len(self.widths)}), "
                             f"got {len(self.batch_norm)}")
        fault = self.limits_fault()
        if fault:
            raise InputError(f"discriminator {fault}")

    def limits_fault(self) -> str | None:
        """What exceeds the generator's limits (gan_serve.spec), checked before any layer
        exists: an inferred D is as big as its file's bytes, and no bigger than a G may be."""
        if not 1 <= self.channels <= MAX_WIDTH:  # images x PacGAN pack, stacked on channels
            return f"takes {self.channels} channels; the limit is {MAX_WIDTH}"
        if not 1 <= len(self.widths) <= MAX_LAYERS:
            return f"has {len(self.widths)} hidden layers; the limit is {MAX_LAYERS}"
        if not all(1 <= w <= MAX_WIDTH for w in self.widths):
            return f"widths {self.widths[:6]} exceed the limit of {MAX_WIDTH} channels"
        if not 1 <= self.final_kernel <= MAX_FIRST_KERNEL:
            return f"final_kernel {self.final_kernel} exceeds the limit of {MAX_FIRST_KERNEL}"
        if self.img_resolution > MAX_RESOLUTION:
            return (f"judges {self.img_resolution}x{self.img_resolution} images; the limit is "
                    f"{MAX_RESOLUTION}")
        sides = [self.img_resolution >> i for i in range(len(self.widths) + 1)]
        return activation_fault([self.channels, *self.widths], sides)

    @property
    def img_resolution(self) -> int:
        return self.final_kernel * 2 ** len(self.widths)  # each hidden conv halves the size

    def to_dict(self) -> dict:
        return asdict(self)


class DCGANDiscriminator(nn.Module):
    """Conv(4, 2, 1) [+ BatchNorm] + LeakyReLU per hidden layer, then one score per image."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_ch = config.channels
        for width, bn in zip(config.widths, config.batch_norm, strict=True):
            layers.append(nn.Conv2d(in_ch, width, 4, 2, 1, bias=config.bias))
            if bn:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(config.leaky_slope, inplace=True))
            in_ch = width
        layers.append(nn.Conv2d(in_ch, 1, config.final_kernel, 1, 0, bias=config.out_bias))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logits (B,): no sigmoid, so any loss can be used and ranking keeps its order."""
        return self.main(x).reshape(x.shape[0], -1).mean(1)  # (B, 1, 1, 1) at img_resolution


def _is_generator(sd: dict[str, torch.Tensor]) -> bool:
    try:
        infer_dcgan(sd)
    except UnknownArchitectureError:
        return False
    return True


def infer_discriminator(sd: dict[str, torch.Tensor]) -> tuple[DiscriminatorConfig, dict[str, torch.Tensor]]:
    """Read a DCGAN discriminator's config from its state dict; map keys to DCGANDiscriminator's.

    Any attribute name and layer indices (`model.N`, `main.N`, ...): the layers are read in
    order as 4-D Conv2d weights (out, in, k, k), each with an optional bias and BatchNorm2d.
    Raises UnknownArchitectureError saying what was found and what is supported otherwise.
    """
    def fail(why: str) -> UnknownArchitectureError:
        if _is_generator(sd):
            why = "it is a DCGAN generator; pass the discriminator saved with it"
        return UnknownArchitectureError(
            f"not a DCGAN-family discriminator ({why}); found {describe_found(sd)}. {SUPPORTED}")

    convs = conv_chain(sd, "Conv2d", fail)
    for prev, cur in zip(convs, convs[1:], strict=False):
        if cur["w"].shape[1] != prev["w"].shape[0]:
            raise fail(f"{cur['name']} takes {cur['w'].shape[1]} channels but gets {prev['w'].shape[0]}")
    for c in convs:
        out = c["w"].shape[0]
        if c["b"] is not None and tuple(c["b"].shape) != (out,):
            raise fail(f"bias of {c['name']} has shape {tuple(c['b'].shape)}, expected ({out},)")
        if c["bn"] is not None and tuple(c["bn"]["running_mean"].shape) != (out,):
            raise fail(f"the BatchNorm after {c['name']} does not match its {out} channels")
    hidden, last = convs[:-1], convs[-1]
    if any(tuple(c["w"].shape[2:]) != (4, 4) for c in hidden):
        raise fail("hidden convolutions are not 4x4")
    if last["w"].shape[0] != 1 or last["w"].shape[2] != last["w"].shape[3] or last["bn"] is not None:
        raise fail(f"the last layer {last['name']} {tuple(last['w'].shape)} is not a single-score conv")
    if len({c["b"] is not None for c in hidden}) > 1:
        raise fail("bias on some hidden layers but not others")
    try:
        config = DiscriminatorConfig(
            channels=int(convs[0]["w"].shape[1]), widths=[int(c["w"].shape[0]) for c in hidden],
            final_kernel=int(last["w"].shape[2]), batch_norm=[c["bn"] is not None for c in hidden],
            bias=hidden[0]["b"] is not None, out_bias=last["b"] is not None,
        )
    except InputError as exc:
        raise UnknownArchitectureError(f"the {exc}; refused before building it") from None
    return config, chain_state_dict(convs)  # DCGANDiscriminator's own key names


def load_discriminator(path: str | Path) -> tuple[nn.Module, DiscriminatorConfig]:
    """Load a discriminator file as an eval-mode float32 DCGANDiscriminator on the CPU.

    Accepts a bare state dict (.pth/.pt, read with weights_only=True only), a dict holding one
    under a key such as 'dis', 'netD' or 'D' (so a seeds/001 file holding both G and D works),
    `module.`/`_orig_mod.` prefixes, and plain .safetensors weights.
    """
    path = Path(path)
    sd, meta, _ = read_weights(path, DISCRIMINATOR_KEYS, "discriminator")
    if META_KEY in meta:
        raise UnknownArchitectureError(
            f"{path.name} is a gan-serve generator checkpoint, not a discriminator. {SUPPORTED}")
    check_weights(sd, repr(str(path)))
    config, sd = infer_discriminator(strip_prefixes(sd))
    D = DCGANDiscriminator(config)
    load_strict(D, sd, f"discriminator in {path.name}")
    return D.float().eval(), config


def discriminator_instead(path: Path, error: UnknownArchitectureError) -> UnknownArchitectureError:
    """For a file that is not a generator: when it holds a DCGAN discriminator, an error that
    says so and where it goes (--rank-with), else `error` itself."""
    try:
        _, config = load_discriminator(path)
    except GanServeError:
        return error
    return UnknownArchitectureError(
        f"{path.name} is a discriminator ({config.img_resolution}x{config.img_resolution}, "
        f"{config.channels} channel(s)), not a generator: pass it to --rank-with, e.g. gan-serve "
        f"generate -m G.pth --rank-with {path.name} (Python: discriminator.load_discriminator)")


def check_compatible(config: DiscriminatorConfig, G: ImageGenerator) -> None:
    """Raise InputError unless D judges images of G's resolution and channels."""
    g_res, g_ch = G.img_resolution, G.channels
    if (config.img_resolution, config.channels) != (g_res, g_ch):
        raise InputError(
            f"the discriminator judges {config.img_resolution}x{config.img_resolution} images "
            f"with {config.channels} channel(s), but the generator makes {g_res}x{g_res} with "
            f"{g_ch}; pass the discriminator trained with this generator")


@torch.no_grad()
def score_images(D: nn.Module, images: np.ndarray, output_range: Sequence[float] = (-1.0, 1.0),
                 batch_size: int = 64) -> np.ndarray:
    """D's scores (N,) float32 for uint8 (N, H, W, C) images, mapped back to `output_range`.

    Pixels become v / 255 * (hi - lo) + lo (the inverse of images.to_uint8), NCHW float32.
    Every forward pass sees exactly `batch_size` images (the last batch zero-padded), so a
    score never depends on how many images were scored with it.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise InputError(f"score_images needs uint8 images (N, H, W, C) with N >= 1, "
                         f"got {images.dtype} {images.shape}")
    batch_size = lat.check_n(batch_size, DEFAULT_LIMITS.max_n, what="batch_size")
    lo, hi = float(output_range[0]), float(output_range[1])
    device = next((p.device for p in D.parameters()), torch.device("cpu"))
    scores = np.empty(len(images), np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        padded = np.zeros((batch_size, *images.shape[1:]), np.uint8)
        padded[: len(chunk)] = chunk
        x = torch.from_numpy(padded).to(device).permute(0, 3, 1, 2).float() / 255.0 * (hi - lo) + lo
        out = D(x).float().reshape(batch_size, -1)
        if out.shape[1] != 1:
            raise InputError(f"the discriminator must give one score per image, got "
                             f"{out.shape[1]} values per image")
        scores[start : start + len(chunk)] = out[: len(chunk), 0].cpu().numpy()
    return scores


def rank_seeds(G: ImageGenerator, D: nn.Module, seeds: Sequence[int], keep: int,
               truncation_psi: float = 1.0, progress: Callable[[int], None] | None = None,
               ) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Best-of-N: the `keep` seeds whose images D scores highest, best first.

    Generates every candidate with G.generate(seeds, truncation_psi), then `rank_images`;
    returns (kept seeds, their scores (keep,), their images (keep, H, W, C)), so nothing is
    generated twice.
    """
    seeds = lat.check_seeds(seeds, DEFAULT_LIMITS.max_n)
    keep = lat.check_n(keep, len(seeds), what=f"keep (of {len(seeds)} candidates)")
    images = G.generate(seeds, truncation_psi, progress=progress)
    return rank_images(D, seeds, images, keep, G.spec.output_range)


def rank_images(D: nn.Module, seeds: Sequence[int], images: np.ndarray, keep: int,
                output_range: Sequence[float] = (-1.0, 1.0),
                ) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The `keep` of `images` (those of `seeds`, already generated) that D scores highest, best
    first: (kept seeds, scores, images). Ties go to the lower seed; NaN scores rank last."""
    scores = score_images(D, images, output_range)
    if np.isnan(scores).all():
        raise CheckpointError("the discriminator scored every candidate NaN; its weights are broken")
    by_score = -np.where(np.isnan(scores), -np.inf, scores)  # ascending = best first, NaN last
    order = np.lexsort((np.asarray(seeds, np.int64), by_score))[:keep]  # last key sorts first
    return [seeds[i] for i in order], scores[order], images[order]
