"""The DCGAN generator family: one module (config in gan_serve.spec), and inference from a state dict.

Training, export and serving all build generators from `DCGANConfig` through
`DCGANGenerator`; legacy state dicts (seed-style `model.N`, pytorch/examples `main.N`,
any attribute name) are mapped onto it by `infer_dcgan`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from .errors import UnknownArchitectureError
from .seam import as_layout
from .spec import DCGANConfig


class DCGANGenerator(nn.Module):
    """ConvTranspose2d stack: z -> (widths[0], k, k) -> ... -> (channels, R, R)."""

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_ch = config.z_dim
        for i, width in enumerate(config.widths):
            kernel, stride, pad = (config.first_kernel, 1, 0) if i == 0 else (4, 2, 1)
            layers.append(nn.ConvTranspose2d(in_ch, width, kernel, stride, pad, bias=config.bias))
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(True))
            in_ch = width
        layers.append(nn.ConvTranspose2d(in_ch, config.channels, 4, 2, 1, bias=config.out_bias))
        act = {"tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}
        layers.append(act[config.output_activation])
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z (B, z_dim) or (B, z_dim, 1, 1): training, serving and export all pass (B, z_dim)
        return self.main(as_layout(z, self.config.z_dim, "nchw"))


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def describe_found(sd: dict[str, torch.Tensor], limit: int = 8) -> str:
    items = [f"{k} {tuple(v.shape)}" for k, v in sorted(sd.items(), key=lambda kv: _natural_key(kv[0]))]
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def conv_chain(sd: dict[str, torch.Tensor], conv_name: str,
               fail: Callable[[str], Exception]) -> list[dict]:
    """Read a state dict as an ordered chain of 4-D conv weights, each with an optional bias
    and an optional BatchNorm2d after it: [{"name", "w", "b", "bn"}]. Any other layer fails."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in sd.items():
        prefix, _, param = key.rpartition(".")
        modules.setdefault(prefix, {})[param] = tensor
    convs: list[dict] = []
    for name, params in sorted(modules.items(), key=lambda kv: _natural_key(kv[0])):
        w = params.get("weight")
        if w is not None and w.dim() == 4 and set(params) <= {"weight", "bias"}:
            convs.append({"name": name, "w": w, "b": params.get("bias"), "bn": None})
        elif {"running_mean", "running_var"} <= set(params) and convs and convs[-1]["bn"] is None:
            convs[-1]["bn"] = params
        else:
            shapes = ", ".join(f"{name}.{p} {tuple(t.shape)}" for p, t in params.items())
            raise fail(f"layer {shapes} is neither a {conv_name} nor a BatchNorm2d")
    if len(convs) < 2:
        raise fail(f"fewer than two {conv_name} layers")
    return convs


def chain_state_dict(convs: list[dict]) -> dict[str, torch.Tensor]:
    """Keys of a `main` Sequential laid out conv, [BatchNorm], activation per layer."""
    mapped: dict[str, torch.Tensor] = {}
    idx = 0
    for c in convs:
        mapped[f"main.{idx}.weight"] = c["w"]
        if c["b"] is not None:
            mapped[f"main.{idx}.bias"] = c["b"]
        idx += 1
        if c["bn"] is not None:
            bn = dict(c["bn"])
            bn.setdefault("weight", torch.ones_like(bn["running_mean"]))  # affine=False BN
            bn.setdefault("bias", torch.zeros_like(bn["running_mean"]))
            bn.setdefault("num_batches_tracked", torch.tensor(0))  # saved before PyTorch 0.4.1
            mapped.update({f"main.{idx}.{p}": t for p, t in bn.items()})
            idx += 1
        idx += 1  # the activation
    return mapped


def infer_dcgan(sd: dict[str, torch.Tensor]) -> tuple[DCGANConfig, dict[str, torch.Tensor]]:
    """Infer a DCGANConfig from a generator state dict and map its keys to DCGANGenerator's.

    Accepts any attribute name and layer indices: the layers are read in order as a chain of
    4-D ConvTranspose2d weights (in, out, k, k), each with an optional bias and an optional
    BatchNorm2d after it. Raises UnknownArchitectureError with what was found otherwise.
    """
    def fail(why: str) -> UnknownArchitectureError:
        return UnknownArchitectureError(
            f"not a DCGAN-family generator ({why}); found {describe_found(sd)}. "
            "Load it with --arch module:Class (plus --arch-kwargs JSON and --output-range)"
        )

    convs = conv_chain(sd, "ConvTranspose2d", fail)

    first = convs[0]["w"]
    if first.shape[2] != first.shape[3]:
        raise fail(f"non-square first kernel {tuple(first.shape[2:])}")
    for i, c in enumerate(convs):
        w = c["w"]
        if i > 0 and tuple(w.shape[2:]) != (4, 4):
            raise fail(f"layer {c['name']} has kernel {tuple(w.shape[2:])}; DCGAN upsamples with 4x4")
        if i > 0 and w.shape[0] != convs[i - 1]["w"].shape[1]:
            raise fail(
                f"layer {c['name']} takes {w.shape[0]} channels but the layer before gives "
                f"{convs[i - 1]['w'].shape[1]} (mismatched shapes)"
            )
        out = w.shape[1]
        if c["b"] is not None and tuple(c["b"].shape) != (out,):
            raise fail(f"bias of {c['name']} has shape {tuple(c['b'].shape)}, expected ({out},)")
        if c["bn"] is not None and tuple(c["bn"]["running_mean"].shape) != (out,):
            raise fail(f"BatchNorm after {c['name']} does not match its {out} channels")

    hidden, last = convs[:-1], convs[-1]
    if last["bn"] is not None:
        raise fail("a BatchNorm follows the output layer")
    has_bn = {c["bn"] is not None for c in hidden}
    has_bias = {c["b"] is not None for c in hidden}
    if len(has_bn) > 1 or len(has_bias) > 1:
        raise fail("BatchNorm or bias present on some hidden layers but not others")
    config = DCGANConfig(
        z_dim=int(first.shape[0]),
        widths=[int(c["w"].shape[1]) for c in hidden],
        channels=int(last["w"].shape[1]),
        first_kernel=int(first.shape[2]),
        batch_norm=has_bn.pop(),
        bias=has_bias.pop(),
        out_bias=last["b"] is not None,
    )
    if config.channels not in (1, 3, 4):
        raise fail(f"{config.channels} output channels; images have 1, 3 or 4")

    return config, chain_state_dict(convs)  # DCGANGenerator's own key names
