"""Videos (issue 27, item 3): each decoded frame against its PNG frame, and the time of a video
against writing the same frames as PNG files.

    python -m benchmarks.video [--frames 1024] [--repeats 3] [-m MODEL]

The frames are one interpolation of the model (default: the bundled one, 64x64), made once and
not timed. Timed, in turn (a shared machine's load hits all alike): writing them as one PNG file
each (what `generate --individual` writes: encode_image with the provenance, then the file), and
each video, .mp4 and .webm, at the default options (quality 10, scale 2) and at scale 1 (the
frames as they are), encoded and written. PSNR: every frame decoded back with PyAV
(gan_serve.video.read_video: cropped and reduced to the source size) against the PNG frame.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gan_serve  # noqa: E402
from benchmarks.common import interleaved, machine, ratio  # noqa: E402
from gan_serve import images as img  # noqa: E402
from gan_serve.request import PathRequest  # noqa: E402
from gan_serve.video import VideoOptions, encode_video, read_video  # noqa: E402

VARIANTS = {"mp4 (defaults: quality 10, scale 2)": ("mp4", VideoOptions()),
            "webm (defaults: quality 10, scale 2)": ("webm", VideoOptions()),
            "mp4 --scale 1": ("mp4", VideoOptions(scale=1)),
            "webm --scale 1": ("webm", VideoOptions(scale=1))}


def psnr_per_frame(decoded: np.ndarray, frames: np.ndarray) -> np.ndarray:
    err = (decoded.astype(np.float64) - frames.astype(np.float64)) ** 2
    mse = err.reshape(len(frames), -1).mean(axis=1)
    return 10 * np.log10(255**2 / np.maximum(mse, 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-m", "--model", default=None, help="default: the bundled generator")
    a = ap.parse_args()
    G = gan_serve.load(a.model)
    keys = a.frames // 16 + 1  # 16 frames a segment, cut to --frames
    req = PathRequest(keys=tuple(range(keys)), steps=17)
    frames = G.synthesize(req.latents(G.z_dim))[:a.frames]
    meta = req.provenance(G)
    folder = Path(tempfile.mkdtemp(prefix="bench-video-"))

    def pngs() -> None:
        for i, frame in enumerate(frames):
            (folder / f"frame{i:04d}.png").write_bytes(img.encode_image(frame, "png", meta))

    def video(name: str) -> None:
        fmt, options = VARIANTS[name]
        (folder / f"video.{fmt}").write_bytes(encode_video(frames, fmt, options, meta))

    fns = {"PNG files": pngs} | {name: (lambda n=name: video(n)) for name in VARIANTS}
    cpu: dict[str, float] = {}
    times = interleaved(fns, a.repeats, warmup=False, cpu=cpu)
    print(f"machine: {machine()}; {len(frames)} frames {frames.shape[2]}x{frames.shape[1]}, "
          f"model {G.model_id}, {G.backend}; median of {a.repeats}")
    print("| output | median wall | vs PNG files | CPU | size | PSNR min / median (dB) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, t in times.items():
        if name == "PNG files":
            size, quality = sum(p.stat().st_size for p in folder.glob("*.png")), "lossless"
        else:
            fmt, options = VARIANTS[name]
            data = encode_video(frames, fmt, options, meta)
            decoded, _ = read_video(data)
            assert decoded.shape == frames.shape, decoded.shape
            p = psnr_per_frame(decoded, frames)
            size, quality = len(data), f"{p.min():.1f} / {statistics.median(p):.1f}"
        print(f"| {name} | {t:.2f} s | {ratio(t, times['PNG files'])} | {cpu[name]:.2f} s | "
              f"{size / 1e6:.2f} MB | {quality} |")


if __name__ == "__main__":
    main()
