"""Thread settings chosen by the entry points, and what each entry point imports at start."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from gan_serve import runtime


def test_configure_threads_fills_in_only_what_is_unset():
    env: dict[str, str] = {}
    chosen = runtime.configure_threads(env)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and chosen == env
    assert int(env["OMP_NUM_THREADS"]) == runtime.cpu_budget() >= 1
    mine = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "7"}
    assert runtime.configure_threads(mine) == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "7"}


@pytest.mark.parametrize(("cpu_max", "cap"), [("max 100000\n", None), ("150000 100000\n", 2),
                                              ("50000 100000\n", 1), ("garbage", None)])
def test_cpu_budget_honours_a_cgroup_quota(tmp_path, cpu_max, cap):
    f = tmp_path / "cpu.max"
    f.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert runtime.cpu_budget(f) == (affinity if cap is None else min(affinity, cap))
    assert runtime.cpu_budget(tmp_path / "absent") == affinity


HEAVY = ("torch", "fastapi", "uvicorn", "prometheus_client", "pydantic", "onnx")


@pytest.mark.parametrize("module", ["gan_serve.commands.cli", "export.cli", "training.cli"])
def test_entry_points_load_no_torch_and_no_http_stack_before_main(module):
    # torch must load after main() set OMP_WAIT_POLICY (OpenMP reads it once, at load), and
    # `--help` or `generate` must not pay for the HTTP stack.
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_serve_is_listed_without_importing_fastapi():
    code = ("import sys; from typer.testing import CliRunner; from gan_serve.commands.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert 'serve' in r.output, r.output; "
            "print('fastapi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _priority_in_thread(setup) -> tuple[int, int]:
    """(nice of a thread after `setup`, nice of a thread that thread starts afterwards)."""
    seen: list[int] = []

    def child() -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def parent() -> None:
        setup()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        t = threading.Thread(target=child)
        t.start()
        t.join()

    t = threading.Thread(target=parent)
    t.start()
    t.join()
    return seen[0], seen[1]


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are a Linux feature")
def test_a_background_thread_and_the_threads_it_starts_yield_to_the_event_loop():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    lowered = min(19, base + runtime.BACKGROUND_NICE)
    assert _priority_in_thread(runtime.yield_to_the_event_loop) == (lowered, lowered)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's own is untouched


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are a Linux feature")
def test_the_servers_model_thread_runs_below_the_event_loop():
    from gan_serve.http.batcher import Batcher
    from gan_serve.http.metrics import Metrics

    batcher = Batcher(object(), "g", max_batch=1, max_delay_ms=0, max_queue=1, metrics=Metrics())
    nice = batcher.executor.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert nice.result() == min(19, os.getpriority(os.PRIO_PROCESS, 0) + runtime.BACKGROUND_NICE)
    batcher.executor.shutdown()


def test_environ_set_puts_every_variable_back_however_the_block_ends(monkeypatch):
    monkeypatch.setenv("GAN_SERVE_T_KEPT", "before")
    monkeypatch.delenv("GAN_SERVE_T_NEW", raising=False)
    values = {"GAN_SERVE_T_KEPT": "in", "GAN_SERVE_T_NEW": "in"}
    with pytest.raises(RuntimeError), runtime.environ_set(values):
        assert os.environ["GAN_SERVE_T_KEPT"] == os.environ["GAN_SERVE_T_NEW"] == "in"
        raise RuntimeError
    assert os.environ["GAN_SERVE_T_KEPT"] == "before" and "GAN_SERVE_T_NEW" not in os.environ
