"""Directions without labels (GANSpace, Härkönen et al. 2020) and the contact sheet that shows them.

Many recipe-v1 latents go through the generator; the activations of an early layer (the first
nonlinearity's output by default: for a DCGAN, the 4x4 feature maps that fix the layout and
colours) are reduced by PCA, and each principal axis is carried back to z by linear
regression of z on the PCA coordinates. The regression's columns, made unit length, are the
directions `pc0..pcK`, ordered by the variance of the activations their axis explains.
Everything is deterministic: fixed seeds, a fixed-seed randomized SVD.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np

from . import images as img
from . import latents as lat
from .directions import MAX_DIRECTIONS, Directions
from .errors import InputError
from .limits import DEFAULT_LIMITS
from .protocols import ImageGenerator

DEFAULT_SAMPLES = 4096  # latents whose activations the PCA sees
DEFAULT_COMPONENTS = 20
MAX_SAMPLES = 65536
MAX_VALUES = 2**26  # samples x features held for the PCA (512 MB as float64)
SHEET_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
SHEET_SEEDS = (0, 1, 2)
SHEET_ROWS = 10  # directions a default sheet shows
ACTIVATIONS = ("ReLU", "LeakyReLU", "SiLU", "GELU", "ELU", "PReLU", "Mish", "Softplus",
               "Hardswish", "SELU", "CELU")
BATCH = 256  # latents per forward pass while collecting features


def find_directions(G: ImageGenerator, samples: int = DEFAULT_SAMPLES,
                    components: int = DEFAULT_COMPONENTS, layer: str = "auto",
                    first_seed: int = 0, progress: Callable[[int], None] | None = None) -> Directions:
    """`components` directions pc0.. of G from the latents of seeds first_seed.. (`samples`),
    through the activations of `layer` ("auto": the first nonlinearity; a module name from
    G.module.named_modules(); "pixels": the output image, for backends without a module)."""
    samples = lat.check_n(samples, MAX_SAMPLES, what="samples")
    if samples < 2:
        raise InputError("samples must be at least 2: a PCA needs more than one latent")
    if not 1 <= components <= min(MAX_DIRECTIONS, G.z_dim, samples - 1):
        raise InputError(f"components must be from 1 to {min(MAX_DIRECTIONS, G.z_dim, samples - 1)} "
                         f"(at most z_dim and samples - 1), got {components}")
    z = lat.latents_for_seeds(lat.seed_span(lat.check_seed(first_seed), samples, MAX_SAMPLES), G.z_dim)
    features, where = collect_features(G, z, layer, progress)
    axes, variance, total = pca(features, components)
    coords = (features - features.mean(0)) @ axes.T  # (N, K)
    back, *_ = np.linalg.lstsq(coords, z.astype(np.float64), rcond=None)  # (K, z_dim)
    explained = variance / total
    return Directions(back.astype(np.float32), tuple(f"pc{k}" for k in range(components)),
                      "ganspace", tuple(float(e) for e in explained), G.loaded.sha256,
                      {"samples": samples, "first_seed": first_seed, "layer": where,
                       "total_variance": float(total)})


def pca(x: np.ndarray, k: int, oversample: int = 10, power: int = 4) -> tuple[np.ndarray, np.ndarray, float]:
    """Top-`k` principal axes (k, D) of rows `x` (N, D), their variances (k,) and the total
    variance, by a randomized SVD with a fixed seed (Halko et al.; `power` iterations make the
    top axes exact to float precision for spectra like these). Each axis's sign is fixed so that
    its largest entry is positive."""
    x = np.asarray(x, np.float64)
    xc = x - x.mean(0)
    width = min(k + oversample, *xc.shape)
    y = xc @ np.random.RandomState(0).randn(xc.shape[1], width)
    for _ in range(power):
        q, _ = np.linalg.qr(y)
        y = xc @ (xc.T @ q)
    q, _ = np.linalg.qr(y)
    _, s, vt = np.linalg.svd(q.T @ xc, full_matrices=False)
    axes = vt[:k]
    signs = np.sign(axes[np.arange(k), np.abs(axes).argmax(1)])
    axes = axes * signs[:, None]
    dof = max(len(x) - 1, 1)
    return axes, s[:k] ** 2 / dof, float((xc**2).sum() / dof)


def collect_features(G: ImageGenerator, z: np.ndarray, layer: str,
                     progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, str]:
    """(N, D) float32 activations of `layer` for latents z, and a description of the layer."""
    module = _torch_module(G)
    if layer == "pixels" or (layer == "auto" and module is None):
        return _pixel_features(G, z, progress), "pixels"
    if module is None:
        raise InputError(f"layer {layer!r} needs a torch module (--backend torch); this model runs on "
                         f"{G.backend}: use --layer pixels")
    import torch

    target, name = _pick_layer(module, layer, torch.from_numpy(z[:1]))
    chunks: list[np.ndarray] = []

    def keep(_m: object, _i: object, o: torch.Tensor) -> None:
        chunks.append(o.detach().float().reshape(len(o), -1).cpu().numpy().copy())
        raise _Enough  # the layers after it are not needed: skip them

    hook = target.register_forward_hook(keep)
    param = next(module.parameters(), None)
    dtype, device = (param.dtype, param.device) if param is not None else (torch.float32, "cpu")
    try:
        with torch.no_grad():
            for start in range(0, len(z), BATCH):
                with contextlib.suppress(_Enough):
                    module(torch.from_numpy(z[start : start + BATCH]).to(device, dtype))
                _check_values(len(z), chunks[0].shape[1])
                if progress:
                    progress(len(z[start : start + BATCH]))
    finally:
        hook.remove()
    features = np.concatenate(chunks)
    return features, f"{name} ({type(target).__name__}, {features.shape[1]} values)"


class _Enough(Exception):
    """Raised by the feature hook to end a forward pass once the layer's output is kept."""


