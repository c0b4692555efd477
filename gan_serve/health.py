"""`gan-serve inspect`: what a checkpoint is, and whether its samples look healthy.

The health check reads 256 samples (seeds 0..255, so the verdict is reproducible) for the
failures users hit (seeds/000-003): mode collapse ("only a few faces, slightly shifted"),
a generator that ignores z, black / saturated / constant images; and weights that were never
trained (BatchNorm layers still at their initial state), whose samples look collapsed for
another reason. numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import CheckpointError
from .protocols import ImageGenerator

FEATURE_SIZE = 16  # compare 16x16 thumbnails: a 1-2 px shift at 64x64 stays a near-duplicate
NEAR_DUPLICATE = 0.03  # mean abs difference in [0, 1] below which two thumbnails look the same
IDENTICAL = 0.01  # mean pairwise distance below this: every sample is the same picture
BLACK_MEAN = 0.06  # mean brightness below this (about 15/255) reads as a black image
SATURATED_SHARE = 0.8  # images with more pixels than this at 0-5 or 250-255 are saturated
CONSTANT_STD = 2 / 255  # images whose pixel std is below this show nothing
COLLAPSE_CLUSTER = 0.2  # one near-duplicate cluster holding > 20% of samples is collapse
COLLAPSE_DUPLICATES = 0.5  # or more than half the samples having a near-duplicate
MAJORITY = 0.5  # a failure counts when it hits more than half the samples


@dataclass
class LayerStats:
    """One BatchNorm layer's running statistics."""

    name: str
    channels: int
    mean_abs_running_mean: float
    mean_running_var: float
    untouched: bool  # running_mean all 0 and running_var all 1: never updated in train mode
    shift_at_init: bool = False  # affine bias all exactly 0: no optimizer step changed it


@dataclass
class HealthReport:
    samples: int  # images analysed
    mean_pairwise_distance: float  # mean abs difference of 16x16 thumbnails, in [0, 1]
    clusters: int  # connected components of the near-duplicate graph
    largest_cluster_share: float  # share of samples in the largest cluster
    duplicate_share: float  # share of samples with at least one near-duplicate
    black_share: float
    saturated_share: float
    constant_share: float
    verdict: str  # "healthy" or short labels of what is wrong
    problems: list[str] = field(default_factory=list)  # what, likely cause, what to try

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class InspectReport:
    model_id: str
    source_format: str
    architecture: str
    parameters: int | None  # None when the backend hides the weights (ONNX)
    z_dim: int
    img_resolution: int
    channels: int
    output_range: tuple[float, float]
    backend: str
    placeholder: bool
    batchnorm: list[LayerStats]
    health: HealthReport | None
    training: dict
    nonfinite_weights: dict[str, str] = field(default_factory=dict)  # tensor -> "1 NaN, 2 Inf"
    output_fault: str | None = None  # why sampling failed although the weights are finite

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_range"] = list(self.output_range)
        return json.loads(json.dumps(d, default=str))

    def render(self) -> str:
        """Human-readable report for the terminal."""
        lo, hi = self.output_range
        params = "n/a" if self.parameters is None else f"{self.parameters:,}"
        lines = [
            f"model         {self.model_id}" + ("  (untrained placeholder)" if self.placeholder else ""),
            f"format        {self.source_format}",
            f"architecture  {self.architecture}",
            f"parameters    {params}",
            f"latent        z_dim={self.z_dim}",
            f"images        {self.img_resolution}x{self.img_resolution}, {self.channels} channel(s), "
            f"raw output in [{lo:g}, {hi:g}]",
            f"backend       {self.backend}",
        ]
        if self.nonfinite_weights:
            lines.append(f"weights       BROKEN: NaN/Inf in {len(self.nonfinite_weights)} tensor(s); "
                         "generate and serve refuse this model")
            lines += [f"  ! {k}: {v}" for k, v in self.nonfinite_weights.items()]
        if self.output_fault:
            lines.append(f"output        BROKEN: {self.output_fault}")
        if self.batchnorm:
            untouched = [b.name for b in self.batchnorm if b.untouched]
            lines.append(f"batchnorm     {len(self.batchnorm)} layers; " + (
                f"running stats never updated in {', '.join(untouched)} (saved before training?)"
                if untouched else "running stats look trained"))
        if self.health is not None:
            h = self.health
            lines += [
                f"health        {h.verdict}  ({h.samples} samples, seeds 0-{h.samples - 1})",
                f"  diversity   mean pairwise distance {h.mean_pairwise_distance:.3f}; "
                f"{h.clusters} near-duplicate clusters, largest {h.largest_cluster_share:.0%}; "
                f"{h.duplicate_share:.0%} have a near-duplicate",
                f"  pixels      black {h.black_share:.0%}, saturated {h.saturated_share:.0%}, "
                f"constant {h.constant_share:.0%}",
            ]
            lines += [f"  ! {p}" for p in h.problems]
        return "\n".join(lines)


