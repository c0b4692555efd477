"""GPU checks and throughput for the 512-wide pytorch/examples netG (ngf=64), in one run.

    python benchmarks/gpu.py              # from the repository root, on a machine with a CUDA GPU
    python benchmarks/gpu.py --dry-run    # tiny sizes on the CPU in a few seconds (the suite runs it)

Needs torch (built for CUDA), onnx, numpy and pillow, nothing else: no fastapi, no onnxruntime,
no installed gan_serve (the repository root goes on sys.path; the parts of gan_serve and export
used here import none of the serving stack). It builds its model itself (random init, outputs
spread over the tanh range like a trained model's) and downloads nothing. Budget: well under
8 minutes on one H100/H200 (about a minute of measuring plus torch's start-up).

1. Bytes. The CPU fp32 images of 64 seeds through `Generator.load(...).generate` are the
   reference. Through the same API on the GPU: torch fp32 (<= 1/255), torch fp16 (<= 3/255 and
   PSNR >= 35 dB), and TorchScript fp32/fp16 files written by gan-export's own code (which verify
   themselves too). ARCHITECTURE.md's tolerances; any miss makes the exit status 1.
2. CUDA graphs. The fixed micro-batch (fp16 weights converted once, channels_last, the uint8
   conversion on the device) is captured once and replayed: the shapes never change. It must
   stay within the fp16 tolerance of the CPU bytes; the table says whether its bytes equal the
   same pass run eagerly.
3. Throughput at batch 64, 256 and 4096, from latents already on the device to uint8 images
   (N, H, W, C) on the device: torch eager fp32 as a user writes it (the baseline; cuDNN's
   defaults, which allow TF32), eager fp16 + channels_last (cuDNN autotuned), and that under a
   CUDA graph; median of 5 timed windows after a warm-up. Goals for fp16: >= 1,000,000 images/s
   and >= 5x eager fp32 on the same GPU. Seeds to latents (numpy's RandomState, ARCHITECTURE.md's
   recipe) stay on the CPU and are not timed here: at GPU rates they need their own pipeline.

The output is a Markdown table ready for BENCHMARKS.md (add the GPU's name, which it prints).

ONNX on the GPU (not in this script; a plan): onnxruntime-gpu is a ~255 MB wheel, larger than
one device call may carry (64 MiB). Download it here (`pip download onnxruntime-gpu --no-deps`
plus its small pure-Python dependencies), `split -b 60M` it into parts, carry the parts in
successive calls to the same warm machine (files left in ignored build folders stay there
between calls), `cat` them back together, check the wheel's sha256, `pip install --no-deps` it
into a fresh venv that has no `onnxruntime` (the two packages overwrite each other), then export
the fp16 ONNX file with gan-export and compare CUDAExecutionProvider bytes with the CPU fp32
bytes under the same tolerances as above.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference_nets import ExamplesNetG, randomize, spread_output  # noqa: E402
from export.prepared import prepare  # noqa: E402
from export.torchscript import export_torchscript  # noqa: E402
from gan_serve.generator import Generator  # noqa: E402

GOAL_RATE, GOAL_RATIO = 1_000_000, 5.0
Step = Callable[[], torch.Tensor]


@dataclass
class Config:
    device: str  # "cuda", or "cpu" for the dry run
    half: str  # the low precision: "fp16" on CUDA, "bf16" on the CPU (torch refuses fp16 there)
    ngf: int
    seeds: int
    batches: tuple[int, ...]
    seconds: float  # per throughput cell (5 windows)
    graphs: bool  # CUDA graphs (CUDA only)


FULL = Config("cuda", "fp16", 64, 64, (64, 256, 4096), 1.5, True)
DRY = Config("cpu", "bf16", 8, 8, (4, 16), 0.05, False)


def build(folder: Path, ngf: int) -> Path:
    """The pytorch/examples netG with `ngf`, random init, saved as a state dict like users do."""
    module = spread_output(randomize(ExamplesNetG(ngf=ngf), 2), 100)
    path = folder / f"netG_ngf{ngf}.pth"
    torch.save(module.state_dict(), path)
    return path


def compare(ref: np.ndarray, got: np.ndarray) -> tuple[int, float]:
    """(max abs difference in uint8 steps, PSNR in dB) of two uint8 image stacks."""
    diff = np.abs(ref.astype(np.int16) - got.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return int(diff.max()), float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def within(precision: str, worst: int, psnr: float) -> bool:
    return worst <= 1 if precision == "fp32" else worst <= 3 and psnr >= 35.0


def check_paths(cfg: Config, pth: Path, folder: Path) -> tuple[list[dict], np.ndarray]:
    """Bytes of every GPU path against the CPU fp32 reference, through the public API."""
    seeds = range(cfg.seeds)
    cpu = Generator.load(pth, backend="torch", precision="fp32")  # pinned: auto may pick bf16
    ref = cpu.generate(seeds)
    paths: list[tuple[str, str, Callable[[], Generator]]] = [
        ("torch", "fp32", lambda: Generator.load(pth, backend="torch", device=cfg.device, precision="fp32")),
        ("torch", cfg.half, lambda: Generator.load(pth, backend="torch", device=cfg.device,
                                                   precision=cfg.half)),
    ]
    for fp16 in (False, True):
        out = folder / f"netG{'.fp16' if fp16 else ''}.pt"
        export_torchscript(prepare(cpu, fp16, fp16), out, cfg.device)  # verifies itself too
        paths.append(("TorchScript (gan-export)", "fp16" if fp16 else "fp32",
                      lambda out=out: Generator.load(out, backend="torchscript", trust_code=True,
                                                     device=cfg.device)))
    rows = []
    for label, precision, load in paths:
        G = load()
        worst, psnr = compare(ref, G.generate(seeds))
        rows.append({"path": f"{label} {G.backend}", "precision": precision, "max_diff": worst,
                     "psnr": psnr, "ok": within(precision, worst, psnr)})
    return rows, ref


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    """ARCHITECTURE.md's pixels on the device: round((y + 1) * 127.5) clamped, NaN -> 0, as
    (N, H, W, C)."""
    x = torch.nan_to_num((y.float() + 1.0) * 127.5, nan=0.0).round_().clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # free when y is channels_last


def fast_module(pth: Path, cfg: Config) -> torch.nn.Module:
    """Weights converted to the low precision once, channels_last (no autocast per call)."""
    dtype = torch.float16 if cfg.half == "fp16" else torch.bfloat16
    module = Generator.load(pth).module.to(cfg.device, dtype).eval()
    return module.to(memory_format=torch.channels_last)


def eager_step(module: torch.nn.Module, z: torch.Tensor, dtype: torch.dtype) -> Step:
    @torch.no_grad()
    def step() -> torch.Tensor:
        return to_uint8(module(z.to(dtype)[:, :, None, None]))
    return step


def graph_step(module: torch.nn.Module, z: torch.Tensor, dtype: torch.dtype) -> Step:
    """The pass captured once in a CUDA graph; a step replays it (the output buffer is reused)."""
    eager = eager_step(module, z, dtype)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up (cuDNN autotuning, allocations) off the capture
            eager()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = eager()

    def step() -> torch.Tensor:
        graph.replay()
        return out
    return step


def check_graph(cfg: Config, pth: Path, ref: np.ndarray) -> dict:
    """The captured micro-batch gives the eager pass's bytes, within tolerance of the CPU's."""
    from gan_serve import latents as lat

    module = fast_module(pth, cfg)
    z = torch.from_numpy(lat.latents_for_seeds(range(cfg.seeds), 100)).to(cfg.device)
    dtype = next(module.parameters()).dtype
    eager = eager_step(module, z, dtype)().cpu().numpy()
    step = graph_step(module, z, dtype) if cfg.graphs else eager_step(module, z, dtype)
    got = step().cpu().numpy()
    worst, psnr = compare(ref, got)
    label = "CUDA graph" if cfg.graphs else "eager (dry run: no CUDA graphs)"
    same = np.array_equal(got, eager)
    return {"path": f"{label}, {cfg.half} weights, channels_last, uint8 on the device "
                    f"({'the same bytes as' if same else 'NOT the same bytes as'} the eager pass)",
            "precision": cfg.half, "max_diff": worst, "psnr": psnr, "ok": within(cfg.half, worst, psnr)}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def rate(step: Step, batch: int, device: str, seconds: float) -> float:
    """Images/s: median of 5 windows of `seconds / 5`, after a warm-up."""
    step()
    sync(device)
    t0, calls = time.perf_counter(), 0
    while (time.perf_counter() - t0) < seconds / 10 or calls < 2:
        step()
        calls += 1
        sync(device)
    per_window = max(1, int(calls * (seconds / 5) / (time.perf_counter() - t0)))
    windows = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per_window):
            step()
        sync(device)
        windows.append(per_window * batch / (time.perf_counter() - t0))
    return statistics.median(windows)


def throughput(cfg: Config, pth: Path) -> list[dict]:
    """Eager fp32 (as a user writes it) vs the low precision eager and under a CUDA graph."""
    base = Generator.load(pth).module.to(cfg.device).eval()
    fast = fast_module(pth, cfg)
    dtype = next(fast.parameters()).dtype
    rows = []
    for batch in cfg.batches:
        z = torch.randn(batch, 100, device=cfg.device, generator=torch.Generator(cfg.device).manual_seed(0))
        row = {"batch": batch, "eager fp32": rate(eager_step(base, z, torch.float32), batch, cfg.device,
                                                  cfg.seconds)}
        if cfg.device == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
        row[f"eager {cfg.half}"] = rate(eager_step(fast, z, dtype), batch, cfg.device, cfg.seconds)
        if cfg.graphs:
            row[f"{cfg.half} CUDA graph"] = rate(graph_step(fast, z, dtype), batch, cfg.device, cfg.seconds)
        torch.backends.cudnn.benchmark = False
        rows.append(row)
        del z
    return rows


def machine(cfg: Config) -> str:
    if cfg.device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"{platform.machine()} CPU, dry run (torch {torch.__version__})"


def report(cfg: Config, checks: list[dict], speed: list[dict], command: str) -> str:
    lines = [f"`{command}`, {datetime.datetime.now():%Y-%m-%d %H:%M}, {machine(cfg)}", "",
             "| path | precision | max abs diff vs CPU fp32 (/255) | PSNR dB | within tolerance |",
             "|---|---|---:|---:|---|"]
    lines += [f"| {c['path']} | {c['precision']} | {c['max_diff']} | {c['psnr']:.1f} | "
              f"{'yes' if c['ok'] else 'NO'} |" for c in checks]
    cols = [k for k in speed[0] if k != "batch"]
    lines += ["", "| batch | " + " | ".join(f"{c} img/s" for c in cols) + " | best / eager fp32 |",
              "|---:|" + "---:|" * (len(cols) + 1)]
    for row in speed:
        best = max(row[c] for c in cols[1:])
        lines.append(f"| {row['batch']} | " + " | ".join(f"{row[c]:,.0f}" for c in cols) +
                     f" | {best / row['eager fp32']:.2f}x |")
    top = speed[-1]
    best = max(top[c] for c in cols[1:])
    ratio = best / top["eager fp32"]
    lines.append(f"\nGoals at batch {top['batch']}: >= {GOAL_RATE:,} images/s ({best:,.0f}: "
                 f"{'met' if best >= GOAL_RATE else 'missed'}), >= {GOAL_RATIO:g}x eager fp32 "
                 f"({ratio:.2f}x: {'met' if ratio >= GOAL_RATIO else 'missed'}).")
    return "\n".join(lines)


def measure(cfg: Config) -> tuple[list[dict], list[dict]]:
    """(bytes checks, throughput rows) of one configuration."""
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        pth = build(folder, cfg.ngf)
        checks, ref = check_paths(cfg, pth, folder)
        checks.append(check_graph(cfg, pth, ref))
        return checks, throughput(cfg, pth)


def run(cfg: Config, command: str = "python benchmarks/gpu.py") -> tuple[str, bool]:
    """(the Markdown report, whether every bytes check passed)."""
    checks, speed = measure(cfg)
    return report(cfg, checks, speed, command), all(c["ok"] for c in checks)


def dry_run() -> tuple[str, bool]:
    """The whole script at tiny sizes on the CPU (bf16 for fp16, no CUDA graphs): seconds."""
    return run(DRY, "python benchmarks/gpu.py --dry-run")


def bench(quick: bool = False) -> list:
    """Target 6 for `python -m benchmarks`: the full run where torch sees a GPU, else the CPU
    dry run (bytes checks of every path; its speeds say nothing about a GPU)."""
    from benchmarks.common import Row

    cfg = FULL if torch.cuda.is_available() else DRY
    checks, speed = measure(cfg)
    passed = sum(c["ok"] for c in checks)
    where = "" if cfg.device == "cuda" else " (CPU dry run: no GPU here)"
    rows = [Row(f"6 GPU bytes vs CPU fp32{where}", f"{passed} of {len(checks)} paths within tolerance",
                "", "", "all within ARCHITECTURE.md's tolerances", machine(cfg))]
    if cfg.device == "cuda":
        top = speed[-1]
        best = max(v for k, v in top.items() if k not in ("batch", "eager fp32"))
        rows.append(Row(f"6 GPU batch {top['batch']}, examples netG, fp16", f"{best:,.0f} img/s",
                        f"eager fp32 {top['eager fp32']:,.0f} img/s", f"{best / top['eager fp32']:.2f}x",
                        f">= {GOAL_RATE:,} img/s and >= {GOAL_RATIO:g}x", machine(cfg)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, a few seconds")
    ap.add_argument("--seconds", type=float, default=FULL.seconds, help="timed seconds per cell")
    args = ap.parse_args()
    if args.dry_run:
        text, ok = dry_run()
    else:
        if not torch.cuda.is_available():
            sys.exit("benchmarks/gpu.py: torch sees no CUDA GPU here; run it on a GPU machine, or "
                     "pass --dry-run for the CPU rehearsal")
        cfg = Config(**{**FULL.__dict__, "seconds": args.seconds})
        text, ok = run(cfg, "python benchmarks/gpu.py" + (f" --seconds {args.seconds:g}"
                                                          if args.seconds != FULL.seconds else ""))
    print(text)
    if not ok:
        sys.exit("a bytes check is outside its tolerance (see the first table)")


if __name__ == "__main__":
    main()
