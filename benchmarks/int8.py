"""`--precision int8` (opt-in, gan_serve/backends/int8_plan.py) against bf16 and fp32: speed
side by side, and the error against fp32 (issue 29, item 3).

    python benchmarks/int8.py [--repeats 5] [--seeds 1000]
    python benchmarks/int8.py --routes       # per route: one layer's speed and correctness,
                                             # and ONNX Runtime's static quantization
    python -m benchmarks --only int8

Two models: the pytorch/examples netG (ngf=64, random init with its output spread, as in
benchmarks/backends.py) and the bundled model. Each is loaded three times: on torch in fp32
and bf16 (the default path's DCGAN plan), and in int8 (`--precision int8`); `Generator.generate(range(256))`
is timed for each, interleaved with the 2048^3 GEMMs of benchmarks/limits.py, median of
`--repeats`; CPU-seconds per image beside img/s, since the machine may be shared. The error:
the uint8 images of `--seeds` seeds from 10,000 on (held out from the calibration's seeds
0-255), PSNR and max abs difference against fp32.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_serve.runtime import configure_threads  # noqa: E402  (torch-free)

configure_threads()  # before torch loads, like the console scripts

from benchmarks.common import Row, interleaved, machine  # noqa: E402
from benchmarks.limits import REFERENCE, gemm, rate  # noqa: E402
from gan_serve.backends.int8_plan import int8_unsupported  # noqa: E402

PRECISIONS = ("int8", "bf16", "fp32")
N_IMAGES = 256  # per timed call, in micro-batches of 16
FIRST_SEED = 10_000  # the error's seeds: none of them calibrated the int8 path


def models(d: Path) -> dict[str, str]:
    """label -> what `gan_serve.load` takes."""
    import torch

    from benchmarks.reference_nets import ExamplesNetG, randomize, spread_output

    path = d / "netG.pth"
    torch.save(spread_output(randomize(ExamplesNetG(ngf=64), 2), 100).state_dict(), path)
    return {"examples netG (ngf=64)": str(path), "bundled model (default)": "default"}


def psnr(got: np.ndarray, want: np.ndarray) -> tuple[float, int]:
    """(PSNR in dB, max abs difference) of uint8 images against the reference."""
    diff = got.astype(np.float64) - want.astype(np.float64)
    mse = float(np.mean(diff**2))
    return (10 * np.log10(255**2 / mse) if mse else float("inf")), int(np.abs(diff).max())


def measure(model: str, repeats: int, n_seeds: int) -> dict[str, dict[str, float]]:
    """precision -> {img_s, cpu_ms, psnr, max, gemm} for one model, timed interleaved."""
    import gan_serve

    gens = {p: gan_serve.load(model, backend="torch", precision=p) for p in PRECISIONS}
    fns: dict[str, object] = {p: (lambda G=G: G.generate(range(N_IMAGES))) for p, G in gens.items()}
    fns.update({f"gemm {p}": gemm(p, REFERENCE) for p in ("int8", "bf16", "fp32")})
    cpu: dict[str, float] = {}
    t = interleaved(fns, repeats, cpu=cpu)
    seeds = range(FIRST_SEED, FIRST_SEED + n_seeds)
    want = gens["fp32"].generate(seeds)
    out = {}
    for p, G in gens.items():
        db, worst = psnr(G.generate(seeds), want)
        out[p] = {"img_s": N_IMAGES / t[p], "cpu_ms": 1000 * cpu[p] / N_IMAGES, "psnr": db, "max": worst,
                  "gemm": rate(cpu[f"gemm {p}"], REFERENCE) if f"gemm {p}" in cpu else float("nan")}
    return out


ROUTE_LAYERS = ((512, 256, 4), (256, 128, 8), (128, 64, 16))  # the examples netG's L2-L4: Cin, Cout, H


def routes(repeats: int) -> str:
    """One inner layer at a micro-batch of 16, by route: CPU ms (median, interleaved) and the
    correlation of its output with the float deconvolution of the same quantized input."""
    lines = ["| layer | bf16 deconv (oneDNN, the plan's) | int8, 4 parity matmuls (int8_plan.py) | "
             "torch quantized ConvTranspose2d, fbgemm | the same, onednn |", "|---|---:|---:|---:|---:|"]
    lines += [_route_row(cin, cout, h, repeats) for cin, cout, h in ROUTE_LAYERS]
    return "\n".join(lines)


def _route_row(cin: int, cout: int, h: int, repeats: int) -> str:
    import torch
    import torch.nn.functional as F

    from gan_serve.backends import dcgan_plan, int8_plan

    torch.manual_seed(cin)
    conv = torch.nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    x8 = torch.randint(0, 256, (16, h, h, cin), dtype=torch.uint8)
    x = x8.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        want = F.relu(conv(x))
    scale = float(want.max()) / 255
    ours = int8_plan._Int8Deconv(conv, 1 / 255, scale)
    bf = _bf16(conv)
    xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    plan = dcgan_plan._Deconv(dcgan_plan._reorder(bf, 16, h), bf.bias.detach(), bf, True)
    fns = {"bf16": lambda: plan(xb), "ours": lambda: ours(x8)}
    got = {"ours": lambda: ours(x8).permute(0, 3, 1, 2).float() * scale}
    for engine in ("fbgemm", "onednn"):
        fns[engine], got[engine] = _torch_quantized(conv, x, scale, engine)
    cpu: dict[str, float] = {}
    with torch.inference_mode():
        interleaved(fns, repeats, cpu=cpu)
        corr = {k: float(torch.corrcoef(torch.stack([f().flatten(), want.flatten()]))[0, 1])
                for k, f in got.items()}
    cells = [f"{1000 * cpu['bf16']:.2f} ms"] + [f"{1000 * cpu[k]:.2f} ms (r = {corr[k]:.3f})"
                                                for k in ("ours", "fbgemm", "onednn")]
    return f"| {cin}->{cout} @{h}x{h} | " + " | ".join(cells) + " |"


def onnx_route(repeats: int) -> str:
    """ONNX Runtime's static quantization of the examples netG (QDQ and QOperator, per-channel
    weights, calibrated on seeds 0-255): img/s and CPU ms per image against the fp32 export, and
    the operators of each graph after ONNX Runtime's own optimization (which ones run int8)."""
    import collections

    import onnx
    import onnxruntime as ort
    from onnxruntime import quantization as q

    from export import export_onnx, prepare
    from gan_serve.latents import latents_for_seeds

    z = latents_for_seeds(range(256), 100)

    class Seeds(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"z": z[i : i + 16]} for i in range(0, 256, 16)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    lines = ["| ONNX Runtime graph | img/s | CPU ms per image | operators after ORT's optimization |",
             "|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        import gan_serve

        export_onnx(prepare(gan_serve.load(models(d)["examples netG (ngf=64)"])), d / "fp32.onnx")
        paths = {"fp32": d / "fp32.onnx"}
        for fmt in ("QDQ", "QOperator"):
            paths[fmt] = d / f"{fmt}.onnx"
            q.quantize_static(d / "fp32.onnx", paths[fmt], Seeds(), quant_format=getattr(q.QuantFormat, fmt),
                              per_channel=True, activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8)
        sessions, ops = {}, {}
        for name, path in paths.items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 2
            opts.optimized_model_filepath = str(d / f"{name}.opt.onnx")
            sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            graph = onnx.load(opts.optimized_model_filepath).graph
            ops[name] = collections.Counter(n.op_type for n in graph.node)
        fns = {k: (lambda s=s: [s.run(None, {"z": z[i : i + 16]}) for i in range(0, 256, 16)])
               for k, s in sessions.items()}
        cpu: dict[str, float] = {}
        t = interleaved(fns, repeats, cpu=cpu)
    for k in fns:
        listed = ", ".join(f"{op} {n}" for op, n in sorted(ops[k].items()))
        lines.append(f"| {k} | {256 / t[k]:.0f} | {1000 * cpu[k] / 256:.2f} | {listed} |")
    return "\n".join(lines)


def _bf16(conv: object) -> object:
    import copy

    import torch

    return copy.deepcopy(conv).to(torch.bfloat16)


def _torch_quantized(conv: object, x: object, scale: float, engine: str) -> tuple:
    """torch's own quantized ConvTranspose2d (per-tensor weights: per-channel is refused for
    transposed convolutions) under `engine`: (the timed call, its dequantized output)."""
    import torch

    torch.backends.quantized.engine = engine
    w = conv.weight.detach()
    wq = torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
    packed = torch.ops.quantized.conv_transpose2d_prepack(wq, conv.bias.detach(), [2, 2], [1, 1], [0, 0],
                                                          [1, 1], 1)
    xq = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)
    run = lambda: torch.ops.quantized.conv_transpose2d(xq, packed, scale, 0)  # noqa: E731
    return run, lambda: torch.relu(run().dequantize())


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| model | precision | img/s | CPU ms per image | vs bf16 (CPU) | PSNR vs fp32 | max diff | "
             "GEMM rate by CPU-s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, res in results.items():
        for p, r in res.items():
            unit = "GOP/s" if p == "int8" else "GFLOP/s"
            lines.append(f"| {label} | {p} | {r['img_s']:.0f} | {r['cpu_ms']:.2f} | "
                         f"{res['bf16']['cpu_ms'] / r['cpu_ms']:.2f}x | {r['psnr']:.1f} dB | "
                         f"{r['max']}/255 | {r['gemm']:.0f} {unit} |")
    return "\n".join(lines)


