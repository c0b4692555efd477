"""Where one micro-batch's time goes on the default CPU path, stage by stage, before and after
the DCGAN plan (gan_serve/backends/dcgan_plan.py), interleaved with the 2048^3 GEMMs.

    python -m benchmarks --only stages [--quick]

"module" is the bf16 module called as it was before the plan (BatchNorm folded, channels_last:
oneDNN reorders each weight per call, separate ReLU and tanh passes, then the float output and
images.to_uint8); "plan" is what the default path runs now. Each convolution is also given in
GFLOP/s and as a fraction of the bf16 GEMM rate. The last rows try other formulations of the
thin last layer and say whether they give the same bits (a plan may only adopt those that do).
"""

from __future__ import annotations

import numpy as np

from benchmarks import limits
from benchmarks.common import Row, interleaved
from benchmarks.targets import checkpoints


def _module_stages(G, z16: np.ndarray) -> tuple[dict, dict]:
    """{stage: fn} over the bf16 module's children in turn, on their recorded inputs, and
    {conv stage: FLOPs}."""
    import torch
    from torch import nn

    from gan_serve import images as img

    runner = G.runner.runner
    x = torch.from_numpy(z16).to(torch.bfloat16).reshape(len(z16), -1, 1, 1)
    fns, flops, i = {}, {}, 0
    with torch.inference_mode():
        for m in runner.main:
            if isinstance(m, nn.Identity):
                continue
            name = f"L{i + 1} deconv" if isinstance(m, nn.ConvTranspose2d) else f"L{i} {type(m).__name__}"
            if isinstance(m, nn.ConvTranspose2d):
                i += 1
                k = m.kernel_size[0] * m.kernel_size[1]
                flops[name] = 2 * m.in_channels * m.out_channels * k * x.shape[2] * x.shape[3] * len(x)
            # the module's ReLU works in place: time an out-of-place one on a kept input
            fns[name] = (lambda m=m, x=x.clone(): torch.relu(x) if isinstance(m, nn.ReLU) else m(x))
            x = m(x)
    fns["float, isfinite, to_uint8"] = lambda y=x: (np.isfinite(y.float().numpy()).all(),
                                                     img.to_uint8(y.float().numpy(), G.spec.output_range))
    return fns, flops


def _plan_stages(G, z16: np.ndarray) -> dict:
    import torch

    plan = G.runner.plan
    x = torch.from_numpy(z16).to(torch.bfloat16)
    fns = {"L1 Linear + ReLU fused (weights reordered once)": lambda: plan.first_layer(x)}
    with torch.inference_mode():
        h = plan.first_layer(x)
        for i, layer in enumerate(plan.rest, start=2):
            fns[f"L{i} deconv{' + ReLU fused' if layer.relu else ''} (weights reordered once)"] = (
                lambda layer=layer, h=h: layer(h))
            h = layer(h)
    fns["activation + pixels: table lookup"] = lambda y=h: plan.images(y)
    return fns


def last_layer_variants(G, z16: np.ndarray) -> dict:
    """{name: (fn, output)}: the thin last layer as oneDNN runs it and three other ways."""
    import torch
    import torch.nn.functional as F

    from gan_serve.backends.dcgan_plan import _Deconv, _reorder

    plan, last = G.runner.plan, G.runner.plan.rest[-1]
    conv = last.conv
    with torch.inference_mode():
        h = plan.first_layer(torch.from_numpy(z16).to(torch.bfloat16))
        for layer in plan.rest[:-1]:
            h = layer(h)
        cin, cout, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
        pad = 16 - cout % 16 if cout % 16 else 0
        wide = torch.nn.ConvTranspose2d(cin, cout + pad, k, conv.stride, conv.padding, bias=False)
        wide = wide.to(torch.bfloat16)
        wide.weight.data = torch.cat([conv.weight, conv.weight.new_zeros(cin, pad, k, k)], 1)
        padded = _Deconv(_reorder(wide, len(h), h.shape[2]), None, wide, False)
        w32, h32 = conv.weight.float(), h.float()
        cols_w = conv.weight.float().reshape(cin, cout * k * k)
        size = h.shape[2] * conv.stride[0]

        def col2im():
            cols = (h32.permute(0, 2, 3, 1).reshape(-1, cin) @ cols_w).view(len(h), -1, cout * k * k)
            out = F.fold(cols.transpose(1, 2), size, k, stride=conv.stride, padding=conv.padding)
            return out.to(torch.bfloat16)

        phases = _phase_weight(conv.weight)

        def phase_conv():  # one stride-1 3x3 conv to 4 phases x C channels, then pixel shuffle
            return F.pixel_shuffle(F.conv2d(h, phases, padding=1), 2)

        fns = {
            "oneDNN bf16 (the plan's)": lambda: last(h),
            "4 phases as one 3x3 conv + pixel shuffle": phase_conv,
            f"output channels padded to {cout + pad}": lambda: padded(h)[:, :cout],
            "fp32 deconvolution, rounded to bf16": lambda: F.conv_transpose2d(
                h32, w32, None, conv.stride, conv.padding).to(torch.bfloat16),
            "fp32 matmul + col2im (F.fold), rounded to bf16": col2im,
        }
        return {name: (fn, fn()) for name, fn in fns.items()}


