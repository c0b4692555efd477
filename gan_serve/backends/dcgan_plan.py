"""The CPU bf16 forward pass of the built-in DCGAN generator as a few oneDNN calls, adopted at
load only where a probe shows it gives the module's own bits.

What differs from calling the module (BENCHMARKS.md, "Issue 29"), per micro-batch:
- the first layer, a ConvTranspose2d on a 1x1 input, is one Linear, z (B, z_dim) @ W viewed
  (z_dim, k*k*out), with its ReLU fused: the same sums, without the deconvolution's set-up
  (a quarter of its time);
- each later ConvTranspose2d runs on a weight reordered once here, with its ReLU fused as a
  oneDNN post-op: the module reorders every weight on every call and makes a separate pass
  for each ReLU (ReLU commutes with the rounding to bf16, so the bits are the same);
- the output activation and the pixel mapping become one lookup over the 65,536 bf16 values,
  the table being built with the module's own activation and `images.to_uint8`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import images as img
from . import probe_latents

_ACTIVATIONS = (nn.Tanh, nn.Sigmoid, nn.Identity)
_EXPONENT = 0x7F80  # a bf16 whose exponent bits are all set is an inf or a NaN
_ALL_BF16 = np.arange(1 << 16, dtype=np.uint16)  # every bf16 bit pattern, as its integer


@dataclass
class _Deconv:
    weight: torch.Tensor  # reordered once for oneDNN (an opaque layout)
    bias: torch.Tensor | None
    conv: nn.ConvTranspose2d  # strides, padding and the like
    relu: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return torch.ops.mkldnn._convolution_transpose_pointwise(
            x, self.weight, self.bias, list(c.padding), list(c.output_padding), list(c.stride),
            list(c.dilation), c.groups, "relu" if self.relu else "none", [], None)


class DCGANPlan:
    """`module` (a DCGANGenerator in bf16, channels_last, BatchNorm folded) as a plan; build it
    with `adopt`, which returns None wherever the plan would not give the module's bits."""

    def __init__(self, layers: list[tuple[nn.ConvTranspose2d, bool]], act: nn.Module,
                 micro_batch: int, output_range: tuple[float, float]) -> None:
        first, relu = layers[0]
        k, out_ch = first.kernel_size[0], first.out_channels
        # out[n, o, i, j] = sum_c z[n, c] W[c, o, i, j] + b[o], laid out (n, i, j, o): channels_last;
        # a Linear's weight is (out, in): (k*k*out_ch, z_dim), reordered once like the others
        linear = first.weight.detach().permute(2, 3, 1, 0).reshape(-1, first.in_channels).contiguous()
        self.first = torch.ops.mkldnn._reorder_linear_weight(linear, micro_batch)
        bias = first.bias if first.bias is not None else first.weight.new_zeros(out_ch)
        self.first_bias = bias.detach().repeat(k * k)
        self.first_shape, self.first_attr = (k, k, out_ch), "relu" if relu else "none"
        self.rest = [_Deconv(_reorder(conv, micro_batch, size), _detach(conv.bias), conv, relu)
                     for (conv, relu), size in zip(layers[1:], _input_sizes(layers), strict=True)]
        self.act = act
        self.table = PixelTable(act, output_range)

    @classmethod
    def adopt(cls, module: nn.Module, micro_batch: int, z_dim: int,
              output_range: tuple[float, float]) -> DCGANPlan | None:
        """The plan for `module` when it has the DCGAN shape and reproduces the module's output
        and pixels bit for bit on probe latents at this micro-batch; None otherwise (a module
        of another shape, a torch without these oneDNN ops, or a kernel that sums differently)."""
        layers = _layers(module)
        if layers is None:
            return None
        try:
            plan = cls(layers[0], layers[1], micro_batch, output_range)
            return plan if plan.matches(module, micro_batch, z_dim, output_range) else None
        except (RuntimeError, AttributeError, NotImplementedError):  # an op this torch lacks
            return None

    def pre_activation(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) bf16 -> the last layer's output (B, C, H, W) bf16, channels_last."""
        x = self.first_layer(z)
        for layer in self.rest:
            x = layer(x)
        return x

    def first_layer(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) bf16 -> the first layer's output (B, out, k, k), channels_last: one
        Linear (with its ReLU fused) on the 1x1 input."""
        x = torch.ops.mkldnn._linear_pointwise(z, self.first, self.first_bias, self.first_attr, [], "")
        return x.view(len(z), *self.first_shape).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.act(self.pre_activation(z))

    def images(self, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Pre-activation output (B, C, H, W) -> uint8 images (B, H, W, C) and, per image,
        whether its output was finite (`PixelTable.images`)."""
        return self.table.images(y)

    @torch.inference_mode()
    def matches(self, module: nn.Module, micro_batch: int, z_dim: int,
                output_range: tuple[float, float]) -> bool:
        """Whether the plan gives the module's bf16 output and pixels on one probe micro-batch:
        `probe_latents` (seeds 0 to B-1, the second half scaled up 4x to reach saturated pixels)."""
        x = torch.from_numpy(probe_latents(micro_batch, z_dim)).to(torch.bfloat16)
        want, pre = module(x), self.pre_activation(x)
        if not torch.equal(want.view(torch.int16), self.act(pre).view(torch.int16)):
            return False
        return np.array_equal(self.images(pre)[0], img.to_uint8(want.float().numpy(), output_range))


