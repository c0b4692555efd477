"""An int8 forward pass of the built-in DCGAN generator, measured against bf16 and not shipped
(issue 29, item 3; BENCHMARKS.md, "int8: measured, not wired"): on this CPU it runs at 0.8-1.1x
the bf16 path's CPU time per image, further from fp32, so gan-serve has no `--precision int8`.
It stays here so that `benchmarks/int8.py` can repeat the measurement on other machines (a CPU
with AMX-int8, a newer torch).

The layers, per micro-batch:
- the first layer (a ConvTranspose2d on the 1x1 latent) is one fp32 matmul with its ReLU, so a
  latent of any size or truncation goes in unclipped; its output is quantized to uint8;
- every inner ConvTranspose2d (kernel 4, stride 2, padding 1) is four int8 matmuls, one per
  output parity (`TAPS`), through oneDNN's `qlinear_pointwise`: uint8 activations per tensor,
  int8 weights per output channel, int32 sums, and the bias, the ReLU and the requantization to
  the next layer's uint8 fused into the matmul;
- the last layer runs in bf16 (a thin layer: int8 gains nothing there, and its output carries
  the pixels' precision), then the output activation and the pixel mapping as one lookup
  (`dcgan_plan.PixelTable`, as on the bf16 path).

torch's own quantized ConvTranspose2d is not used: its oneDNN kernel (torch 2.13) returns
unrelated values wherever in_channels != out_channels, and its fbgemm kernel runs at half the
bf16 rate here (`benchmarks/int8.py --routes`). The activation scales come from a calibration
pass over the latents of `CALIBRATION_SEEDS` (each activation's maximum, after the ranges are
smoothed into the next layer's weights: `_smooth`), so the quantized model is the same on every
build; int8 sums are exact, so its images are the same on every build too, for one machine and
one set of library versions.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gan_serve
from benchmarks.limits import int8_dot_products
from gan_serve.backends.dcgan_plan import PixelTable, _Deconv, _input_sizes, _layers, _reorder
from gan_serve.backends.torch_backend import fold_batchnorm
from gan_serve.generator import Generator
from gan_serve.latents import latents_for_seeds

CALIBRATION_SEEDS = range(256)  # seeds 0-255, recipe v1 latents, psi 1
# A ConvTranspose2d of kernel 4, stride 2, padding 1 as four convolutions of kernel 2, one per
# output parity: output row 2m + a sums input rows m + d times kernel rows k, (d, k) in TAPS[a]
# (the same for columns). Each is one matmul of the four shifted inputs side by side.
TAPS = {0: ((0, 1), (-1, 3)), 1: ((0, 2), (1, 0))}


def int8_unsupported(flags: set[str] | None = None) -> str | None:
    """None where this machine runs the int8 path, else why not (one clause)."""
    if not int8_dot_products(flags):
        return "this CPU has no int8 dot products (AVX512-VNNI, AVX-VNNI or AMX-int8)"
    if not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        return f"this torch ({torch.__version__}) has no oneDNN int8 matmul (onednn.qlinear_pointwise)"
    return None


class Int8Unsupported(RuntimeError):
    """This machine (no int8 dot products, a torch without the op) or this model cannot run it."""


def load_int8(model: str | Path) -> Generator:
    """`model` (what `gan_serve.load` takes; a torch checkpoint of the built-in DCGAN family) as
    a Generator on the int8 path: same seeds, micro-batch and pixel mapping as gan-serve's."""
    G = gan_serve.load(model, backend="torch", precision="fp32")
    folded = copy.deepcopy(G.runner.module)
    fold_batchnorm(folded)  # in fp32, before the calibration and the quantization
    plan = Int8Plan.build(folded, G.runner.micro_batch, G.spec.z_dim, G.spec.output_range)
    return Generator(G.loaded, Int8Backend(plan, G.runner.micro_batch))


