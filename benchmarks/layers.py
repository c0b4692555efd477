"""Where a micro-batch's time goes on the two default paths the `stages` target does not
profile: the seed-000 G on the torch bf16 DCGAN plan, and the bundled model on ONNX Runtime
fp32 (its default: ONNX Runtime's own profiler, per graph node).

    python -m benchmarks --only layers [--quick]

The plan's stages are timed interleaved with the 2048^3 GEMMs, as `stages` times the netG's.
ONNX Runtime's nodes are timed by its profiler over the same micro-batches (kernel wall time
per node); "outside the nodes" is those profiled runs' wall time less the nodes' sum (the
session's own work and copies). The whole pass (`Generator.generate`, with the pixel mapping)
and the GEMMs are timed interleaved, apart from the profiled runs.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks import limits
from benchmarks.common import Row, interleaved
from benchmarks.stages import _flops, _module_stages, _plan_stages
from benchmarks.targets import checkpoints


def plan_rows(repeats: int) -> list[Row]:
    """The seed-000 G's DCGAN plan, stage by stage, with each layer's share of the bf16 rate."""
    import torch

    import gan_serve

    G = gan_serve.load(checkpoints()["seed000"], backend="torch", precision="bf16")
    if G.runner.plan is None:
        return [Row("1 layers, seed-000 G", "not run", "", "", "", "the DCGAN plan was not adopted here")]
    z16 = G.latents(range(G.runner.micro_batch))
    _, flops = _module_stages(G, z16)
    fns = {k: f for k, f in _plan_stages(G, z16).items()}
    fns |= {"latents (16 seeds)": lambda: G.latents(range(16)), "plan": lambda: G.generate(range(16))}
    cpu: dict = {}
    with torch.inference_mode():
        t = interleaved({**fns, **limits.reference_gemms()}, repeats, cpu=cpu)
    rates = limits.record(t)
    rows = []
    for name in fns:
        work = _flops(flops, name)
        share = "" if work is None else (
            f"{work / t[name] / 1e9:.0f} GFLOP/s, {work / t[name] / 1e9 / rates['bf16']:.0%} of bf16; "
            + limits.cpu_fraction(1, work, "bf16", name, cpu))
        rows.append(Row(f"1 layers, seed-000 G: {'whole ' if name == 'plan' else ''}{name}",
                        f"{t[name] * 1e3:.3f} ms", f"CPU {cpu[name] * 1e3:.3f} ms", "", "(profile)",
                        f"one micro-batch of {len(z16)}, torch/cpu/bf16 plan, median of {repeats}", share))
    return rows


def conv_flops(module: object, z_dim: int, n: int) -> list[float]:
    """FLOPs of each ConvTranspose2d of `module` in execution order, for a batch of n."""
    from torch import nn

    return [n * flops for m, flops in limits.layer_flops(module, z_dim) if isinstance(m, nn.ConvTranspose2d)]


def node_times(onnx_path: Path, z: np.ndarray, runs: int, threads: int) -> dict[str, tuple[str, float]]:
    """{node name: (op type, mean seconds per run)} from ONNX Runtime's profiler, in graph order,
    with the session built as gan-serve builds it (threads, no spinning); the key "" holds
    ("run", the mean wall time of `session.run`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="gan-serve-ort-")) / "profile")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: z.astype(np.float32)}
    session.run(None, feed)  # warm-up, then the profiled runs
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    wall = (time.perf_counter() - start) / runs
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"].removesuffix("_kernel_time")
            totals[node] += e["dur"] / 1e6
            ops[node] = e.get("args", {}).get("op_name", "?")
    return {node: (ops[node], secs / (runs + 1)) for node, secs in totals.items()} | {"": ("run", wall)}


def onnx_rows(repeats: int) -> list[Row]:
    """The bundled model on ONNX Runtime fp32, node by node, with each ConvTranspose's share of
    the fp32 GEMM rate."""
    import gan_serve
    from gan_serve.runtime import thread_count

    path = checkpoints()["bundled"]
    G = gan_serve.load(path)
    if not G.backend.startswith("onnx"):
        return [Row("1 layers, bundled model", "not run", "", "", "", f"its default here is {G.backend}")]
    micro = G.runner.micro_batch
    z = G.latents(range(micro))
    cpu: dict = {}
    t = interleaved({"whole": lambda: G.generate(range(micro)), **limits.reference_gemms()}, repeats, cpu=cpu)
    rates = limits.record(t)
    flops = conv_flops(gan_serve.load(path, backend="torch", precision="fp32").module, G.z_dim, micro)
    nodes = node_times(path.with_suffix(".onnx"), z, 5 * repeats, thread_count())
    convs = iter(flops)
    _, run_wall = nodes.pop("")
    rows = []
    for node, (op, secs) in nodes.items():
        work = next(convs, None) if op == "ConvTranspose" else None
        share = "" if work is None else (
            f"{work / secs / 1e9:.0f} GFLOP/s, {work / secs / 1e9 / rates['fp32']:.0%} of fp32")
        rows.append(Row(f"1 layers, bundled model (ONNX Runtime): {node} ({op})", f"{secs * 1e3:.3f} ms",
                        "", "", "(profile)", f"one micro-batch of {micro}, ORT's profiler", share))
    inside = sum(secs for _, secs in nodes.values())
    rows.append(Row("1 layers, bundled model (ONNX Runtime): session.run outside the nodes",
                    f"{(run_wall - inside) * 1e3:.3f} ms", "", "", "(profile)",
                    f"the profiled runs' mean wall ({run_wall * 1e3:.3f} ms) less the nodes' sum", ""))
    rows.append(Row("1 layers, bundled model (ONNX Runtime): whole pass (Generator.generate)",
                    f"{t['whole'] * 1e3:.3f} ms", f"CPU {cpu['whole'] * 1e3:.3f} ms", "", "(profile)",
                    f"one micro-batch of {micro}, median of {repeats}",
                    f"{sum(flops) / t['whole'] / 1e9:.0f} GFLOP/s, "
                    f"{sum(flops) / t['whole'] / 1e9 / rates['fp32']:.0%} of fp32; "
                    + limits.cpu_fraction(1, sum(flops), "fp32", "whole", cpu)))
    return rows


def bench(quick: bool = False) -> list[Row]:
    repeats = 7 if quick else 15
    return plan_rows(repeats) + onnx_rows(repeats)
