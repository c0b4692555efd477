"""Offline real data with a ground truth for GAN benchmarks: scikit-learn's bundled digits.

- `digits`: the 1,797 8x8 digits of `sklearn.datasets.load_digits`, upscaled (bilinear) to
  32x32 greyscale in [-1, 1]: 10 modes.
- `stacked`: 20,000 RGB 32x32 images, one digit per colour channel, the three drawn
  independently (fixed seed): 1,000 equally likely modes, the "stacked MNIST" protocol of the
  VEEGAN and PacGAN papers with scikit-learn's digits in place of MNIST.

A small CNN trained on the real digits (shipped in benchmarks/results/) classifies every
channel of generated images; a generator's score is the modes it covers, the KL divergence of
its mode histogram from uniform, and the classifier's mean confidence (max softmax).
Nothing is downloaded: the digits ship inside scikit-learn (the `test` extra).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from gan_serve.fsutil import write_bytes_atomic

SETS = ("digits", "stacked")
STACKED_SIZE, STACKED_SEED = 20_000, 0
CLASSIFIER_EPOCHS, HOLDOUT_EVERY = 20, 6  # every 6th digit is held out to report accuracy


def real_digits(resolution: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(1797, 1, R, R) digits in [-1, 1] and their (1797,) labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0  # 0..16 grey levels
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x * 2.0 - 1.0, torch.from_numpy(bunch.target).long()


class Digits(Dataset):
    """The digits as a training set: (1, R, R) greyscale, or (3, R, R) stacked."""

    def __init__(self, name: str, resolution: int = 32) -> None:
        if name not in SETS:
            raise ValueError(f"unknown set {name!r}; one of {', '.join(SETS)}")
        self.name, self.resolution = name, resolution
        self.images, self.labels = real_digits(resolution)
        if name == "stacked":  # three independent digits per item, fixed once
            g = torch.Generator().manual_seed(STACKED_SEED)
            self.picks = torch.randint(len(self.images), (STACKED_SIZE, 3), generator=g)
        else:
            self.picks = torch.arange(len(self.images)).unsqueeze(1)

    @property
    def modes(self) -> int:
        return 10 ** self.picks.shape[1]

    @property
    def channels(self) -> int:
        return self.picks.shape[1]

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[self.picks[index]].squeeze(1)  # (C, R, R)


def _classifier() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(128 * 4 * 4, 10))


def _shift(x: torch.Tensor, g: torch.Generator, pixels: int = 3) -> torch.Tensor:
    """Each image moved by up to `pixels` in x and y, the border filled with black (-1)."""
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    out = torch.empty_like(x)
    r = x.shape[-1]
    offsets = torch.randint(0, 2 * pixels + 1, (len(x), 2), generator=g)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + r, dx : dx + r]
    return out


CLASSIFIER = Path(__file__).resolve().parent / "results" / "digit_classifier.pt"  # shipped: fixed scores


def train_classifier(path: Path = CLASSIFIER) -> tuple[nn.Module, float]:
    """The digit classifier and its held-out accuracy: loaded from `path`, else trained (on one
    thread: the same weights on every run of one machine) and saved there.

    The repository ships the classifier every committed score was made with (its sha256 prefix
    is in each results row): a classifier trained anew on another machine or thread count
    scores the same images slightly differently (held-out accuracy 0.9800 for the shipped one,
    0.9833 for the one trained on one thread here, which scored the rows before 2026-12-03)."""
    x, y = real_digits()
    held = torch.arange(len(x)) % HOLDOUT_EVERY == 0
    net = _classifier()
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _fit(net, x[~held], y[~held])
        finally:
            torch.set_num_threads(threads)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()  # several benchmark processes may train it at once: whole file or none
        torch.save(net.state_dict(), buf)
        write_bytes_atomic(path, buf.getvalue())
    net.eval()
    with torch.no_grad():
        accuracy = (net(x[held]).argmax(1) == y[held]).float().mean().item()
    return net, accuracy


def _fit(net: nn.Module, xt: torch.Tensor, yt: torch.Tensor) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(CLASSIFIER_EPOCHS):
        net.train()
        for idx in torch.randperm(len(xt), generator=g).split(64):
            batch = _shift(xt[idx], g) + 0.1 * torch.randn(len(idx), 1, 32, 32, generator=g)
            loss = F.cross_entropy(net(batch), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def classifier_id(path: Path = CLASSIFIER) -> str:
    """The first 12 hex digits of the classifier file's sha256 (which scorer made a row)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@dataclass
class ModeScore:
    modes: int  # distinct modes among the samples
    modes_total: int
    kl: float  # KL(sample mode histogram || uniform), nats
    confidence: float  # mean max-softmax of the classifier (avatars: the share of good samples)
    samples: int
    marginal_kl: float | None = None  # digits: sum over channels of KL(digit histogram || uniform)
    frechet: float | None = None  # avatars: random-feature Fréchet distance to real images


@torch.no_grad()
def score_images(images: torch.Tensor, classifier: nn.Module) -> ModeScore:
    """Mode statistics of (N, C, 32, 32) images in [-1, 1], C digits per image."""
    n, c = images.shape[:2]
    probs = torch.cat([F.softmax(classifier(chunk), 1)
                       for chunk in images.float().reshape(n * c, 1, *images.shape[2:]).split(2048)])
    conf, digit = probs.max(1)
    mode = (digit.reshape(n, c) * (10 ** torch.arange(c - 1, -1, -1))).sum(1)
    total = 10**c
    p = torch.bincount(mode, minlength=total).double() / n
    kl = _kl_uniform(p)
    marginal = sum(_kl_uniform(torch.bincount(d, minlength=10).double() / n) for d in digit.reshape(n, c).T)
    return ModeScore(int((p > 0).sum()), total, kl if math.isfinite(kl) else float("inf"),
                     float(conf.mean()), n, marginal)


def _kl_uniform(p: torch.Tensor) -> float:
    nz = p[p > 0]
    return float((nz * (nz * len(p)).log()).sum())