class Int8Backend:
    """The `gan_serve.backends.Backend` of an Int8Plan (torch/cpu/int8)."""

    kind, device, precision = "torch", "cpu", "int8"
    auto_reason: str | None = None
    small_passes: tuple[int, ...] = ()

    def __init__(self, plan: Int8Plan, micro_batch: int) -> None:
        self.plan, self.micro_batch = plan, micro_batch

    def run(self, z: np.ndarray) -> np.ndarray:
        return self.plan.forward(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))).numpy()

    @torch.inference_mode()
    def run_images(self, z: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
        y = self.plan.pre_activation(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)))
        return self.plan.table.images(y[:rows])


class Int8Plan:
    """A folded fp32 DCGANGenerator as an int8 forward pass; build it with `build`."""

    def __init__(self, layers: list[tuple[nn.ConvTranspose2d, bool]], act: nn.Module,
                 scales: list[float], micro_batch: int, output_range: tuple[float, float]) -> None:
        first, last = layers[0][0], layers[-1][0]
        k = first.kernel_size[0]
        self.first_shape = (k, k, first.out_channels)
        # (z_dim, k*k*out) in (i, j, o) order, so the matmul's output is channels_last
        self.first_weight = first.weight.detach().permute(0, 2, 3, 1).reshape(first.in_channels, -1).clone()
        self.first_bias = _bias(first).repeat(k * k)
        self.in_scale = scales[0]
        outputs = [*scales[1:], None]  # the last int8 layer hands bf16 to the bf16 layer
        self.inner = [_Int8Deconv(conv, scale_in, scale_out)
                      for (conv, _), scale_in, scale_out in zip(layers[1:-1], scales, outputs, strict=True)]
        last = copy.deepcopy(last).to(torch.bfloat16)
        self.last = _Deconv(_reorder(last, micro_batch, _input_sizes(layers)[-1]), _detach(last.bias),
                            last, False)
        self.act = act
        self.table = PixelTable(act, output_range)  # the act on bf16, then the pixels: one lookup

    @classmethod
    def build(cls, module: nn.Module, micro_batch: int, z_dim: int,
              output_range: tuple[float, float]) -> Int8Plan:
        """The int8 plan of `module` (a DCGANGenerator in fp32 with its BatchNorms folded):
        calibrated on `CALIBRATION_SEEDS`, weights quantized per output channel. An
        Int8Unsupported where this machine or this model cannot run it."""
        if (why := int8_unsupported()) is not None:
            raise Int8Unsupported(f"int8 cannot run here: {why}")
        found = _layers(module)
        if found is None or not _int8_shape(found[0]):
            raise Int8Unsupported(
                "the int8 path runs the built-in DCGAN generator (a first layer on the 1x1 latent, "
                "then ConvTranspose2d layers of kernel 4, stride 2, padding 1 with ReLU between "
                "them); this model has another shape")
        layers, act = found
        quantized = layers[:-2]  # the layers whose outputs are uint8
        _smooth(layers, _channel_maxima(quantized, z_dim))
        scales = [_round_up(max(float(m.max()), 1e-8) / 255) for m in _channel_maxima(quantized, z_dim)]
        return cls(layers, act, scales, micro_batch, output_range)

    @torch.inference_mode()
    def pre_activation(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) fp32 -> the last layer's output (B, C, H, W) bf16, channels_last."""
        x = torch.relu(torch.addmm(self.first_bias, z, self.first_weight))
        x = _to_uint8(x.view(len(z), *self.first_shape), self.in_scale)  # (B, k, k, C)
        for layer in self.inner:
            x = layer(x)
        return self.last(x.permute(0, 3, 1, 2))  # NCHW, channels_last in memory

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) fp32 -> the output (B, C, H, W) fp32: the activation on bf16, as `table`
        has it, so `run` and `run_images` give the same pixels."""
        return self.act(self.pre_activation(z)).float()


class _Int8Deconv:
    """One inner layer: uint8 (B, H, W, Cin) at `scale_in` -> ReLU'd (B, 2H, 2W, Cout), uint8 at
    `scale_out`, or bf16 where scale_out is None."""

    def __init__(self, conv: nn.ConvTranspose2d, scale_in: float, scale_out: float | None) -> None:
        w = conv.weight.detach()  # (Cin, Cout, 4, 4)
        self.bias = _bias(conv)
        self.scale_in, self.scale_out = scale_in, scale_out
        self.zero_points = torch.zeros(w.shape[1], dtype=torch.long)
        self.phases = []
        for a in (0, 1):
            for b in (0, 1):
                taps = torch.cat([w[:, :, ky, kx] for _, ky in TAPS[a] for _, kx in TAPS[b]])  # (4Cin, Cout)
                scale = taps.abs().amax(dim=0).clamp_min(1e-12) / 127  # per output channel
                q = torch.round(taps / scale).clamp(-127, 127).to(torch.int8)
                packed = torch.ops.onednn.qlinear_prepack(q.t().contiguous(), None)
                self.phases.append((a, b, packed, scale))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        padded = F.pad(x, (0, 0, 1, 1, 1, 1))
        dtype = torch.uint8 if self.scale_out is not None else torch.bfloat16
        y = torch.empty(n, h, 2, w, 2, len(self.bias), dtype=dtype)
        for a, b, packed, scale in self.phases:
            cols = torch.cat([padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                              for dy, _ in TAPS[a] for dx, _ in TAPS[b]], dim=-1)
            out = torch.ops.onednn.qlinear_pointwise(
                cols.view(n * h * w, 4 * c), self.scale_in, 0, packed, scale, self.zero_points,
                self.bias, self.scale_out or 1.0, 0, dtype, "relu", [None], "")
            y[:, :, a, :, b] = out.view(n, h, w, -1)
        return y.view(n, 2 * h, 2 * w, -1)


def _int8_shape(layers: list[tuple[nn.ConvTranspose2d, bool]]) -> bool:
    """At least three layers, ReLU after every one but the last, and the inner ones the DCGAN
    upsampling (kernel 4, stride 2, padding 1)."""
    inner = [conv for conv, _ in layers[1:-1]]
    return (len(layers) >= 3 and all(relu for _, relu in layers[:-1])
            and all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1)
                    and c.output_padding == (0, 0) and c.dilation == (1, 1) for c in inner))


@torch.inference_mode()
def _channel_maxima(layers: list[tuple[nn.ConvTranspose2d, bool]], z_dim: int) -> list[torch.Tensor]:
    """Each layer's output maximum per channel (fp32, after ReLU) over the calibration latents."""
    x = torch.from_numpy(latents_for_seeds(CALIBRATION_SEEDS, z_dim)).view(-1, z_dim, 1, 1)
    maxima = []
    for conv, _ in layers:
        x = torch.relu(conv(x))
        maxima.append(x.amax(dim=(0, 2, 3)))
    return maxima


