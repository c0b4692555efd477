"""`gan-serve bulk` on a local Ray instance (2 CPUs): the files and bytes of `generate
--individual`, a killed job that resumes, workers that must agree with the driver.

Ray starts once (conftest.py). The byte-for-byte test runs the torch checkpoint (what `auto`
picks for it here); the others run its ONNX export, whose actors start without importing torch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gan_serve
from gan_serve import outputs as out
from gan_serve.commands.cli import app
from gan_serve.errors import GanServeError
from gan_serve.scale.ray_bulk import ModelArgs, identity, run_bulk

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


def _single(model: Path, folder: Path) -> dict[str, bytes]:
    """The single-process run: `generate --individual` of seeds 5..44."""
    r = CliRunner().invoke(app, ["generate", "-m", str(model), "--seed", "5", "--n", "40",
                                 "--psi", "0.8", "--individual", str(folder)])
    assert r.exit_code == 0, r.output
    return _files(folder)


@pytest.fixture(scope="module")
def single(onnx_model, tmp_path_factory) -> dict[str, bytes]:
    return _single(onnx_model, tmp_path_factory.mktemp("single") / "files")


def _bulk(model, folder, *extra: str):
    return CliRunner().invoke(app, ["bulk", "-m", str(model), "--seed", "5", "--n", "40",
                                    "--psi", "0.8", "--individual", str(folder), "--workers", "2",
                                    "--range-size", "8", *extra])


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_bulk_writes_the_single_process_files_byte_for_byte(small_ckpt, tmp_path):
    single = _single(small_ckpt, tmp_path / "single")
    r = _bulk(small_ckpt, tmp_path / "bulk")
    assert r.exit_code == 0, r.output
    assert "wrote 40 files" in r.output and "(0 were already complete) on 2 Ray workers" in r.output
    assert _files(tmp_path / "bulk") == single  # same names, same bytes (provenance included)
    assert sorted(single)[:2] == [out.seed_filename(5, "png"), out.seed_filename(6, "png")]


def test_a_rerun_skips_complete_files_and_removes_stale_temps(onnx_model, single, tmp_path):
    folder = tmp_path / "bulk"
    assert _bulk(onnx_model, folder).exit_code == 0
    for s in (7, 30, 44):
        (folder / out.seed_filename(s, "png")).unlink()
    stale = folder / f".{out.seed_filename(7, 'png')}.gs{2**22 + 7}-abcd1234.tmp"  # a dead writer's
    stale.write_bytes(b"half a png")
    kept = folder / out.seed_filename(20, "png")
    before = kept.stat().st_mtime_ns
    r = _bulk(onnx_model, folder)
    assert r.exit_code == 0, r.output
    assert "wrote 3 files" in r.output and "(37 were already complete)" in r.output
    assert kept.stat().st_mtime_ns == before  # not rewritten
    assert not stale.exists()
    assert _files(folder) == single


def test_a_killed_job_resumes_to_the_same_files(onnx_model, single, tmp_path):
    G = gan_serve.load(onnx_model)
    args = ModelArgs(str(onnx_model)).pinned_to(G)
    folder = tmp_path / "bulk"
    folder.mkdir()

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C on the driver after the first range: actors are killed

    with pytest.raises(KeyboardInterrupt):
        run_bulk(args, identity(G), range(5, 45), folder, 0.8, "png", workers=2, range_size=4,
                 progress=interrupt)
    first = {name for name in _files(folder) if not name.startswith(".")}
    assert 4 <= len(first) < 40
    _wait_for_writers_to_exit(folder)  # ray.kill returns before the processes are gone
    steps: list[int] = []
    result = run_bulk(args, identity(G), range(5, 45), folder, 0.8, "png", workers=2, range_size=4,
                      progress=steps.append)
    assert result.written + result.skipped == 40 and result.skipped >= len(first)
    assert len(steps) == 10 and sum(steps) == 40  # one progress step per range, skipped ones included
    assert _files(folder) == single  # temp files of the killed writers are gone too


def _wait_for_writers_to_exit(folder: Path, timeout_s: float = 30.0, quiet_s: float = 2.0) -> None:
    """Until no live process has written a temp file for `quiet_s` (a killed writer may still be
    finishing an image when this starts, and make its next temp file after a first look)."""
    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        pids = {int(p.name.rsplit(".gs", 1)[1].split("-")[0]) for p in folder.glob(".*.tmp")}
        if any(_alive(pid) for pid in pids):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_with_another_model_stops_the_job_before_writing(onnx_model, tmp_path):
    G = gan_serve.load(onnx_model)
    args = ModelArgs(str(onnx_model)).pinned_to(G)
    other = (G.model_id.replace("@sha256:", "@sha256:0"), G.backend, G.runner.micro_batch)
    with pytest.raises(GanServeError, match="every node needs the same model file"):
        run_bulk(args, other, range(8), tmp_path, 1.0, "png", workers=1)
    assert os.listdir(tmp_path) == []


def test_a_worker_error_comes_back_as_itself(tmp_path, onnx_model):
    G = gan_serve.load(onnx_model)
    args = ModelArgs(str(tmp_path / "gone.onnx"))  # the driver's file, missing on the worker
    with pytest.raises(GanServeError, match="no such file"):
        run_bulk(args, identity(G), range(8), tmp_path, 1.0, "png", workers=1)


class _Dies:
    def now(self) -> None:
        os._exit(1)  # as a node that goes away takes its workers with it


def test_a_lost_worker_is_one_line_that_says_how_to_resume(local_ray):
    from gan_serve.scale.ray_bulk import _get

    doomed = local_ray.remote(_Dies).options(num_cpus=0).remote()
    with pytest.raises(GanServeError, match="run the same command again to resume"):
        _get(local_ray, doomed.now.remote())
