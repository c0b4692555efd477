"""benchmarks/limits.py: FLOPs counted from the model, CPU flags, the fraction of the limit."""

from __future__ import annotations

import gan_serve
from benchmarks import limits
from benchmarks.reference_nets import ExamplesNetG, randomize
from benchmarks.targets import _without_plan


def test_flops_per_image_of_the_examples_netg_are_the_issues_0_209_gflop(tmp_path):
    import torch

    path = tmp_path / "netG.pth"
    torch.save(randomize(ExamplesNetG(ngf=64), 0).state_dict(), path)
    module = gan_serve.load(path, backend="torch").module
    # ConvTranspose2d: 2 * Cin * Cout * k^2 * Hin * Win
    want = 2 * 16 * (100 * 512 * 1 + 512 * 256 * 16 + 256 * 128 * 64 + 128 * 64 * 256 + 64 * 3 * 1024)
    assert limits.flops_per_image(module, 100) == want
    assert abs(want / 1e9 - 0.209) < 0.001


def test_int8_dot_products_are_read_from_the_cpu_flags():
    assert limits.int8_dot_products({"avx2", "avx512_vnni", "avx512_bf16"}) == ["avx512_vnni"]
    assert limits.int8_dot_products({"avx2", "amx_int8", "avx_vnni"}) == ["avx_vnni", "amx_int8"]
    assert limits.int8_dot_products({"avx2", "fma"}) == []


def test_fraction_is_flops_per_second_over_the_gemm_rate_of_the_precision():
    rates = {"bf16": 400.0, "fp32": 175.0}
    assert limits.fraction(1000, 0.2e9, "bf16", rates) == "50% of bf16 (400 GFLOP/s)"
    assert limits.fraction(500, 0.2e9, "fp32", rates) == "57% of fp32 (175 GFLOP/s)"
    assert limits.fraction(500, 0.2e9, "int8", rates) == ""  # not measured: no claim
    assert limits.rate(1.0, 1000) == 2.0  # 2 n^3 FLOPs in one second, in GFLOP/s


def test_the_gemm_rows_measure_every_precision_this_cpu_runs(monkeypatch):
    monkeypatch.setattr(limits, "SIZES", (64, 128))
    monkeypatch.setattr(limits, "REFERENCE", 128)
    rows = limits.bench(quick=True)
    names = [r.target for r in rows]
    assert names == ["0 limit, bf16 GEMM", "0 limit, fp32 GEMM", "0 limit, int8 GEMM"]
    assert rows[0].figure.endswith("GFLOP/s at 128^3") and "64: " in rows[0].note
    int8 = rows[2].figure
    if limits.int8_runs() is None:
        assert int8.endswith("GOP/s at 128^3") and "torch._int_mm" in rows[2].note
    else:
        assert int8 == "not measured" and rows[2].note == limits.int8_runs()


def test_the_raw_targets_reference_row_switches_the_plan_off(legacy):
    G = gan_serve.load(legacy["examples_nc3"].path, backend="torch", precision="bf16")
    before = _without_plan(G)
    assert (before is None) == (G.runner.plan is None)
    if before is not None:
        assert before.runner.plan is None and G.runner.plan is not None
    assert _without_plan(gan_serve.load(legacy["examples_nc3"].path, backend="torch")) is None


def test_cpu_fraction_compares_work_per_cpu_second_with_the_gemms():
    gemm = 2 * limits.REFERENCE**3  # FLOPs of the reference product
    cpu = {"gemm bf16": 1.0, "default": 2.0}  # the default took twice the GEMM's CPU-seconds
    assert limits.cpu_fraction(10, gemm / 10, "bf16", "default", cpu) == "by CPU-seconds 50%"
    assert limits.cpu_fraction(10, gemm / 10, "fp32", "default", cpu) == ""  # no fp32 GEMM timed