class PixelTable:
    """An output activation and the pixel mapping as one lookup over the 65,536 bf16 values, the
    table built with the activation itself (on bf16) and `images.to_uint8`."""

    def __init__(self, act: nn.Module, output_range: tuple[float, float]) -> None:
        codes = torch.from_numpy(_ALL_BF16.view(np.int16)).view(torch.bfloat16)
        out = act(codes).float().numpy().reshape(-1, 1, 1, 1)
        with np.errstate(all="ignore"):  # the codes of inf and NaN are in the table too
            self.pixels = img.to_uint8(out, output_range).reshape(-1)  # bf16 code -> uint8
        self.finite = np.isfinite(out).reshape(-1)  # bf16 code -> whether the output is finite

    def images(self, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Pre-activation bf16 output (B, C, H, W) -> uint8 images (B, H, W, C) and, per image,
        whether its output was finite: a lookup of the bf16 bit patterns (and a second one for
        finiteness only when some pattern is an inf or a NaN)."""
        codes = y.permute(0, 2, 3, 1).view(torch.int16).numpy().view(np.uint16)
        # numpy's checks on the codes take a tenth of torch.isfinite's time on bf16 here
        if ((codes & _EXPONENT) == _EXPONENT).any():  # an inf or NaN before the activation
            finite = np.take(self.finite, codes).reshape(len(y), -1).all(axis=1)
        else:  # every activation here maps finite values to finite values
            finite = np.ones(len(y), bool)
        return np.take(self.pixels, codes), finite


def _layers(module: nn.Module) -> tuple[list[tuple[nn.ConvTranspose2d, bool]], nn.Module] | None:
    """[(conv, followed by ReLU)] and the output activation of a DCGANGenerator whose BatchNorms
    are folded; None for any other shape."""
    from ..arch import DCGANGenerator

    if not isinstance(module, DCGANGenerator):
        return None
    layers: list[tuple[nn.ConvTranspose2d, bool]] = []
    parts = [m for m in module.main if not isinstance(m, nn.Identity)]
    act = nn.Identity() if isinstance(parts[-1], nn.ConvTranspose2d) else parts.pop()
    for m in parts:
        if isinstance(m, nn.ConvTranspose2d) and m.groups == 1:
            layers.append((m, False))
        elif isinstance(m, nn.ReLU) and layers and not layers[-1][1]:
            layers[-1] = (layers[-1][0], True)
        else:
            return None  # an unfolded BatchNorm, another activation, grouped convolutions
    first = layers[0][0] if layers else None
    if (first is None or not isinstance(act, _ACTIVATIONS) or layers[-1][1]
            or first.stride != (1, 1) or first.padding != (0, 0) or first.output_padding != (0, 0)
            or first.dilation != (1, 1) or first.kernel_size[0] != first.kernel_size[1]):
        return None
    return layers, act


def _input_sizes(layers: list[tuple[nn.ConvTranspose2d, bool]]) -> list[int]:
    """The input height (= width) of every layer after the first, whose input is 1x1."""
    sizes, h = [], 1
    for conv, _ in layers:
        h = ((h - 1) * conv.stride[0] - 2 * conv.padding[0] + conv.dilation[0] * (conv.kernel_size[0] - 1)
             + conv.output_padding[0] + 1)
        sizes.append(h)
    return sizes[:-1]


def _reorder(conv: nn.ConvTranspose2d, batch: int, size: int) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_convolution_transpose_weight(
        conv.weight.detach(), list(conv.padding), list(conv.output_padding), list(conv.stride),
        list(conv.dilation), conv.groups, [batch, conv.in_channels, size, size])


def _detach(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()