def bench(quick: bool = False) -> list[Row]:
    """The int8 rows of `python -m benchmarks`: the int8 path against bf16 per model."""
    if (why := int8_unsupported()) is not None:
        return [Row("int8, opt-in", "not measured", "", "", "", why)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models(Path(tmp)).items():
            r = measure(model, 3 if quick else 5, 200 if quick else 1000)
            i8, bf = r["int8"], r["bf16"]
            rows.append(Row(f"int8, {label}", f"{i8['img_s']:.0f} img/s ({i8['cpu_ms']:.2f} CPU ms/img)",
                            f"bf16 {bf['img_s']:.0f} img/s ({bf['cpu_ms']:.2f})",
                            f"{bf['cpu_ms'] / i8['cpu_ms']:.2f}x by CPU", "opt-in, measured",
                            f"PSNR {i8['psnr']:.1f} dB, max {i8['max']}/255 against fp32 "
                            f"(bf16: {bf['psnr']:.1f} dB, {bf['max']}/255)"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1000, help="images of the error measurement")
    ap.add_argument("--routes", action="store_true", help="only the routes (torch per layer, ORT)")
    args = ap.parse_args()
    if (why := int8_unsupported()) is not None:
        sys.exit(f"int8 not measured: {why}")
    import torch

    if args.routes:
        print(f"{machine()}; torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}\n")
        print(routes(args.repeats))
        print()
        print(onnx_route(args.repeats))
        return
    start = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as tmp:
        results = {label: measure(model, args.repeats, args.seeds)
                   for label, model in models(Path(tmp)).items()}
    print(f"{machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"started {start}; load average at the end {os.getloadavg()[0]:.1f}")
    print(f"img/s: Generator.generate(range({N_IMAGES})), median of {args.repeats}, interleaved; "
          f"error: {args.seeds} seeds from {FIRST_SEED}\n")
    print(table(results))


if __name__ == "__main__":
    main()
