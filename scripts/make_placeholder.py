"""Write gan_serve/models/default.safetensors: the clearly labelled *untrained* placeholder.

A random N(0, 0.02) DCGAN whose BatchNorm statistics are estimated from random latents, so
each seed gives a distinct colourful pattern. It exists to make `gan-serve generate` work
out of the box until the training issue ships trained avatar weights.

    python scripts/make_placeholder.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gan_serve.arch import DCGANConfig, DCGANGenerator
from gan_serve.checkpoint import ModelSpec, save_native

OUT = Path(__file__).resolve().parents[1] / "gan_serve" / "models" / "default.safetensors"


def main() -> None:
    torch.manual_seed(0)
    config = DCGANConfig(z_dim=100, widths=[256, 128, 64, 32], channels=3)
    g = DCGANGenerator(config)
    for m in g.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
            m.momentum = None  # cumulative average over the calibration batches
    g.train()
    with torch.no_grad():
        for _ in range(16):
            g(torch.randn(64, config.z_dim))
        # scale the output layer so tanh sees a useful range instead of near-zero grey
        last = g.main[-2]
        last.weight.mul_(0.6 / g.eval()(torch.randn(256, config.z_dim)).std())
    spec = ModelSpec(
        arch="dcgan", config=config.to_dict(), z_dim=config.z_dim,
        img_resolution=config.img_resolution, channels=config.channels,
        training={"placeholder": True, "note": "untrained random weights, not avatars"},
    )
    save_native(g.eval(), spec, OUT, dtype=torch.float16)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
