"""Directions fitted to labels (InterFaceGAN, Shen et al. 2020): per attribute, the unit normal
of a logistic-regression boundary in z between seeds labelled 1 and 0, numpy only, optionally
conditioned on the other attribute groups. Labels come as a CSV `seed,ATTRIBUTE,...` of 0/1.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import latents as lat
from .directions import MAX_DIRECTIONS, Directions, check_names
from .errors import InputError

# labels CSV (`directions --labels`): bounded before it is parsed
MAX_LABEL_BYTES = 64 * 2**20
MAX_LABEL_ROWS = 1_000_000
MIN_PER_CLASS = 5  # examples of each class an attribute needs to fit a boundary
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


def read_labels(path: Path) -> tuple[list[int], dict[str, np.ndarray]]:
    """Seeds and binary attributes from a CSV `seed,attr,...` (values 0/1, true/false, yes/no)."""
    if not path.is_file():
        raise InputError(f"no such labels file: {str(path)!r}")
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise InputError(f"{str(path)!r} is over {MAX_LABEL_BYTES:,} bytes")
    try:
        rows = list(csv.reader(io.StringIO(path.read_text("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read labels from {str(path)!r}: {str(exc)[:120]}") from None
    return parse_labels(rows, str(path))


def parse_labels(rows: list[list[str]], where: str = "labels") -> tuple[list[int], dict[str, np.ndarray]]:
    """The rows of a labels CSV (header first) as seeds and one bool array per attribute."""
    if len(rows) < 2 or not rows[0] or rows[0][0].strip() != "seed" or len(rows[0]) < 2:
        raise InputError(f"{where}: the first row must be the header seed,ATTRIBUTE,... and rows "
                         "must follow")
    if len(rows) - 1 > MAX_LABEL_ROWS or len(rows[0]) - 1 > MAX_DIRECTIONS:
        raise InputError(f"{where}: at most {MAX_LABEL_ROWS:,} rows and {MAX_DIRECTIONS} attributes")
    names = check_names([h.strip() for h in rows[0][1:]], len(rows[0]) - 1)
    seeds, values = [], np.zeros((len(rows) - 1, len(names)), bool)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(names) + 1:
            raise InputError(f"{where} row {i + 2}: {len(row)} values, the header has {len(names) + 1}")
        try:
            seed = int(row[0])
        except ValueError:
            raise InputError(f"{where} row {i + 2}: seed {row[0][:20]!r} is not an integer") from None
        seeds.append(lat.check_seed(seed))
        for j, cell in enumerate(row[1:]):
            word = cell.strip().lower()
            if word not in TRUE + FALSE:
                raise InputError(f"{where} row {i + 2}: {names[j]} is {cell[:20]!r}; labels are 0/1, "
                                 "true/false or yes/no")
            values[i, j] = word in TRUE
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{where}: a seed appears twice")
    return seeds, {name: values[:, j] for j, name in enumerate(names)}


def fit_boundary(z: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 50
                 ) -> tuple[np.ndarray, float]:
    """The unit normal of a logistic-regression boundary z . w + b = 0 separating y (Newton's
    method, L2 `l2` on w), pointing towards y = True, and its training accuracy."""
    z = np.asarray(z, np.float64)
    x = np.hstack([z, np.ones((len(z), 1))])
    t = np.asarray(y, np.float64)
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2 * len(x))
    penalty[-1] = 0.0  # the bias is free
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - t) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    accuracy = float(((x @ w > 0) == y).mean())
    normal = w[:-1]
    return normal / max(np.linalg.norm(normal), 1e-12), accuracy


def fit_directions(seeds: Sequence[int], labels: Mapping[str, np.ndarray], z_dim: int,
                   model_sha256: str = "0" * 64, condition: bool = True) -> Directions:
    """One direction per attribute: the boundary normal in z of seeds' recipe-v1 latents; with
    `condition`, made orthogonal to the other groups' normals (see `conditioned`)."""
    z = lat.latents_for_seeds(seeds, z_dim)
    vectors, scores = [], []
    for name, y in labels.items():
        y = np.asarray(y, bool)
        if min(y.sum(), (~y).sum()) < MIN_PER_CLASS:
            raise InputError(f"attribute {name!r} needs at least {MIN_PER_CLASS} seeds labelled 1 "
                             f"and {MIN_PER_CLASS} labelled 0, got {int(y.sum())} and {int((~y).sum())}")
        normal, accuracy = fit_boundary(z, y)
        vectors.append(normal)
        scores.append(accuracy)
    names = tuple(labels)
    found = np.asarray(vectors, np.float64)
    if condition:
        found = conditioned(found, names)
    return Directions(found.astype(np.float32), names, "interfacegan", tuple(scores), model_sha256,
                      {"samples": len(seeds), "conditioned": int(condition)})


def conditioned(vectors: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """InterFaceGAN's conditional manipulation: each direction less its projection on the span of
    the directions of other groups, unit length. A group is the part of a name before its first
    `_` (hair_blue and hair_red are one group, bg_sky another), so moving along hair_blue leaves
    the background and eye boundaries where they are: on the bundled model this keeps the other
    decoded attributes in 81% of seeds instead of 52% (BENCHMARKS.md)."""
    groups = [n.split("_")[0] for n in names]
    out = np.empty_like(vectors, dtype=np.float64)
    for i, group in enumerate(groups):
        d = vectors[i].astype(np.float64)
        others = vectors[[j for j, g in enumerate(groups) if g != group]].astype(np.float64)
        if len(others):
            q, _ = np.linalg.qr(others.T)  # an orthonormal basis of their span
            d = d - q @ (q.T @ d)
        norm = np.linalg.norm(d)
        if norm < 1e-3:
            raise InputError(f"attribute {names[i]!r} lies in the span of the other groups' "
                             "directions; fit without conditioning (--no-condition)")
        out[i] = d / norm
    return out
