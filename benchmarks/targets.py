"""Targets 1-3 of issue 17: raw generation, bulk file output, cold start (see __main__.py).

Every figure is measured against the code a user would write without gan-serve, side by side
and interleaved in one run: torch eager fp32 in batches of 64 (raw), the same loop plus one
PIL `save` per image (bulk), and the pinned torch path (cold start).
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import numpy as np

from benchmarks.common import Row, interleaved, ratio

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"examples netG (ngf=64)": "netG", "seed-000 G (1024-wide)": "seed000",
          "bundled model (64x64)": "bundled"}


@cache
def checkpoints() -> dict[str, Path]:
    """Random-init checkpoints of the two generators users have most (nothing downloaded), and
    the bundled model (its default path is ONNX Runtime fp32: the fp32 GEMM rate is its limit)."""
    import torch

    from benchmarks.reference_nets import ExamplesNetG, SeedGenerator, randomize, spread_output

    d = Path(tempfile.mkdtemp(prefix="gan-serve-bench-"))
    modules = {"netG": spread_output(randomize(ExamplesNetG(ngf=64), 2), 100),
               "seed000": spread_output(randomize(SeedGenerator(), 1), 100)}
    out = {}
    for key, module in modules.items():
        out[key] = d / f"{key}.pth"
        torch.save(module.state_dict(), out[key])
    out["bundled"] = ROOT / "gan_serve" / "models" / "default.safetensors"
    return out


def naive_eager(module: object, z: np.ndarray, batch: int = 64) -> np.ndarray:
    """What a user writes: fp32 eager in batches of 64, then uint8 HWC."""
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(z), batch):
            y = module(torch.from_numpy(z[i:i + batch])[:, :, None, None])
            outs.append(((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(outs)


RAW_FIGURES: dict[str, float] = {}  # model key -> default images/s, for the bulk target's share
FLOPS: dict[str, float] = {}  # model key -> FLOPs per image, counted by the raw target


def raw(quick: bool = False) -> list[Row]:
    """1. `Generator.generate(range(N))` with default settings vs torch eager fp32 at batch 64,
    interleaved with the 2048^3 GEMMs that give each row its fraction of the limit."""
    import gan_serve
    from benchmarks import limits

    n, repeats = (128, 3) if quick else (256, 5)
    rows = []
    for label, key in MODELS.items():
        path = checkpoints()[key]
        G = gan_serve.load(path)  # --backend auto
        module = gan_serve.load(path, backend="torch").module
        z = G.latents(range(n))
        before, cpu = _without_plan(G), {}
        t = interleaved({"default": lambda G=G: G.generate(range(n)),
                         "naive": lambda m=module, z=z: naive_eager(m, z),
                         **({"before": lambda B=before: B.generate(range(n))} if before else {}),
                         **limits.reference_gemms()}, repeats, cpu=cpu)
        rates, flops = limits.record(t), limits.flops_per_image(module, G.z_dim)
        FLOPS[key] = flops
        RAW_FIGURES[key] = n / t["default"]
        p = G.runner.precision
        share = (f"default {limits.fraction(n / t['default'], flops, p, rates)}, "
                 f"{limits.cpu_fraction(n, flops, p, 'default', cpu)}; "
                 f"naive {limits.fraction(n / t['naive'], flops, 'fp32', rates)}, "
                 f"{limits.cpu_fraction(n, flops, 'fp32', 'naive', cpu)}")
        rows.append(Row(f"1 raw, {label}", f"{n / t['default']:.0f} img/s",
                        f"{n / t['naive']:.0f} img/s", ratio(t["naive"], t["default"]), ">= 4x",
                        f"default = {G.backend}, micro-batch {G.runner.micro_batch}; N={n}, "
                        f"median of {repeats}; {flops / 1e9:.3f} GFLOP per image", share))
        if before:
            rows.append(Row(f"1 raw, {label}, without the DCGAN plan (before issue 29)",
                            f"{n / t['before']:.0f} img/s", f"{n / t['naive']:.0f} img/s",
                            ratio(t["naive"], t["before"]), "(reference)",
                            f"the bf16 module called as it is; the default (plan) runs "
                            f"{ratio(t['before'], t['default'])} its speed, same bytes",
                            f"{limits.fraction(n / t['before'], flops, 'bf16', rates)}, "
                            f"{limits.cpu_fraction(n, flops, 'bf16', 'before', cpu)}"))
    return rows


def _without_plan(G: object) -> object | None:
    """G with its torch DCGAN plan switched off (the module called as it is), or None."""
    import copy

    from gan_serve.generator import Generator

    if getattr(G.runner, "plan", None) is None:
        return None
    runner = copy.copy(G.runner)
    runner.plan = None
    return Generator(G.loaded, runner)


NAIVE_BULK = """
import sys, torch
from PIL import Image
sys.path.insert(0, {root!r})
from benchmarks.reference_nets import ExamplesNetG
G = ExamplesNetG(ngf=64)
G.load_state_dict(torch.load({ckpt!r}, weights_only=True))
G.eval()
k = 0
with torch.no_grad():
    for start in range(0, {n}, 64):
        z = torch.randn(min(64, {n} - start), 100, 1, 1)
        y = ((G(z) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for im in y:
            Image.fromarray(im).save({out!r} + f"/{{k}}.png")
            k += 1
"""


def _gan_serve() -> list[str]:
    script = Path(sys.executable).with_name("gan-serve")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gan_serve"]


def _children_cpu() -> float:
    """User + sys CPU-seconds of the finished child processes so far (0 where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall seconds of `cmd`; its CPU-seconds (user + sys) are appended to `cpu`: on a shared
    machine the CPU a process used is the figure its neighbours change least."""
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if cpu is not None:
        cpu.append(_children_cpu() - c0)
    return time.perf_counter() - t0


def _user_env() -> dict[str, str]:
    from benchmarks.__main__ import USER_ENV

    return dict(USER_ENV)


def bulk(quick: bool = False) -> list[Row]:
    """2. `gan-serve generate --individual DIR` end to end vs the naive save loop, both fresh
    processes (imports and model load included), on the examples netG."""
    n, repeats = (512, 2) if quick else (2048, 3)
    ckpt, env = checkpoints()["netG"], _user_env()
    with tempfile.TemporaryDirectory() as tmp:
        def fresh(name: str) -> str:
            d = Path(tmp) / name
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            return str(d)

        def naive() -> list[str]:
            return [sys.executable, "-c", NAIVE_BULK.format(root=str(ROOT), ckpt=str(ckpt), n=n,
                                                            out=fresh("a"))]

        ours = _gan_serve() + ["generate", "--model", str(ckpt), "--seed", "0", "--n", str(n),
                               "--individual"]
        cpu: dict[str, list[float]] = {"naive": [], "ours": []}
        t = interleaved({
            "naive": lambda: _timed(naive(), env, cpu["naive"]),
            "ours": lambda: _timed([*ours, str(Path(fresh("b")) / "out")], env, cpu["ours"]),
        }, repeats, warmup=False)
    ms = {k: statistics.median(v) / n * 1e3 for k, v in cpu.items()}
    rows = [Row("2 bulk --individual, examples netG", f"{n / t['ours']:.0f} img/s",
                f"{n / t['naive']:.0f} img/s", ratio(t["naive"], t["ours"]), ">= 2.5x",
                f"{n} PNG files, fresh processes, median of {repeats}; CPU (user + sys, whole "
                f"process) {ms['ours']:.2f} vs {ms['naive']:.2f} ms per image",
                bulk_share(n / t["ours"], n / t["naive"]))]
    if "netG" in RAW_FIGURES:
        share = n / t["ours"] / RAW_FIGURES["netG"]
        rows.append(Row("2 bulk share of raw, examples netG", f"{n / t['ours']:.0f} img/s",
                        f"{RAW_FIGURES['netG']:.0f} img/s raw", f"{share:.0%}", ">= 60%",
                        "bulk end to end / target 1's Generator.generate"))
    return rows + png_levels(quick)


def bulk_share(ours: float, naive: float) -> str:
    """The bulk rows' fraction of the GEMM rate the raw target measured in this run (the fresh
    processes here cannot interleave a GEMM), start-up and PNG encoding included."""
    from benchmarks import limits

    if "netG" not in FLOPS or not limits.LAST:
        return ""
    from gan_serve.backends.torch_backend import auto_precision

    f = FLOPS["netG"]
    return (f"ours {limits.fraction(ours, f, auto_precision('cpu')[0], limits.LAST)}, naive "
            f"{limits.fraction(naive, f, 'fp32', limits.LAST)} (GEMM rates from the raw target)")


def png_levels(quick: bool = False) -> list[Row]:
    """PNG zlib level: encode time and size per image (how gan-serve's level 6 was chosen)."""
    import gan_serve
    from gan_serve import images as img

    G = gan_serve.load(checkpoints()["netG"])
    ims = G.generate(range(64 if quick else 256))
    meta = G.provenance([0], 1.0)

    def encode(level: int) -> int:
        from PIL import PngImagePlugin

        total = 0
        for a in ims:
            info = PngImagePlugin.PngInfo()
            for k, v in meta.items():
                info.add_text(k, v)
            buf = io.BytesIO()
            img.to_pil(a).save(buf, "PNG", pnginfo=info, compress_level=level)
            total += buf.tell()
        return total

    levels = (1, 6, 9)
    sizes = {lv: encode(lv) / len(ims) for lv in levels}
    t = interleaved({lv: (lambda lv=lv: encode(lv)) for lv in levels}, 3)
    return [Row(f"2 PNG zlib level {lv}", f"{t[lv] / len(ims) * 1e3:.2f} ms/img",
                f"{t[6] / len(ims) * 1e3:.2f} ms/img at 6", ratio(t[6], t[lv]), "(choice)",
                f"{sizes[lv]:.0f} bytes/img vs {sizes[6]:.0f} at 6") for lv in levels]


def cold_start(quick: bool = False) -> list[Row]:
    """3. `gan-serve generate --seed 42 --n 64` on the bundled model from a fresh process."""
    repeats, env = (3 if quick else 5), _user_env()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = _gan_serve() + ["generate", "--seed", "42", "--n", "64", "-o", os.path.join(tmp, "g.png")]
        t = interleaved({"default": lambda: _timed(cmd, env),
                         "torch": lambda: _timed([*cmd, "--backend", "torch"], env)}, repeats)
    return [Row("3 cold start, bundled model", f"{t['default']:.2f} s", f"{t['torch']:.2f} s",
                ratio(t["torch"], t["default"]), "<= 0.8 s",
                f"`gan-serve generate --seed 42 --n 64`, baseline with --backend torch; "
                f"median of {repeats}")]
