"""`gan-serve serve --workers N`: one port, N processes, metrics summed over all of them, a dead
worker replaced in its slot, and devices mapped to workers."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from export import export_onnx, prepare
from gan_serve.commands.cli import app
from gan_serve.http import workers
from gan_serve.http.settings import ServeSettings
from tests.gan_serve.http.conftest import ServeProcess, cli_file


def scrape(url: str) -> tuple[str, dict[str, float]]:
    """(the worker that answered, {sample line without its value: value})."""
    r = httpx2.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200
    samples = dict(line.rsplit(" ", 1) for line in r.text.splitlines() if line and line[0] != "#")
    return r.headers["x-worker"], {k: float(v) for k, v in samples.items()}


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes under `parent` (not multiprocessing's resource tracker)."""
    children = [int(pid) for task in Path(f"/proc/{parent}/task").iterdir()
                for pid in (task / "children").read_text().split()]
    return [pid for pid in children
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.fixture(scope="module")
def small_onnx(G, tmp_path_factory) -> Path:
    """The small checkpoint as ONNX: workers that import no torch start in a fraction of the time."""
    path = tmp_path_factory.mktemp("onnx") / "g.onnx"
    export_onnx(prepare(G), path)
    return path


def test_two_workers_share_the_port_and_one_set_of_metrics(small_onnx, tmp_path):
    server = ServeProcess("--model", str(small_onnx), "--workers", "2", "--max-n", "16",
                          env={"TMPDIR": str(tmp_path)})
    try:
        want = cli_file(small_onnx, tmp_path, "generate", "--seed", "42", "--n", "4")

        def generate(_: int) -> httpx2.Response:  # a new connection each: any worker may accept it
            return httpx2.post(f"{server.url}/generate", json={"seed": 42, "n": 4}, timeout=30)

        answered: dict[str, bytes] = {}
        sent = 0
        with ThreadPoolExecutor(4) as pool:
            deadline = time.monotonic() + 120  # the second worker may still be loading
            while len(answered) < 2 and time.monotonic() < deadline:
                for r in pool.map(generate, range(8)):
                    assert r.status_code == 200, r.text
                    answered[r.headers["x-worker"]] = r.content
                sent += 8
        assert sorted(answered) == ["0", "1"], f"one worker answered all {sent} requests"
        assert all(body == want for body in answered.values())  # the CLI's bytes from each worker

        scrapes: dict[str, dict[str, float]] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until each worker has answered a scrape
            worker, samples = scrape(server.url)
            scrapes[worker] = samples
            if len(scrapes) == 2:
                break
        assert len(scrapes) == 2
        for samples in scrapes.values():
            assert samples['gan_serve_requests_total{route="/generate",status="200"}'] == sent
            assert samples['gan_serve_images_generated_total{model="g"}'] == 4 * sent
            assert samples['gan_serve_request_seconds_count{route="/generate",status="200"}'] == sent
            assert samples['gan_serve_queue_depth{model="g"}'] == 0
            assert not any(k.startswith("process_") for k in samples)  # per process: left out
        assert [p.name for p in tmp_path.glob("gan-serve-workers-*")]  # the shared directory

        os.kill(worker_pids(server.proc.pid)[0], signal.SIGKILL)  # uvicorn starts a replacement
        again: set[str] = set()
        deadline = time.monotonic() + 120  # the replacement takes the dead worker's slot
        while time.monotonic() < deadline:  # and both answer again
            r = generate(0)
            assert r.status_code == 200 and r.content == want
            sent += 1
            again.add(r.headers["x-worker"])
            if len(again) == 2:
                break
        assert again == {"0", "1"}
        # a dead worker's counts still count
        assert scrape(server.url)[1]['gan_serve_requests_total{route="/generate",status="200"}'] == sent
    finally:
        server.stop(timeout=30)
    assert server.proc.returncode == 0, server.output
    assert "with 2 workers on cpu" in server.output
    assert not list(tmp_path.glob("gan-serve-workers-*")), "the metrics directory outlived the server"


@pytest.mark.parametrize("args,match", [
    (["--workers", "0"], "workers: Input should be greater than or equal to 1"),
    (["--device", "cuda:0,cuda:1"], "2 devices need at least as many workers (--workers 2)"),
    (["--device", "gpu:1"], "unknown device 'gpu:1'"),
    (["--device", "cuda:9"], "--device cuda:9 was asked for, but torch sees "),
    (["--workers", "2", "--device", "cpu,cuda:9"], "--device cuda:9 was asked for, but the CUDA driver"),
    (["--workers", "2", "--api-key-env", "SURELY_UNSET_GAN_KEY"], "SURELY_UNSET_GAN_KEY"),
])
def test_bad_worker_and_device_settings(args, match, small_ckpt, monkeypatch):
    import torch

    if torch.cuda.device_count() > 9:
        pytest.skip("this machine has GPUs these indices name")
    monkeypatch.delenv("SURELY_UNSET_GAN_KEY", raising=False)
    res = CliRunner().invoke(app, ["serve", "-m", str(small_ckpt), *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.stderr


def test_worker_i_runs_on_device_i_mod_the_list():
    settings = ServeSettings(device="cuda:0, cuda:1", workers=5)
    assert [workers.device_of(settings, i) for i in range(5)] == ["cuda:0", "cuda:1"] * 2 + ["cuda:0"]
    assert workers.device_of(ServeSettings(workers=3), 2) == "cpu"


def test_slots_are_claimed_lowest_first_and_freed_with_their_holder(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "_held", [])
    assert [workers.claim_slot(tmp_path, 3) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="all 3 worker slots"):
        workers.claim_slot(tmp_path, 3)
    os.close(workers._held[1])  # what the OS does when worker 1 dies
    assert workers.claim_slot(tmp_path, 3) == 1  # its replacement takes its slot (and device)
    for fd in workers._held[:1] + workers._held[2:]:
        os.close(fd)


def test_dead_workers_leave_the_live_gauges(tmp_path):
    dead, alive = tmp_path / "gauge_livesum_999999999.db", tmp_path / f"gauge_livesum_{os.getpid()}.db"
    kept = tmp_path / "counter_999999999.db"  # a dead worker's counts still count
    for f in (dead, alive, kept):
        f.write_bytes(b"")
    workers.forget_dead_workers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, kept.name])


def test_one_worker_keeps_its_process_metrics_and_no_worker_header(client):
    assert "x-worker" not in client.get("/models").headers
    text = client.get("/metrics").text
    assert re.search(r"^process_resident_memory_bytes ", text, re.M)
    assert re.search(r'^gan_serve_request_seconds_count\{route="/models",status="200"\} 1.0$', text, re.M)
