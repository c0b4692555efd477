"""The local Ray a command starts: every port of its whole process tree on loopback, a token
of its own required, and the whole tree gone, with no file written after, once its driver is
gone (SIGTERM, kill -9, or the end of the command).

Each test runs a driver of its own (ray_driver.py) in a process it can inspect and kill; the
listening sockets come from /proc (Linux).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from gan_serve.scale.local_ray import descendants
from tests.gan_serve.http.conftest import free_port

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")]
ROOT = Path(__file__).parents[3]


def _driver(tmp_path: Path, *args: str) -> subprocess.Popen:
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "tests.gan_serve.scale.ray_driver", *args],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "driver.log", "wb"), text=True)


def _wait_ready(proc: subprocess.Popen, tmp_path: Path) -> None:
    line = proc.stdout.readline()  # the driver prints nothing else; it exits on any failure
    assert line.strip() == "ready", (tmp_path / "driver.log").read_text()[-3000:]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pids: list[int], timeout_s: float = 60.0) -> float:
    """Seconds until none of `pids` lives (a zombie is gone: it runs nothing and holds no port)."""
    start = time.monotonic()
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() - start < timeout_s:
        time.sleep(0.1)
    assert not left, f"still running {timeout_s:.0f} s after the driver: {[_name(p) for p in left]}"
    return time.monotonic() - start


def _name(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return str(pid)
    return f"{pid} {cmdline[:100].decode(errors='replace')}"


def _ip(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net's address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def _bound_sockets(pid: int) -> dict[int, tuple[str, object, int]]:
    """inode -> (protocol, address, port) of every TCP socket listening and every unconnected
    UDP socket in `pid`'s network namespace: what takes connections or datagrams from others."""
    table = {}
    for proto, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            rows = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == state:
                host, port = f[1].split(":")
                table[int(f[9])] = (proto, _ip(host), int(port, 16))
    return table


def listening(pids: list[int]) -> list[tuple[str, str, object, int]]:
    """(process, protocol, address, port) of every socket of `pids` that others can reach."""
    found = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:  # exited meanwhile (a link that vanished between the two calls, too)
            continue
        inodes = {int(link[8:-1]) for link in links if link.startswith("socket:[")}
        table = _bound_sockets(pid)
        found += [(_name(pid), *table[i]) for i in sorted(inodes & table.keys())]
    return found


def _loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket's IPv4 loopback
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def test_every_port_of_the_local_ray_is_on_loopback_and_wants_its_token(onnx_model, tmp_path):
    port = free_port()
    proc = _driver(tmp_path, "serve", str(onnx_model), str(tmp_path), str(port))
    tree = []
    try:
        _wait_ready(proc, tmp_path)
        tree = [proc.pid, *descendants(proc.pid)]
        sockets = listening(tree)
        assert httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=60).json()["ready"] is True
        _an_intruder_cannot_join([s for s in sockets if "gcs_server" in s[0]])
    finally:
        proc.stdin.close()
        proc.wait(180)
    # the driver, its supervisor, GCS, raylet, both agents, the bulk worker, Serve's controller,
    # proxy and replica: each listens somewhere, and Serve's proxy on the port it was given
    assert len({s[0] for s in sockets}) >= 8, sockets
    assert any(s[3] == port for s in sockets), sockets
    assert 9000 not in {s[3] for s in sockets}  # Serve's gRPC proxy (its default port) is off
    assert [s for s in sockets if not _loopback(s[2])] == []
    assert proc.returncode == 0
    _wait_gone(tree)  # the command ended: its Ray with it


def _an_intruder_cannot_join(gcs: list) -> None:
    """Another program on this machine, aiming at the GCS's loopback port, without the run's
    token: Ray refuses it (the local instance runs Ray's token mode with a token of its own)."""
    assert len(gcs) == 1, gcs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray would aim at the outside address
    code = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print('joined')"
    r = subprocess.run([sys.executable, "-c", code, f"127.0.0.1:{gcs[0][3]}"], env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode != 0 and "joined" not in r.stdout
    assert "Authentication token is missing or incorrect" in r.stderr, r.stderr[-2000:]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_the_local_ray_dies_with_its_driver_and_writes_nothing_after(sig, onnx_model, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    proc = _driver(tmp_path, "write", str(onnx_model), str(folder))
    _wait_ready(proc, tmp_path)
    tree = descendants(proc.pid)
    assert len(tree) >= 6, [_name(p) for p in tree]  # supervisor, GCS, raylet, agents, 2 writers
    assert any(_name(p).split(" ", 1)[1].startswith("ray::RangeWriter") for p in tree)
    proc.send_signal(sig)
    proc.wait(30)
    _wait_gone(tree)
    written = _files(folder)
    assert any(name.startswith("seed") for name in written)
    time.sleep(3)  # a writer that escaped would have finished a range of 2 images by now
    assert _files(folder) == written


def test_a_local_ray_that_cannot_start_is_one_line_and_leaves_nothing():
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    from gan_serve.errors import GanServeError
    from gan_serve.scale import local_ray

    before = set(descendants(os.getpid()))
    with pytest.raises(GanServeError, match="cannot start a local Ray instance: .*object store") as exc:
        local_ray.start(num_cpus=1, object_store_memory=1)  # below Ray's minimum
    assert "\n" not in str(exc.value)
    assert set(descendants(os.getpid())) == before  # the supervisor is gone, and started nothing
