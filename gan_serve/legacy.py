"""Every checkpoint format that is not gan-serve's own, turned into (ModelSpec, state dict).

What training scripts save, as NVlabs keeps its old formats apart in stylegan3's `legacy.py`:
a bare state dict (seeds/000's `model.*`, pytorch/examples' `netG` `main.*`, any attribute
name), a dict holding one under the key a script chose (`gen`, `netG`, `g_ema`, ...: the
`GENERATOR_KEYS`), DataParallel's `module.` and torch.compile's `_orig_mod.` prefixes, and
safetensors weights without gan-serve's metadata. Such a file says nothing about its model:
the DCGAN family is inferred from key names and shapes (gan_serve.arch), anything else is the
class the caller names (`--arch`, with an explicit output range).

Reading the bytes is not done here: gan_serve.checkpoint sniffs the file and reads it
(torch files weights-only, gan_serve.torchfile), then hands the contents to this module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .arch import DCGANConfig, infer_dcgan
from .errors import CheckpointError, InputError
from .spec import LoadOptions, ModelSpec

# Keys under which training scripts keep the generator, most specific first (EMA wins).
GENERATOR_KEYS = (
    "g_ema", "G_ema", "gen", "netG", "generator", "G", "g",
    "generator_state_dict", "netG_state_dict", "gen_state_dict",
    "model_state_dict", "state_dict", "model",
)
DISCRIMINATOR_KEYS = (
    "dis", "netD", "discriminator", "D", "d",
    "discriminator_state_dict", "netD_state_dict", "dis_state_dict",
    "model_state_dict", "state_dict", "model",  # generic: a wrong match still fails inference
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile


def top_level(obj: object) -> str:
    """What a file holds at its top level, for an error message (never recursing into keys)."""
    if isinstance(obj, dict):
        return str(sorted(k[:40] if isinstance(k, str) else type(k).__name__ for k in obj)[:12])
    return type(obj).__name__


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def find_state_dict(
    obj: object, keys: tuple[str, ...] = GENERATOR_KEYS, depth: int = 2
) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """Find a state dict in `obj` or under one of `keys`, up to `depth` dicts deep.

    Returns the state dict and the keys leading to it ([] for `obj` itself).
    """
    if _is_state_dict(obj):
        return obj, []
    if not isinstance(obj, dict) or depth == 0:
        return None
    for key in keys:
        found = find_state_dict(obj.get(key), keys, depth - 1) if key in obj else None
        if found is not None:
            return found[0], [key, *found[1]]
    return None


def weights_in(obj: object, path: Path, keys: tuple[str, ...] = GENERATOR_KEYS,
               role: str = "generator") -> tuple[dict[str, torch.Tensor], str]:
    """The state dict a torch file held (`obj`, as loaded weights-only) and where it was in
    it ("state dict['gen']"); CheckpointError naming the top-level keys if there is none."""
    found = find_state_dict(obj, keys)
    if found is None:
        raise CheckpointError(
            f"no {role} weights found in {str(path)!r} (top level: {top_level(obj)}); expected "
            f"a state dict, or a dict holding one under one of {', '.join(keys)}")
    return found[0], "state dict" + "".join(f"[{k!r}]" for k in found[1])


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DataParallel `module.` and torch.compile `_orig_mod.` prefixes."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def spec_and_weights(sd: dict[str, torch.Tensor], options: LoadOptions
                     ) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """The ModelSpec of a legacy state dict and the weights under the names its module has:
    the inferred DCGAN (keys mapped onto gan_serve.arch's), or the caller's `--arch` class."""
    sd = strip_prefixes(sd)
    if options.arch in (None, "dcgan"):
        config, mapped = infer_dcgan(sd)
        if options.arch_kwargs:
            config = DCGANConfig.from_dict({**config.to_dict(), **options.arch_kwargs})
        spec = ModelSpec(
            arch="dcgan", config=config.to_dict(), z_dim=config.z_dim,
            img_resolution=config.img_resolution, channels=config.channels,
            output_range=options.output_range or config.output_range,
        )
        return spec, mapped
    if options.output_range is None:
        raise InputError(
            f"--arch {options.arch} needs an explicit output range: --output-range -1,1 for tanh "
            "output or 0,1 for sigmoid / x/2+0.5 output"
        )
    spec = ModelSpec(arch=options.arch, config=dict(options.arch_kwargs or {}),
                     z_dim=options.z_dim or 100, output_range=options.output_range, z_layout="auto")
    return spec, sd
