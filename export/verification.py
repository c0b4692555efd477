"""Verification: an exported artifact must agree with the original before we say "done".

The original (torch fp32, eval mode) and the artifact run the same recipe-v1 latents in
several batch sizes; both are quantized with gan_serve's pixel mapping and compared against
the ARCHITECTURE.md tolerances: fp32 max abs diff <= 1/255; fp16/bf16 <= 3/255 and PSNR >= 35 dB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from gan_serve import images as img
from gan_serve.generator import Generator

VERIFY_SEEDS = 16  # seeds 0..15 (recipe-v1 latents)
BATCH_SIZES = (1, 3, 8)  # 1, an odd size, and a full micro-batch: the dynamic batch must work
TOLERANCE = {"fp32": (1, None), "bf16": (3, 35.0), "fp16": (3, 35.0)}  # (max abs /255, min PSNR)


@dataclass
class VerifyReport:
    artifact: str  # file name
    precision: str
    seeds: int  # images compared (each batch size)
    batch_sizes: list[int]
    max_abs_diff: int  # in 1/255 steps, after quantization
    psnr: float  # dB over all compared images (inf when identical)
    passed: bool

    @property
    def tolerance(self) -> str:
        max_abs, min_psnr = TOLERANCE[self.precision]
        return f"max abs <= {max_abs}/255" + (f", PSNR >= {min_psnr:g} dB" if min_psnr else "")

    def render(self) -> str:
        verdict = "verified" if self.passed else "REFUSED"
        psnr = "inf" if np.isinf(self.psnr) else f"{self.psnr:.1f}"
        return (f"{verdict}: {self.artifact} ({self.precision}) vs the original on seeds "
                f"0-{self.seeds - 1}, batch sizes {self.batch_sizes}: max abs diff "
                f"{self.max_abs_diff}/255, PSNR {psnr} dB (tolerance {self.tolerance})")

    def to_dict(self) -> dict:
        return {**asdict(self), "tolerance": self.tolerance}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def verify(reference: Generator, run: Callable[[np.ndarray], np.ndarray], precision: str,
           name: str) -> VerifyReport:
    """Compare `run` (latents (B, z_dim) -> raw NCHW output) against `reference`'s images."""
    seeds = list(range(VERIFY_SEEDS))
    z = reference.latents(seeds)
    expected = reference.synthesize(z)
    worst, got_all = 0, []
    for bs in BATCH_SIZES:
        chunks = [run(z[i : i + bs]) for i in range(0, len(z), bs)]
        got = img.to_uint8(np.concatenate(chunks), reference.spec.output_range)
        if got.shape != expected.shape:
            raise ValueError(f"artifact returned images of shape {got.shape[1:]}, expected "
                             f"{expected.shape[1:]}")
        worst = max(worst, int(np.abs(got.astype(int) - expected.astype(int)).max()))
        got_all.append(got)
    quality = min(psnr(g, expected) for g in got_all)
    max_abs, min_psnr = TOLERANCE[precision]
    passed = worst <= max_abs and (min_psnr is None or quality >= min_psnr)
    return VerifyReport(name, precision, len(seeds), list(BATCH_SIZES), worst, quality, passed)

