"""Projection: for each image, the latent z whose image is closest to it (issue 27 item 1).

The method (BENCHMARKS.md, "Projection", has the figures that chose it):
1. screen: the latents of seeds seed..seed+screen-1 (recipe v1) are rendered once and scored
   against every target; the `starts` best seeds of each target are kept.
2. optimise: Adam on those z for `steps` steps, learning rate decayed by a cosine to 0, on
   pixel MSE + (1 - multi-scale SSIM) (+ the mean squared difference of a discriminator's
   features, when one is given) + a prior that keeps ||z|| near sqrt(z_dim), the shell where
   Gaussian latents lie (off it the generator was never trained).
3. the start with the lowest final loss wins; its z is the answer, rendered by the generator's
   own path (`synthesize`), so the reconstruction is what `generate --latents` makes of it.

Nothing is random: the starts are seeds, and the same images (in the same order) with the same
options give the same latent bytes on the same machine and torch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import images as img
from . import latents as lat
from . import targets as tg
from .errors import InputError
from .models import BUNDLED

if TYPE_CHECKING:
    import torch

    from .protocols import ImageGenerator

MAX_IMAGES = 64  # images in one projection (they are optimised together)
MAX_STEPS = 5000
MAX_STARTS = 64
MAX_SCREEN = 4096
SCREEN_BATCH = 64  # latents per screening pass: fixed, so a score never depends on the batch
NO_TORCH = ("projection needs the generator's gradients: a torch checkpoint (.pth, .pt, "
            ".safetensors, or the bundled model), not {what}; project with the checkpoint it "
            "was exported from")


@dataclass(frozen=True)
class ProjectOptions:
    """How a projection searches; every field is bounded (InputError outside its range)."""

    steps: int = 300  # Adam steps per start
    starts: int = 4  # starts optimised per image: the best seeds of the screen
    screen: int = 64  # seeds scored before optimising: seed..seed+screen-1
    seed: int = 0  # first screened seed
    lr: float = 0.1  # Adam's learning rate at step 0 (cosine-decayed to 0)
    ssim_weight: float = 0.3  # weight of 1 - multi-scale SSIM beside pixel MSE
    prior_weight: float = 0.1  # weight of (||z|| / sqrt(z_dim) - 1)^2
    feature_weight: float = 1.0  # weight of the discriminator-feature term (with a discriminator)
    noise: float = 0.0  # std of the noise added to z at step 0, fading to 0 at 3/4 of the steps

    def __post_init__(self) -> None:
        for name, low, high in (("steps", 0, MAX_STEPS), ("starts", 1, MAX_STARTS),
                                ("screen", 1, MAX_SCREEN), ("seed", 0, lat.MAX_SEED)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"{name} must be an integer from {low} to {high:,}, got {value!r}")
        if self.starts > self.screen:
            raise InputError(f"starts ({self.starts}) cannot exceed screen ({self.screen}): the "
                             "starts are the best of the screened seeds")
        if self.seed + self.screen - 1 > lat.MAX_SEED:
            raise InputError(f"seed + screen - 1 must be at most {lat.MAX_SEED}")
        for name, high in (("lr", 10.0), ("ssim_weight", 100.0), ("prior_weight", 100.0),
                           ("feature_weight", 100.0), ("noise", 10.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 <= value <= high and (name != "lr" or value > 0)):
                raise InputError(f"{name} must be a number in {'(0' if name == 'lr' else '[0'}, "
                                 f"{high:g}], got {value!r}")

    def method(self, features: bool) -> str:
        """The method as provenance text."""
        loss = "mse+msssim" + ("+D-features" if features else "")
        return (f"adam-z lr={self.lr:g} cosine, shell-prior={self.prior_weight:g}, {loss} "
                f"(ssim={self.ssim_weight:g}), screen {self.screen} seeds from {self.seed}")


@dataclass
class Projection:
    """What `project` found: per target, the latent, its image and how close it is."""

    latents: np.ndarray  # (N, z_dim) float32
    images: np.ndarray  # (N, R, R, C) uint8: the generator's images of `latents`
    targets: list[tg.Target]
    loss: np.ndarray  # (N,) the final loss of the winning start
    psnr: np.ndarray  # (N,) dB, reconstruction against target, both uint8
    ssim: np.ndarray  # (N,) SSIM of the same pair
    start_seeds: list[int]  # the seed each winning start began from
    options: ProjectOptions
    generator: ImageGenerator  # the one that ran (on torch): its provenance goes into the files
    method: str = ""

    def provenance(self, i: int) -> dict[str, str]:
        """The text chunks of target i's files: the model's provenance and the projection's."""
        return self.generator.provenance(None, 1.0, target_sha256=self.targets[i].sha256, method=self.method,
                            steps=self.options.steps, starts=self.options.starts,
                            start_seed=self.start_seeds[i], loss=f"{self.loss[i]:.6g}",
                            psnr=f"{self.psnr[i]:.2f}", ssim=f"{self.ssim[i]:.4f}")

    def sheet(self, i: int) -> np.ndarray:
        """target | reconstruction | difference (|target - reconstruction| x 4), one row."""

        t, r = self.targets[i].pixels, self.images[i]
        diff = np.clip(np.abs(t.astype(np.int16) - r.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
        return img.make_grid(np.stack([t, r, diff]), nrow=3)

    def files(self, i: int) -> dict[str, bytes]:
        """Target i's outputs by suffix: ".npy" its latent (1, z_dim) float32 (the layout of
        `generate --latents-out`), ".png" the reconstruction, "-sheet.png" the sheet; both PNGs
        carry the provenance."""
        meta = self.provenance(i)
        buf = io.BytesIO()
        np.save(buf, self.latents[i : i + 1].astype(np.float32))
        return {".npy": buf.getvalue(), ".png": img.encode_image(self.images[i], "png", meta),
                "-sheet.png": img.encode_image(self.sheet(i), "png", meta)}


def differentiable(G: ImageGenerator) -> ImageGenerator:
    """G itself when it runs on torch; the bundled model's checkpoint on torch (fp32) when G is
    its ONNX export; else InputError: an ONNX file has no gradients to follow."""
    if G.runner.kind != "onnx" and G.module is not None:
        return G
    from .models import bundled_onnx, resolve_model

    path, name = resolve_model(G.loaded.name) if G.loaded.name in BUNDLED else (None, None)
    if path is not None and bundled_onnx(path, name) is not None:
        from .generator import Generator

        twin = Generator.load(name, backend="torch", precision="fp32")
        if twin.loaded.sha256 == G.loaded.sha256:
            return twin
    raise InputError(NO_TORCH.format(what=f"{G.model_id} on {G.backend}"))


def project(G: ImageGenerator, images: Sequence[tg.TargetSource], options: ProjectOptions | None = None,
            *, discriminator: Any = None, progress: Callable[[int], None] | None = None) -> Projection:
    """Project `images` (paths, file bytes, PIL images or uint8 arrays; at most MAX_IMAGES) into
    G's latent space (G on torch; the bundled model's ONNX export projects with its checkpoint,
    whose provenance the outputs then carry). `discriminator`: a torch D (as `--rank-with`
    loads) whose features join the loss. `progress(1)` after each optimisation step."""
    options = options or ProjectOptions()
    if not 1 <= len(images) <= MAX_IMAGES:
        raise InputError(f"project takes 1 to {MAX_IMAGES} images at once, got {len(images)}")
    G = differentiable(G)
    targets = [tg.of(s, i, G.img_resolution, G.channels) for i, s in enumerate(images)]
    if len(targets) * options.starts > MAX_SCREEN:
        raise InputError(f"{len(targets)} images x {options.starts} starts is more than "
                         f"{MAX_SCREEN} latents optimised at once; project fewer images per call")
    return _project(G, G.module, targets, options, discriminator, progress)


def _project(G: ImageGenerator, module: Any, targets: list[tg.Target], options: ProjectOptions,
             D: Any, progress: Callable[[int], None] | None) -> Projection:
    import torch

    from .ssim import ssim

    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    loss_of = _Loss(G, module, targets, options, D, device)
    with _frozen(module, D):
        seeds = _screen(G, loss_of, options)  # (N, starts)
        z = torch.from_numpy(G.latents(seeds.reshape(-1).tolist())).to(device)
        z = _optimise(loss_of, z, options, progress)
        with torch.no_grad():
            final = loss_of(z, np.repeat(np.arange(len(targets)), options.starts))
    final = final.reshape(len(targets), options.starts).cpu()
    best = torch.argmin(final, dim=1).numpy()  # ties: the first, the better-screened start
    rows = np.arange(len(targets)) * options.starts + best
    latents = z.detach().cpu().numpy()[rows].astype(np.float32)
    recon = G.synthesize(latents)
    truth = np.stack([t.pixels for t in targets])
    with torch.no_grad():
        as_float = [torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255 for a in (recon, truth)]
        ssims = ssim(*as_float).numpy()
    return Projection(latents, recon, targets, final.numpy()[np.arange(len(targets)), best],
                      psnr(recon, truth), ssims, seeds[np.arange(len(targets)), best].tolist(),
                      options, G, options.method(D is not None))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB per image (N,) between uint8 batches; 100 dB for identical images."""
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return np.where(err == 0, 100.0, 10 * np.log10(255.0**2 / np.maximum(err, 1e-12)))


@contextmanager
def _frozen(*modules: Any) -> Iterator[None]:
    """No weight gradients while z is optimised (conv backward skips them); put back after."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, was in zip(params, before, strict=True):
            p.requires_grad_(was)


class _Loss:
    """Per-latent loss (B,) of z (B, z_dim) against the targets `which` (B,) indexes."""

    def __init__(self, G: ImageGenerator, module: Any, targets: list[tg.Target],
                 options: ProjectOptions, D: Any, device: Any) -> None:
        import torch

        self.module, self.options, self.D = module, options, D
        self.lo, self.hi = (float(v) for v in G.spec.output_range)
        pixels = np.stack([t.pixels for t in targets]).transpose(0, 3, 1, 2)
        self.targets = torch.from_numpy(pixels).to(device).float() / 255  # (N, C, R, R) in [0, 1]
        with torch.no_grad():
            self.target_features = None if D is None else self._features(self.targets)
        self.z_dim = G.z_dim

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) mapped to [0, 1] (not clamped: the gradient must pass where tanh saturates)."""
        y = self.module(z).float()
        return (y - self.lo) / (self.hi - self.lo)

    def image_loss(self, x: torch.Tensor, which: np.ndarray) -> torch.Tensor:
        from .ssim import multiscale_ssim

        t = self.targets[which]
        loss = (x - t).square().flatten(1).mean(1)
        if self.options.ssim_weight:
            loss = loss + self.options.ssim_weight * (1 - multiscale_ssim(x.clamp(0, 1), t))
        if self.D is not None and self.options.feature_weight:
            got, want = self._features(x), [f[which] for f in self.target_features]
            loss = loss + self.options.feature_weight * sum(
                (g - w).square().flatten(1).mean(1) for g, w in zip(got, want, strict=True)) / len(got)
        return loss

    def __call__(self, z: Any, which: np.ndarray) -> torch.Tensor:
        norm = z.norm(dim=1) / math.sqrt(self.z_dim)
        return self.image_loss(self.render(z), which) + self.options.prior_weight * (norm - 1).square()

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each hidden layer of a DCGAN discriminator (D.main: conv,
        [batch norm], leaky ReLU per layer), on images in D's input range."""
        import torch

        h = x * (self.hi - self.lo) + self.lo
        out = []
        layers = list(self.D.main)[:-1]  # the last conv gives the score, not features
        for layer in layers:
            h = layer(h)
            if isinstance(layer, torch.nn.LeakyReLU):
                out.append(h)
        return out


def _screen(G: ImageGenerator, loss_of: _Loss, options: ProjectOptions) -> np.ndarray:
    """(N, starts) int64: per target, the screened seeds of lowest loss, best first."""
    import torch

    n = len(loss_of.targets)
    seeds = np.arange(options.seed, options.seed + options.screen, dtype=np.int64)
    scores = np.empty((n, len(seeds)), np.float64)
    device = loss_of.targets.device
    with torch.no_grad():
        for start in range(0, len(seeds), SCREEN_BATCH):
            chunk = seeds[start : start + SCREEN_BATCH]
            z = np.zeros((SCREEN_BATCH, G.z_dim), np.float32)
            z[: len(chunk)] = G.latents(chunk.tolist())
            x = loss_of.render(torch.from_numpy(z).to(device))[: len(chunk)]
            for i in range(n):  # each target against the chunk's images
                scores[i, start : start + len(chunk)] = loss_of.image_loss(
                    x, np.full(len(chunk), i)).double().cpu().numpy()
    order = np.argsort(scores, axis=1, kind="stable")[:, : options.starts]
    return seeds[order]


def _optimise(loss_of: _Loss, z: torch.Tensor, options: ProjectOptions,
              progress: Callable[[int], None] | None) -> torch.Tensor:
    """Adam on z (N * starts, z_dim) with a cosine-decayed learning rate."""
    import torch

    which = np.repeat(np.arange(len(loss_of.targets)), options.starts)
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=options.lr)
    rng = torch.Generator().manual_seed(options.seed)  # the noise, like the starts, from the seed
    for step in range(options.steps):
        for group in opt.param_groups:
            group["lr"] = options.lr * 0.5 * (1 + math.cos(math.pi * step / options.steps))
        opt.zero_grad(set_to_none=True)
        fade = options.noise * max(0.0, 1 - step / (0.75 * options.steps)) ** 2
        noisy = z
        if fade:  # explores around z early on, as StyleGAN's projector does around w
            noisy = z + fade * torch.randn(z.shape, generator=rng).to(z.device)
        # a sum: each latent's gradient is its own loss's, whatever else is in the batch
        loss_of(noisy, which).sum().backward()
        opt.step()
        if progress:
            progress(1)
    return z.detach()
