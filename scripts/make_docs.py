"""Rebuild the README's pictures under docs/ from the bundled model and a gan-train run.

    python scripts/make_docs.py [--run runs/avatars [--run runs/avatars-2] | --checkpoint G ...]
        [--screenshot]

Writes docs/avatars-data.png (64 renders of builtin:avatars, 64 different modes),
docs/avatars-grid.png (`gan-serve generate --seed 42 --n 64`), docs/avatars-interpolation.png
(`gan-serve interpolate --from 3 --to 17 --steps 8`), docs/video-poster.png (the first frame of
`gan-serve interpolate --seeds 3,17,42 --loop --steps 16 -o walk.mp4` as a player shows it, 128x128;
needs the video extra), docs/directions-sheet.png (`gan-serve directions --sheet-seeds 0,1`'s
contact sheet in 256 colours), and from the run:
docs/training-progress.png (the first 8 fixed-noise samples at a few steps, one row each)
and docs/training-curves.png (-2.png, ... for the runs that continue it), or with --checkpoint
the progress rows from generator files alone. --screenshot also
photographs the web page of `gan-serve serve --directions` in headless Chromium (needs the serve
extra, playwright and /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.avatars import preview

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TILE = 66  # a 64x64 sample plus make_grid's 2 px padding


GAN_SERVE = str(Path(sys.executable).with_name("gan-serve"))  # the console script beside this Python


def cli(*args: str) -> None:
    subprocess.run([GAN_SERVE, *args], check=True, cwd=ROOT)


def progress(runs: list[Path], out: Path) -> None:
    """One row per sample grid (8 at most, evenly spread over the runs, which continue one
    another: a run started with --init-from counts its steps on from the last one's)."""
    grids, offset = [], 0
    for run in runs:
        found = sorted((run / "samples").glob("step_*.png"))
        grids += [(offset + int(p.stem.split("_")[1]), p) for p in found]
        offset = grids[-1][0] if grids else offset
    picks = [grids[round(i)] for i in np.linspace(0, len(grids) - 1, min(8, len(grids)))]
    draw_rows([(step, Image.open(path).convert("RGB")) for step, path in picks], out)


def progress_of(checkpoints: list[Path], out: Path) -> None:
    """The same rows rendered from generator files, in the order given: a checkpoint's samples
    grid is `gan-serve generate --seed 0 --n 64` on it (training/loop.py), so a packed state's
    generator.safetensors gives its step's row bit for bit (the run folder need not be kept)."""
    import gan_serve
    from gan_serve.images import make_grid

    rows = []
    for path in checkpoints:
        G = gan_serve.load(path, backend="torch", precision="fp32")  # as gan-train renders them
        if "step" not in G.spec.training:
            raise SystemExit(f"{path}: no training step in its metadata (not a gan-train checkpoint)")
        grid = make_grid(G.generate(range(8)), nrow=8)
        rows.append((int(G.spec.training["step"]), Image.fromarray(grid)))
    draw_rows(rows, out)


def draw_rows(rows: list[tuple[int, Image.Image]], out: Path, per_row: int = 8) -> None:
    """The first `per_row` samples of each grid, a row each, labelled with the step."""
    label_w = 70
    canvas = Image.new("RGB", (label_w + per_row * TILE, len(rows) * TILE), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (step, grid) in enumerate(rows):
        canvas.paste(grid.crop((0, 0, 2 + per_row * TILE, TILE + 2)), (label_w, row * TILE))
        draw.text((6, row * TILE + 26), f"{step:,}", fill="black")
    canvas.save(out, optimize=True)


def directions_sheet(out: Path) -> None:
    """`gan-serve directions --sheet-seeds 0,1`'s contact sheet (pc0..pc9, strengths -3..+3),
    re-encoded with 256 colours (docs/directions.md says so under the picture)."""
    with tempfile.TemporaryDirectory() as tmp:
        cli("directions", "--sheet-seeds", "0,1", "--sheet", f"{tmp}/sheet.png",
            "-o", f"{tmp}/dirs.safetensors")
        Image.open(f"{tmp}/sheet.png").convert("RGB").quantize(256).save(out, optimize=True)


def poster(out: Path) -> None:
    """The first frame of README's walk.mp4 decoded as a player shows it: at the encoded size
    (--scale 2: 128x128), not read_video's source size, so the picture is the video's own."""
    import av

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "walk.mp4"
        cli("interpolate", "--seeds", "3,17,42", "--loop", "--steps", "16", "-o", str(video))
        with av.open(str(video)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    Image.fromarray(frame).save(out, optimize=True)


def screenshot(out: Path) -> None:
    """The page of `gan-serve serve --directions` with a projected avatar, a slider moved and an
    interpolation playing."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp())
    cli("directions", "--samples", "1024", "--sheet", "-", "-o", str(tmp / "dirs.safetensors"))
    cli("generate", "--seeds", "1000", "-o", str(tmp / "avatar.png"))  # a seed off the grid
    Image.open(tmp / "avatar.png").crop((2, 2, 66, 66)).save(tmp / "avatar.png")  # no grid padding
    server = subprocess.Popen([GAN_SERVE, "serve", "--port", str(port), "--directions",
                               str(tmp / "dirs.safetensors")], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url + "/")
            page.wait_for_selector("figure[data-seed='57'] img")
            page.set_input_files("#file", str(tmp / "avatar.png"))
            page.wait_for_selector("figure[data-name='p1']", timeout=300_000)
            page.locator("#sliders input").nth(0).evaluate(
                "i => { i.value = 2; i.dispatchEvent(new Event('input')); }")
            page.wait_for_function("document.getElementById('edited').dataset.edit === 'pc0=+2.0'")
            page.click("figure[data-seed='43']")
            page.click("figure[data-seed='50']")
            page.wait_for_function("document.getElementById('interpolation').naturalWidth > 0")
            time.sleep(0.5)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, action="append", help="a gan-train run; repeat it for a run "
                    "continued with --init-from (default: runs/avatars)")
    ap.add_argument("--checkpoint", type=Path, action="append", help="a generator file (repeat it, "
                    "in step order): training-progress.png's rows rendered from these instead of "
                    "a run's samples (a packed state's generator.safetensors)")
    ap.add_argument("--screenshot", action="store_true")
    args = ap.parse_args()
    DOCS.mkdir(exist_ok=True)
    preview(DOCS / "avatars-data.png", nrow=16)
    cli("generate", "--seed", "42", "--n", "64", "-o", str(DOCS / "avatars-grid.png"))
    cli("interpolate", "--from", "3", "--to", "17", "--steps", "8",
        "-o", str(DOCS / "avatars-interpolation.png"))
    poster(DOCS / "video-poster.png")
    directions_sheet(DOCS / "directions-sheet.png")
    runs = [r for r in args.run or [ROOT / "runs" / "avatars"] if r.exists()]
    if args.checkpoint:
        progress_of(args.checkpoint, DOCS / "training-progress.png")
    elif runs:
        progress(runs, DOCS / "training-progress.png")
        for i, run in enumerate(runs):  # training-curves.png, training-curves-2.png, ...
            shutil.copyfile(run / "curves.png", DOCS / f"training-curves{f'-{i + 1}' if i else ''}.png")
    if args.screenshot:
        screenshot(DOCS / "web-page.png")
    print("wrote", ", ".join(sorted(p.name for p in DOCS.iterdir())))


if __name__ == "__main__":
    main()