def _phase_weight(w):
    """A k4 s2 p1 ConvTranspose2d weight (Cin, C, 4, 4) as a 3x3 Conv2d weight (4C, Cin, 3, 3):
    output row 2m + a takes input rows m-1, m (a=0: taps 3, 1) or m, m+1 (a=1: taps 2, 0)."""
    import torch

    taps = [{0: 3, 1: 1}, {1: 2, 2: 0}]  # phase -> {window offset: kernel tap}
    cin, cout = w.shape[:2]
    out = w.new_zeros(cout * 4, cin, 3, 3)
    for c in range(cout):
        for a in range(2):
            for b in range(2):
                for dh, kh in taps[a].items():
                    for dw, kw in taps[b].items():
                        out[c * 4 + a * 2 + b, :, dh, dw] = w[:, c, kh, kw]
    return out.contiguous(memory_format=torch.channels_last)


def bench(quick: bool = False) -> list[Row]:
    import torch

    import gan_serve

    repeats = 7 if quick else 15
    G = gan_serve.load(checkpoints()["netG"], backend="torch", precision="bf16")
    if G.runner.plan is None:
        return [Row("1 stages", "not run", "", "", "", "the DCGAN plan was not adopted on this machine")]
    z16 = G.latents(range(G.runner.micro_batch))
    before, flops = _module_stages(G, z16)
    after = _plan_stages(G, z16)
    variants = last_layer_variants(G, z16)
    plan_off = gan_serve.load(checkpoints()["netG"], backend="torch", precision="bf16")
    plan_off.runner.plan = None
    fns = {("module", k): f for k, f in before.items()} | {("plan", k): f for k, f in after.items()}
    fns |= {("last", k): f for k, (f, _) in variants.items()}
    fns |= {("whole", "latents (16 seeds)"): lambda: G.latents(range(16)),
            ("whole", "module"): lambda: plan_off.generate(range(16)),
            ("whole", "plan"): lambda: G.generate(range(16))}
    cpu: dict = {}
    with torch.inference_mode():  # the stages' inputs are inference tensors
        t = interleaved({**fns, **limits.reference_gemms()}, repeats, cpu=cpu)
    rates = limits.record(t)
    rows = []
    for key, secs in ((k, v) for k, v in t.items() if isinstance(k, tuple)):
        group, name = key
        work = _flops(flops, name)
        share = "" if work is None else (
            f"{work / secs / 1e9:.0f} GFLOP/s, {work / secs / 1e9 / rates['bf16']:.0%} of bf16; "
            + limits.cpu_fraction(1, work, "bf16", key, cpu))
        rows.append(Row(f"1 stage, {group}: {name}", f"{secs * 1e3:.3f} ms",
                        f"CPU {cpu[key] * 1e3:.3f} ms", "", "(profile)",
                        f"one micro-batch of {len(z16)}, examples netG, median of {repeats}"
                        + _same_bits(variants, name if group == "last" else None), share))
    return rows


def _flops(flops: dict[str, float], name: str) -> float | None:
    """The FLOPs of a convolution stage ("L3 deconv ...", "L1 Linear ...") or of a whole
    micro-batch ("module", "plan"), else None."""
    if name in ("module", "plan"):
        return sum(flops.values())
    if "deconv" in name or "Linear" in name:
        return flops.get(name.split(" ")[0] + " deconv")
    return flops["L5 deconv"] if "bf16" in name or "channels" in name or "phases" in name else None


def _same_bits(variants: dict, name: str | None) -> str:
    """'; same bits' or '; N of M values differ' for a last-layer variant, else ''."""
    if name is None:
        return ""
    ref = variants["oneDNN bf16 (the plan's)"][1]
    got = variants[name][1]
    diff = int((got.float() != ref.float()).sum())
    return "; same bits as oneDNN's" if diff == 0 else f"; {diff} of {ref.numel()} values differ"
