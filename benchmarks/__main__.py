"""`python -m benchmarks`: every performance target this machine can run, as one table.

    python -m benchmarks [--only limits,raw,stages,layers,busy,bulk,bulk20k,cold,http,train,gpu] [--quick]

Each target is a function `bench(quick: bool) -> list[Row]` named in TARGETS; it measures the
default path and its naive baseline side by side, interleaved, and reports medians. A target
whose module or function is missing (another part of the project not written yet) shows up
as a row saying so. Add a target by writing such a function and naming it below.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_serve.runtime import configure_threads  # noqa: E402  (torch-free)

USER_ENV = dict(os.environ)  # what a user's own script would run under (before our choices)
configure_threads()  # before anything imports torch, like the console scripts

from benchmarks.common import Row, machine  # noqa: E402

TARGETS = {  # name -> "module:function"
    "limits": "benchmarks.limits:bench",  # 0. the machine's GEMM rates, the limit of every row
    "raw": "benchmarks.targets:raw",  # 1. Generator.generate vs torch eager fp32 at batch 64
    "stages": "benchmarks.stages:bench",  # 1. where a micro-batch's time goes, per stage
    "layers": "benchmarks.layers:bench",  # 1. the same for the seed-000 G and the bundled model on ORT
    "busy": "benchmarks.busy:bench",  # 1. the same beside one competing CPU-bound process
    "bulk": "benchmarks.targets:bulk",  # 2. generate --individual vs a naive save loop
    "bulk20k": "benchmarks.bulk_share:bench",  # 2. 20,000 files against the raw rate (--quick: 2,048)
    "cold": "benchmarks.targets:cold_start",  # 3. gan-serve generate --seed 42 --n 64 from cold
    "http": "benchmarks.loadtest:bench",  # 4. HTTP (benchmarks/loadtest.py)
    "train": "benchmarks.train_throughput:bench",  # 5. gan-train vs the pytorch/examples loop
    "gpu": "benchmarks.gpu:bench",  # 6. GPU paths and fp16 throughput (a CPU dry run without a GPU)
    "int8": "benchmarks.int8:bench",  # --precision int8 (opt-in) against bf16, and its error
}


def run_target(name: str, quick: bool) -> list[Row]:
    module, func = TARGETS[name].split(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        return [Row(name, "not run", "", "", "", f"{module}.{func} missing ({type(exc).__name__})")]
    try:
        return fn(quick=quick)
    except Exception as exc:  # one broken target must not hide the others
        traceback.print_exc()
        return [Row(name, "failed", "", "", "", f"{type(exc).__name__}: {exc}"[:120])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(TARGETS), help="comma-separated targets")
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    where, when = machine(), datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    rows: list[Row] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += run_target(name, args.quick)
    print(f"`python -m benchmarks{' --quick' if args.quick else ''} --only {','.join(names)}`, "
          f"{when}, {where}, load average {os.getloadavg()[0]:.1f} at the start; "
          f"{time.perf_counter() - t0:.0f} s\n")
    print("| target | figure | baseline | ratio | of the GEMM limit | goal | machine | date | notes |")
    print("|---|---:|---:|---:|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.target} | {r.figure} | {r.baseline} | {r.ratio} | {r.limit} | {r.goal} | "
              f"{where} | {when[:10]} | {r.note} |")


if __name__ == "__main__":
    main()