@torch.inference_mode()
def _smooth(layers: list[tuple[nn.ConvTranspose2d, bool]], maxima: list[torch.Tensor]) -> None:
    """Moves half of each uint8 activation's per-channel range into the next layer's weights, in
    place (SmoothQuant, alpha 0.5): activations are quantized per tensor, so a channel far below
    the tensor's maximum would keep few levels. Channel c of layer i's output is divided by t_c
    (its weights and bias: ReLU(x / t) = ReLU(x) / t for t > 0, exactly) and layer i+1's input
    channel c multiplied by t_c, with t_c = sqrt(activation max / weight max), so that both meet
    at the same range. On the bundled model: 35.9 dB against fp32, 34.1 without (BENCHMARKS.md)."""
    k = len(maxima)
    for (conv, _), (nxt, _), m in zip(layers[:k], layers[1 : k + 1], maxima, strict=True):
        r = nxt.weight.abs().amax(dim=(1, 2, 3))
        t = torch.sqrt(m / r)
        t = torch.where(torch.isfinite(t) & (t > 0), t, torch.ones_like(t))
        conv.weight.div_(t.view(1, -1, 1, 1))
        if conv.bias is not None:
            conv.bias.div_(t)
        nxt.weight.mul_(t.view(-1, 1, 1, 1))


def _round_up(x: float) -> float:
    mantissa, exponent = math.frexp(x)
    return math.ldexp(math.ceil(mantissa * 256) / 256, exponent)


def _to_uint8(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.round(x * (1 / scale)).clamp_(0, 255).to(torch.uint8)


def _bias(conv: nn.ConvTranspose2d) -> torch.Tensor:
    return (conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)).detach()


def _detach(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()