def _check_values(samples: int, width: int) -> None:
    if samples * width > MAX_VALUES:
        raise InputError(f"{samples:,} samples of {width:,} activations each is over "
                         f"{MAX_VALUES:,} values; use fewer --samples or an earlier --layer")


def _torch_module(G: ImageGenerator) -> object | None:
    module = getattr(G, "module", None)
    if module is None:
        return None
    import torch

    if isinstance(module, torch.jit.ScriptModule) or not isinstance(module, torch.nn.Module):
        return None  # a TorchScript program takes no hooks
    return module


def _pick_layer(module: object, layer: str, probe: object) -> tuple[object, str]:
    # the named module, or the first activation module a forward pass calls
    named = dict(module.named_modules())
    if layer != "auto":
        if layer not in named or layer == "":
            leaves = [n for n, m in named.items() if n and not list(m.children())]
            raise InputError(f"no layer {layer!r} in this model; its layers: {', '.join(leaves[:30])}")
        return named[layer], layer
    order: list[str] = []
    names = {id(m): n for n, m in named.items()}
    hooks = [m.register_forward_hook(lambda m, _i, _o: order.append(names[id(m)]))
             for n, m in named.items() if n and not list(m.children())]
    import torch

    param = next(module.parameters(), None)
    try:
        with torch.no_grad():
            module(probe.to(param.device, param.dtype) if param is not None else probe)
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise InputError("this model has no layers to take activations from; use --layer pixels")
    first = next((n for n in order if type(named[n]).__name__ in ACTIVATIONS), order[0])
    return named[first], first


def _pixel_features(G: ImageGenerator, z: np.ndarray, progress: Callable[[int], None] | None
                    ) -> np.ndarray:
    _check_values(len(z), G.img_resolution**2 * G.channels)
    images = G.synthesize(z, progress)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def sheet_latents(directions: Directions, names: Sequence[str], seeds: Sequence[int], z_dim: int,
                  strengths: Sequence[float] = SHEET_STRENGTHS, truncation_psi: float = 1.0) -> np.ndarray:
    """Latents of a contact sheet: a row per direction, in it each seed at each strength."""
    directions.check_model(z_dim)
    seeds = lat.check_seeds(seeds, DEFAULT_LIMITS.max_n)
    base = lat.truncate(lat.latents_for_seeds(seeds, z_dim), truncation_psi)
    t = np.asarray(strengths, np.float64)
    rows = [(base[:, None, :] + t[None, :, None] * directions.vector(n).astype(np.float64)[None, None])
            .reshape(-1, z_dim) for n in names]
    return np.concatenate(rows).astype(np.float32)


def contact_sheet(G: ImageGenerator, directions: Directions, names: Sequence[str] | None = None,
                  seeds: Sequence[int] = SHEET_SEEDS, strengths: Sequence[float] = SHEET_STRENGTHS,
                  progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict[str, str]]:
    """The sheet (H, W, C) uint8 and its provenance: a row per direction (default: the first
    SHEET_ROWS), columns the strengths for each seed in turn."""
    names = list(names) if names is not None else directions.top(SHEET_ROWS)
    per_row = len(seeds) * len(strengths)
    z = sheet_latents(directions, names, seeds, G.z_dim, strengths)
    images = G.synthesize(z, progress)
    meta = G.provenance(list(seeds), 1.0, directions=directions.id, sheet=",".join(names),
                        strengths=",".join(repr(float(s)) for s in strengths))
    return img.make_grid(images, per_row), meta
