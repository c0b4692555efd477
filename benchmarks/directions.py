"""Editing directions on the bundled model, judged by the builtin:avatars decoder (issue 27 item 2).

    python -m benchmarks.directions [--train 4000] [--held 200] [--strengths 2] [--ganspace]

With labels: seeds TRAIN_FROM.. are generated and decoded (background, hair, style, eyes);
one-hot columns of the decoded attributes go to a labels CSV, and `gan-serve directions
--labels`'s own functions (read_labels, fit_directions) fit one direction per value. Then, for
`--held` seeds the fit never saw (HELD_FROM..), each direction is applied at each strength:
a row per direction says in how many of the seeds that did not show its value already the
decoded factor changed (goal >= 80%), changed to the value, and every other factor stayed
the same (goal >= 80%). Without labels: the variance the top 10 GANSpace directions explain.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_serve import Generator  # noqa: E402
from gan_serve import latents as lat  # noqa: E402
from gan_serve.interfacegan import fit_directions, read_labels  # noqa: E402
from training.avatars.decoder import decode_arrays  # noqa: E402
from training.avatars.renderer import BACKGROUNDS, EYES, HAIR, STYLES, Attributes  # noqa: E402

TRAIN_FROM, HELD_FROM = 1_000_000, 2_000_000  # far from the seeds 0.. that GANSpace samples
FACTORS = {"bg": list(BACKGROUNDS), "hair": list(HAIR), "style": list(STYLES), "eyes": list(EYES)}
FIELDS = {"bg": "background", "hair": "hair", "style": "style", "eyes": "eyes"}


def factors(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) int: each image's decoded value index per factor (FACTORS order), and (N,) quality."""
    d = decode_arrays(images)
    out = np.zeros((len(images), len(FACTORS)), np.int64)
    for i, mode in enumerate(d.modes):
        a = Attributes.from_mode(int(mode))
        out[i] = [FACTORS[f].index(getattr(a, FIELDS[f])) for f in FACTORS]
    return out, d.high_quality


def write_labels(path: Path, seeds: list[int], decoded: np.ndarray) -> None:
    """One-hot columns `hair_blue`, ... of the decoded factors, as `directions --labels` reads."""
    names = [f"{f}_{v}" for f in FACTORS for v in FACTORS[f]]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["seed", *names])
        for s, row in zip(seeds, decoded, strict=True):
            w.writerow([s, *(int(row[j] == FACTORS[f].index(v))
                             for j, f in enumerate(FACTORS) for v in FACTORS[f])])


def judge(G: Generator, z: np.ndarray, before: np.ndarray, vector: np.ndarray, factor: int,
          value: int, strength: float) -> tuple[float, float, float, int, str]:
    """Changed %, changed-to-value %, others-same % over the seeds not showing `value` yet, and
    which other factors changed how often (where the misses go)."""
    rows = before[:, factor] != value
    after, _ = factors(G.synthesize(z[rows] + strength * vector))
    others = [j for j in range(len(FACTORS)) if j != factor]
    changed = after[:, factor] != before[rows, factor]
    to_value = after[:, factor] == value
    same = (after[:, others] == before[rows][:, others]).all(1)
    moved = ", ".join(f"{list(FACTORS)[j]} {(after[:, j] != before[rows, j]).mean():.0%}" for j in others)
    return changed.mean(), to_value.mean(), same.mean(), int(rows.sum()), moved


def ganspace() -> None:
    """The variance the top 10 directions of `gan-serve directions` (its defaults) explain."""
    from gan_serve.ganspace import find_directions

    G = Generator.load("default", backend="torch", precision="fp32")  # what the command picks
    t0 = time.perf_counter()
    dirs = find_directions(G)
    top = dirs.scores[:10]
    print(f"{G.model_id}: GANSpace on {dirs.info['layer']}, {dirs.info['samples']} samples, "
          f"{time.perf_counter() - t0:.0f} s; top 10 explain {sum(top):.1%}: "
          + ", ".join(f"{n} {v:.1%}" for n, v in zip(dirs.names, top, strict=False)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--held", type=int, default=200)
    ap.add_argument("--strengths", default="2")
    ap.add_argument("--only", default="", help="direction names, comma-separated (default all)")
    ap.add_argument("--ganspace", action="store_true", help="only the directions without labels")
    args = ap.parse_args()
    if args.ganspace:
        return ganspace()
    strengths = [float(s) for s in args.strengths.split(",")]
    G = Generator.load("default")
    t0 = time.perf_counter()
    train_seeds = list(range(TRAIN_FROM, TRAIN_FROM + args.train))
    images = np.concatenate([G.generate(train_seeds[i : i + 4096])  # the request limit
                             for i in range(0, len(train_seeds), 4096)])
    decoded, quality = factors(images)
    keep = [s for s, q in zip(train_seeds, quality, strict=True) if q]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        write_labels(path, keep, decoded[quality])
        labelled = read_labels(path)
        dirs = fit_directions(*labelled, G.z_dim, G.loaded.sha256)  # conditioned, the default
        plain = fit_directions(*labelled, G.z_dim, G.loaded.sha256, condition=False)
    print(f"{G.model_id} {G.backend}: {args.train} labelled seeds, {len(keep)} high quality, "
          f"fit in {time.perf_counter() - t0:.0f} s", flush=True)
    held = list(range(HELD_FROM, HELD_FROM + args.held))
    z = lat.latents_for_seeds(held, G.z_dim)
    before, _ = factors(G.synthesize(z))
    names = args.only.split(",") if args.only else list(dirs.names)
    print("| direction | fit accuracy | kind | strength | seeds | factor changed | to the value | "
          "others unchanged | other factors changed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        factor_name, value_name = name.split("_", 1)
        factor = list(FACTORS).index(factor_name)
        value = FACTORS[factor_name].index(value_name)
        acc = dirs.scores[dirs.names.index(name)]
        for kind, vector in (("conditioned", dirs.vector(name)), ("plain", plain.vector(name))):
            for s in strengths:
                c, v, o, n, moved = judge(G, z, before, vector, factor, value, s)
                print(f"| {name} | {acc:.1%} | {kind} | +{s:g} | {n} | {c:.0%} | {v:.0%} | {o:.0%} "
                      f"| {moved} |", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
