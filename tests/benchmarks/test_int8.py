"""benchmarks/int8.py, the measurement of `--precision int8` (its plan's own tests:
tests/gan_serve/backends/test_int8_plan.py): the routes table checks its own output, and a CPU
without int8 dot products gets a "not measured" row, not a crash."""

from __future__ import annotations

import pytest

from benchmarks import int8 as bench
from gan_serve.backends import int8_plan

needs_int8 = pytest.mark.skipif(not int8_plan.int8_dot_products(),
                                reason="this CPU has no int8 dot products (VNNI or AMX-int8)")


@needs_int8
def test_the_routes_table_row_checks_its_own_output():
    row = bench._route_row(64, 32, 4, 1)
    ours = row.split("|")[3]
    assert "ms (r = " in ours and float(ours.split("r = ")[1].split(")")[0]) > 0.999


def test_a_cpu_without_int8_dot_products_gets_a_not_measured_row(monkeypatch):
    monkeypatch.setattr(int8_plan, "int8_dot_products", lambda flags=None: [])
    (row,) = bench.bench(quick=True)
    assert row.figure == "not measured" and "no int8 dot products" in row.note
