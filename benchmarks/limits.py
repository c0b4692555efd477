"""The machine's own arithmetic limit, measured in the run that uses it: GEMM rates.

Every compute row of `python -m benchmarks` is also given as a fraction of the GEMM rate of
its precision, measured interleaved with the row itself (img/s x FLOPs per image / GEMM rate),
so a figure from a busy or a different machine still says how close it is to what the CPU
can do. The rates are torch.mm on square matrices (2048^3, and whichever size is best here),
int8 with `torch._int_mm` where the CPU has int8 dot products (VNNI or AMX-int8).
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.common import Row, interleaved
from gan_serve.backends.int8_plan import int8_dot_products  # the one detection, gan-serve's own

SIZES = (1024, 2048, 3072)
REFERENCE = 2048  # the size quoted with every fraction


def gemm(precision: str, n: int) -> Callable[[], object]:
    """One n x n x n product at `precision` (fp32, bf16, int8) with torch's CPU kernels."""
    import torch

    g = torch.Generator().manual_seed(n)
    if precision == "int8":
        a = torch.randint(-128, 127, (n, n), generator=g, dtype=torch.int8)
        b = torch.randint(-128, 127, (n, n), generator=g, dtype=torch.int8)
        return lambda: torch._int_mm(a, b)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    return lambda: torch.mm(a, b)


def rate(seconds: float, n: int) -> float:
    """GFLOP/s (GOP/s for int8) of one n^3 product that took `seconds`."""
    return 2 * n**3 / seconds / 1e9


def int8_runs() -> str | None:
    """None when torch._int_mm runs on this CPU, else why not."""
    if not int8_dot_products():
        return "no int8 dot products (VNNI/AMX-int8) on this CPU"
    try:
        gemm("int8", 64)()
    except (RuntimeError, AttributeError) as exc:
        return f"torch._int_mm does not run on this CPU: {str(exc).splitlines()[0][:80]}"
    return None


LAST: dict[str, float] = {}  # precision -> GFLOP/s of the latest interleaved measurement


def reference_gemms() -> dict[str, Callable[[], object]]:
    """The 2048^3 products to interleave with a row's own timings: {"gemm bf16": fn, ...}."""
    return {f"gemm {p}": gemm(p, REFERENCE) for p in ("bf16", "fp32")}


def record(times: dict[str, float]) -> dict[str, float]:
    """GFLOP/s of the reference products among interleaved `times`; kept in LAST for rows that
    cannot interleave (fresh processes)."""
    rates = {k.split()[1]: rate(v, REFERENCE) for k, v in times.items()
             if isinstance(k, str) and k.startswith("gemm ")}
    LAST.update(rates)
    return rates


def cpu_fraction(n: int, flops_per_image: float, precision: str, key: str, cpu: dict[str, float]) -> str:
    """The same share by CPU-seconds (n images took cpu[key]; the GEMM of `precision` took
    cpu["gemm <precision>"]): on a busy machine the work a call does moves less than its wall
    time, since idle threads sleep (OMP_WAIT_POLICY=PASSIVE) while others hold the cores."""
    gemm = cpu.get(f"gemm {precision}")
    if not gemm or not cpu.get(key):
        return ""
    return f"by CPU-seconds {n * flops_per_image / cpu[key] / (2 * REFERENCE**3 / gemm):.0%}"


def fraction(img_per_s: float, flops_per_image: float, precision: str, rates: dict[str, float]) -> str:
    """`62% of bf16 (401 GFLOP/s)`: img/s x FLOPs per image over the GEMM rate of `precision`."""
    if precision not in rates:
        return ""
    share = img_per_s * flops_per_image / 1e9 / rates[precision]
    return f"{share:.0%} of {precision} ({rates[precision]:.0f} GFLOP/s)"


def flops_per_image(module: object, z_dim: int) -> float:
    """Multiply-adds x 2 of one forward pass, counted from the layers the module runs:
    ConvTranspose2d 2 * Cin * Cout * k^2 * Hin * Win / groups, Conv2d the same over its output,
    Linear 2 * in * out. Activations and norms are not counted (they are not GEMM work)."""
    return sum(flops for _, flops in layer_flops(module, z_dim))


def layer_flops(module: object, z_dim: int) -> list[tuple[object, float]]:
    """(layer, FLOPs per image) of each GEMM layer of one forward pass, in execution order,
    counted as `flops_per_image` says."""
    import torch
    from torch import nn

    layers: list[tuple[object, float]] = []

    def count(m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        if isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            layers.append((m, 2 * m.in_channels * m.out_channels * k * x.shape[2] * x.shape[3] / m.groups))
        elif isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            layers.append((m, 2 * m.in_channels * m.out_channels * k * output.shape[2] * output.shape[3]
                           / m.groups))
        elif isinstance(m, nn.Linear):
            layers.append((m, 2 * m.in_features * m.out_features))

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    try:
        with torch.no_grad():
            module(torch.zeros(1, z_dim))
    finally:
        for h in hooks:
            h.remove()
    return layers


def bench(quick: bool = False) -> list[Row]:
    """The limit rows: bf16, fp32 (and int8) GEMM rates at each size, interleaved."""
    precisions = ["bf16", "fp32"]
    why_not = int8_runs()
    if why_not is None:
        precisions.append("int8")
    sizes = SIZES[:2] if quick else SIZES
    fns = {(p, n): gemm(p, n) for p in precisions for n in sizes}
    t = interleaved(fns, 3 if quick else 5)
    rows = []
    for p in precisions:
        rates = {n: rate(t[(p, n)], n) for n in sizes}
        best = max(rates, key=rates.get)
        unit = "GOP/s" if p == "int8" else "GFLOP/s"
        op = "torch._int_mm" if p == "int8" else "torch.mm"
        rows.append(Row(f"0 limit, {p} GEMM", f"{rates[REFERENCE]:.0f} {unit} at {REFERENCE}^3",
                        f"best {rates[best]:.0f} {unit} at {best}^3", "", "(the limit)",
                        f"{op}, sizes {', '.join(f'{n}: {r:.0f}' for n, r in rates.items())}; "
                        f"median of {3 if quick else 5}, interleaved"))
    if why_not is not None:
        rows.append(Row("0 limit, int8 GEMM", "not measured", "", "", "(the limit)", why_not))
    return rows