def _thumbnails(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, FEATURE_SIZE**2 * C) float in [0, 1], by area averaging."""
    n, h, w, c = images.shape
    s = FEATURE_SIZE if h % FEATURE_SIZE == 0 and w % FEATURE_SIZE == 0 else 1
    if s == 1:  # odd sizes: compare at full resolution
        return images.reshape(n, -1).astype(np.float32) / 255.0
    x = images.reshape(n, s, h // s, s, w // s, c).astype(np.float32).mean(axis=(2, 4))
    return x.reshape(n, -1) / 255.0


def _pairwise(feats: np.ndarray, chunk: int = 32) -> np.ndarray:
    n = len(feats)
    dist = np.empty((n, n), np.float32)
    for i in range(0, n, chunk):  # chunked: (chunk, N, D) floats at a time
        dist[i : i + chunk] = np.abs(feats[i : i + chunk, None] - feats[None]).mean(-1)
    return dist


def _components(adjacent: np.ndarray) -> np.ndarray:
    """Connected-component label of every node of a boolean adjacency matrix."""
    n = len(adjacent)
    labels = -np.ones(n, int)
    for start in range(n):
        if labels[start] >= 0:
            continue
        stack, labels[start] = [start], start
        while stack:
            for j in np.flatnonzero(adjacent[stack.pop()] & (labels < 0)):
                labels[j] = start
                stack.append(j)
    return labels


def health_check(images: np.ndarray, untrained: str | None = None) -> HealthReport:
    """Diversity and pixel statistics of uint8 (N, H, W, C) samples, with a verdict.

    `untrained`: why the weights look like a fresh initialisation (see `untrained_evidence`),
    or None; samples that look collapsed are then blamed on that, not on training."""
    images = np.asarray(images, dtype=np.uint8)
    n = len(images)
    flat = images.reshape(n, -1).astype(np.float32) / 255.0
    black = float(np.mean(flat.mean(1) < BLACK_MEAN))
    extreme = ((flat <= 5 / 255) | (flat >= 250 / 255)).mean(1)
    saturated = float(np.mean(extreme > SATURATED_SHARE))
    constant = float(np.mean(flat.std(1) < CONSTANT_STD))
    dist = _pairwise(_thumbnails(images)) if n > 1 else np.zeros((1, 1), np.float32)
    off = ~np.eye(n, dtype=bool)
    mean_dist = float(dist[off].mean()) if n > 1 else 0.0
    near = (dist < NEAR_DUPLICATE) & off
    labels = _components(near)
    sizes = np.bincount(np.unique(labels, return_inverse=True)[1])
    report = HealthReport(
        samples=n, mean_pairwise_distance=mean_dist, clusters=int(len(sizes)),
        largest_cluster_share=float(sizes.max() / n), duplicate_share=float(near.any(1).mean()),
        black_share=black, saturated_share=saturated, constant_share=constant, verdict="healthy",
    )
    _diagnose(report, untrained)
    return report


def _diagnose(r: HealthReport, untrained: str | None = None) -> None:
    labels: list[str] = []
    looks_collapsed = (r.samples > 1 and r.mean_pairwise_distance < IDENTICAL
                       or r.largest_cluster_share > COLLAPSE_CLUSTER
                       or r.duplicate_share > COLLAPSE_DUPLICATES or r.constant_share > MAJORITY)
    if untrained is not None and looks_collapsed:
        labels.append("untrained weights")
        r.problems.append(
            f"the weights look untrained ({untrained}), so these samples say nothing about mode "
            "collapse: the file was saved before training changed it. Inspect a checkpoint from "
            "later in the run")
    elif r.samples > 1 and r.mean_pairwise_distance < IDENTICAL:
        labels.append("generator ignores z")
        r.problems.append(
            f"every sample is nearly the same picture (mean distance {r.mean_pairwise_distance:.3f}): "
            "the generator ignores its latent. Likely a complete mode collapse or a model saved "
            "before training; check that z reaches G and retrain from an earlier checkpoint")
    elif (r.largest_cluster_share > COLLAPSE_CLUSTER or r.duplicate_share > COLLAPSE_DUPLICATES):
        labels.append("mode collapse suspected")
        r.problems.append(
            f"mode collapse suspected: {r.samples} samples fall into {r.clusters} near-duplicate "
            f"clusters (largest holds {r.largest_cluster_share:.0%}). Likely causes: a learning "
            "rate too high, several G steps per D step, a discriminator that wins; try lr 2e-4 "
            "with betas (0.5, 0.999), 1:1 D:G steps, label smoothing, or an earlier checkpoint")
    if r.black_share > MAJORITY:
        labels.append("black images")
        r.problems.append(
            f"{r.black_share:.0%} of images are mostly black. Typical cause: the generator ends "
            "in tanh but real images were left in [0, 1] (normalize with mean 0.5, std 0.5 to "
            "[-1, 1]), or the output range is wrong (try --output-range 0,1)")
    if r.saturated_share > MAJORITY:
        labels.append("saturated images")
        r.problems.append(
            f"{r.saturated_share:.0%} of images are saturated (pixels stuck at 0 or 255): the "
            "output layer is pushed to the tanh limits; check --output-range, lower the lr")
    if r.constant_share > MAJORITY and "untrained weights" not in labels:
        labels.append("constant images")
        r.problems.append(
            f"{r.constant_share:.0%} of images are a single flat colour: the generator produces "
            "no structure; it may be untrained or its weights may have collapsed (NaN recovery?)")
    r.verdict = "; ".join(labels) if labels else "healthy"


def batchnorm_stats(module: object) -> list[LayerStats]:
    """Running statistics of every BatchNorm layer in a torch module ([] for others)."""
    named = getattr(module, "named_modules", None)
    if named is None:
        return []
    stats = []
    for name, m in named():
        mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
        if mean is None or var is None:
            continue
        mean_np, var_np = mean.detach().float().cpu().numpy(), var.detach().float().cpu().numpy()
        stats.append(LayerStats(
            name=name, channels=int(mean_np.size),
            mean_abs_running_mean=float(np.abs(mean_np).mean()),
            mean_running_var=float(var_np.mean()),
            untouched=bool(np.all(mean_np == 0) and np.all(var_np == 1)),
            shift_at_init=getattr(m, "bias", None) is not None and not bool(m.bias.detach().any()),
        ))
    return stats


def untrained_evidence(stats: list[LayerStats]) -> str | None:
    """Why BatchNorm layers say the weights were never trained, or None: a step in train mode
    moves every running mean and variance off their initial 0 and 1, and an optimizer step
    moves the shifts off 0. Without BatchNorm layers the weights alone cannot tell."""
    if not stats:
        return None
    if all(b.untouched for b in stats):
        return "BatchNorm running statistics never updated"
    if all(b.shift_at_init for b in stats):
        return "every BatchNorm shift still exactly 0"
    return None


def inspect_generator(G: ImageGenerator, samples: int = 256,
                      progress: Callable[[int], None] | None = None) -> InspectReport:
    """Describe a loaded gan_serve Generator and check `samples` images (0 skips the check)."""
    module = G.module
    params = None
    if hasattr(module, "parameters"):
        params = int(sum(p.numel() for p in module.parameters()))
    nonfinite = dict(G.loaded.nonfinite)
    batchnorm = batchnorm_stats(module)
    health, output_fault = None, None  # NaN weights make NaN images: nothing to sample
    if samples and not nonfinite:
        try:
            health = health_check(G.generate(range(samples), progress=progress),
                                  untrained_evidence(batchnorm))
        except CheckpointError as exc:  # inspect reports what generate would refuse
            output_fault = (
                f"the weights are finite, but seeds 0-{samples - 1} give NaN or Inf (an overflow: "
                "weights too large for the activations); generate and serve refuse this model"
                if "NaN or infinite" in str(exc) else str(exc))
    spec = G.spec
    return InspectReport(
        model_id=G.model_id, source_format=G.loaded.source_format,
        architecture=spec.describe(), parameters=params, z_dim=spec.z_dim,
        img_resolution=spec.img_resolution, channels=spec.channels,
        output_range=tuple(spec.output_range), backend=G.backend,
        placeholder=bool(spec.training.get("placeholder")), batchnorm=batchnorm,
        health=health, training=dict(spec.training), nonfinite_weights=nonfinite,
        output_fault=output_fault,
    )
