"""The local Ray instance a gan-serve command starts when it joins no cluster: loopback only,
and gone with the command.

Ray's ports take commands from anyone who reaches them (no authentication unless a cluster turns
on its token mode), so an open port is code execution. Ray binds every server (GCS, raylet,
object manager, core workers, the dashboard and runtime-env agents, the metrics exporter) to the
node's IP address, and turns a node address of 127.0.0.1 into the machine's outside address
unless multi-node clusters are off: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, Ray's own
single-machine mode (its default on macOS and Windows), makes the node address 127.0.0.1 and
so every listener loopback. The variable is read when `ray` is imported, and a driver that
joins a real cluster must not have it; so the local instance runs in a child process of its
own, the supervisor (`python -m gan_serve.scale.local_ray`), and the command joins it at its
loopback address like any cluster.

The supervisor ties Ray's life to the command's. It is a child subreaper (Linux), so every Ray
process it starts, and their orphans, stay its descendants; it reads its stdin, a pipe whose
only writer is the command: "stop" shuts Ray down in order, and end-of-file without it (the
command died: SIGTERM, kill -9, a crash) kills the whole tree at once, so no worker goes on
writing files for a command that is gone. Its own SIGTERM (and, through PDEATHSIG, its parent's
death) does the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import first_line
from ..runtime import environ_set

LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's node address = loopback
START_TIMEOUT_S = 180.0  # Ray's own start takes 5-20 s on a busy 2-core machine
STOP = b"stop\n"
GRACE_S = 3.0  # after an orderly ray.shutdown, before SIGKILL
GIVE_UP_S = 30.0  # after SIGKILL: a process in uninterruptible sleep must not hang the supervisor

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


@dataclass
class LocalRay:
    """The command's handle on its supervisor: the Ray address to join, and how to stop it."""

    process: subprocess.Popen
    address: str  # 127.0.0.1:PORT of the GCS
    env: dict[str, str]  # what a process joining it needs: single-machine mode, the session's token

    def stop(self, timeout_s: float = 60.0) -> None:
        """Shut the instance down (in order) and wait for the supervisor; kill it if it hangs."""
        with contextlib.suppress(OSError):  # it may be gone already
            self.process.stdin.write(STOP)
            self.process.stdin.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):  # its session: itself and what did not leave it
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start(num_cpus: int | None = None, object_store_memory: int | None = None,
          timeout_s: float = START_TIMEOUT_S) -> LocalRay:
    """Start a local Ray instance on loopback under a supervisor; GanServeError if it fails.
    Call it from the thread that outlives the instance (the main thread): the supervisor's
    PDEATHSIG fires when the thread that started it ends."""
    from ..errors import GanServeError

    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this gan_serve
    # Ray's token authentication, with a token of this instance's own: loopback keeps other
    # machines out, the token keeps out other programs on this one
    joining = {**SINGLE_MACHINE_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **joining,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_ADDRESS", None)
    read_fd, write_fd = os.pipe()
    options = json.dumps({"num_cpus": num_cpus, "object_store_memory": object_store_memory,
                          "report_fd": write_fd, "parent": os.getpid()})
    try:
        # its own session: a Ctrl-C on the terminal reaches the command, which stops Ray in order
        proc = subprocess.Popen([sys.executable, "-m", "gan_serve.scale.local_ray", options],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, pass_fds=(write_fd,),
                                start_new_session=True)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as report:
        line = _read_line(report, timeout_s)
    answer = json.loads(line) if line and line.startswith(b"{") else {}
    if "address" not in answer:
        LocalRay(proc, "", {}).stop(timeout_s=10)
        why = answer.get("error") or ("timed out" if line is None else "the supervisor exited")
        raise GanServeError(f"cannot start a local Ray instance: {why}")
    return LocalRay(proc, answer["address"], joining)


@contextmanager
def session(ray: ModuleType, num_cpus: int | None = None,
            object_store_memory: int | None = None) -> Iterator[None]:
    """A new local instance, joined by this process for the with-block, stopped at its end."""
    local = start(num_cpus, object_store_memory)
    try:
        with _joined(ray, local):
            yield
    finally:
        local.stop()


@contextmanager
def single_machine(ray: ModuleType) -> Iterator[None]:
    """Ray's single-machine mode in this process for the with-block, to join an instance whose
    node address is loopback (this module's, or `ray start --node-ip-address 127.0.0.1`): else
    `ray.init` turns 127.0.0.1 into the outside address, where nothing listens, and retries for
    minutes. SINGLE_MACHINE_ENV's variable is read when `ray` is imported: its constant is set."""
    from ..errors import GanServeError

    # Private, on purpose: Ray's public switch is only the variable, read once at import, and
    # this process may have imported ray before (a notebook, a test session, a driver that
    # joined a cluster first); the module constant is what Ray's code reads (Ray 2.60).
    constants = ray._private.ray_constants
    if not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        raise GanServeError(f"Ray {ray.__version__} has no single-machine mode to join an instance "
                            "on 127.0.0.1: give its outside address, or set "
                            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before starting gan-serve")
    saved, constants.ENABLE_RAY_CLUSTER = constants.ENABLE_RAY_CLUSTER, False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


@contextmanager
def _joined(ray: ModuleType, local: LocalRay) -> Iterator[None]:
    """This process on the local instance, with its environment (`local.env`) while joined.
    Where `ray` was imported before, the variables' effects are set as Ray sets them itself
    (single_machine; its config refreshed for token mode, as Ray does when it turns that on)."""
    import logging

    # Private, on purpose: Ray reads RAY_AUTH_MODE into its C++ config once, when ray._raylet
    # loads; refreshing that config is how Ray itself turns token mode on in a process that has
    # it loaded (ray._private.authentication.authentication_token_setup); no public API (2.60).
    from ray._raylet import Config

    from ..errors import GanServeError

    try:
        with environ_set(local.env), single_machine(ray):
            Config.initialize("")
            try:
                ray.init(address=local.address, log_to_driver=False, logging_level=logging.ERROR)
            except ConnectionError as exc:
                raise GanServeError(f"cannot join the local Ray instance at {local.address}: {exc}"
                                    ) from None
            try:
                yield
            finally:
                ray.shutdown()
    finally:
        Config.initialize("")  # after the variables are back


def _read_line(fh, timeout_s: float) -> bytes | None:
    """The supervisor's one report line, or None after timeout_s (Ray hung while starting)."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(fh, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            return None
    return fh.readline()


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc; elsewhere an empty list)."""
    children: dict[int, list[int]] = defaultdict(list)
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and ")"
        except (OSError, IndexError):
            continue  # exited meanwhile
        if fields[0] != b"Z":
            children[int(fields[1])].append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def replica_on_loopback() -> None:
    """In a Ray Serve replica on a loopback node (the local instance): its inter-deployment gRPC
    server on 127.0.0.1 too. Serve binds that server to [::] whatever the node's address (Ray
    2.60, no option), though on such a node nothing from outside may call it; elsewhere (a
    cluster's node) nothing changes. Called before Serve starts that server."""
    import ipaddress

    import ray
    from ray.serve._private import replica

    # Private, on purpose: the replica module's own helper, swapped (no public option sets that
    # bind address). Where it is gone this does nothing, and
    # tests/gan_serve/scale/test_local_ray.py, which checks every port, fails.
    bind = getattr(replica, "add_port_to_grpc_server", None)
    if bind is None or getattr(bind, "loopback", False):  # another Serve, or done already
        return
    if not ipaddress.ip_address(ray.util.get_node_ip_address()).is_loopback:
        return

    def on_loopback(server: object, address: str) -> int:
        return bind(server, address.replace("[::]:", f"{LOOPBACK}:", 1))

    on_loopback.loopback = True
    replica.add_port_to_grpc_server = on_loopback


# -- the supervisor (its own process) ------------------------------------------------------------

def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux: orderly shutdown only
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _kill_tree(first: signal.Signals, grace_s: float) -> None:
    """Signal every descendant with `first`, then SIGKILL what is left after grace_s; reap all."""
    deadline = time.monotonic() + grace_s
    sig = first
    quiet = 0  # scans in a row that found no descendant
    while quiet < 2 and time.monotonic() < deadline + GIVE_UP_S:
        # one scan of /proc is not atomic: a process whose parent dies while it is read can miss
        # the tree for that scan (it is ours again, reparented to this subreaper, by the next)
        kids = descendants(os.getpid())
        quiet = 0 if kids else quiet + 1
        for pid in kids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        time.sleep(0.05)
        _reap()
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
    _reap()


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _serve(options: dict) -> None:
    import logging

    import ray

    # "local": a new instance even where `ray start` runs one (no address would join that one)
    ray.init(address="local", num_cpus=options["num_cpus"],
             object_store_memory=options["object_store_memory"], include_dashboard=False,
             log_to_driver=False, logging_level=logging.ERROR)
    # the context names the machine's outside address, where nothing listens: only the port holds
    address = f"{LOOPBACK}:{ray.get_runtime_context().gcs_address.rpartition(':')[2]}"
    os.write(options["report_fd"], json.dumps({"address": address}).encode() + b"\n")
    os.close(options["report_fd"])
    got = b""
    while chunk := sys.stdin.buffer.read1(64):  # end of file: the command closed it, or died
        got += chunk
    if got.startswith(STOP):
        ray.shutdown()
        _kill_tree(signal.SIGTERM, GRACE_S)
    else:
        _kill_tree(signal.SIGKILL, 0.0)


def main() -> None:
    options = json.loads(sys.argv[1])
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphaned Ray processes become ours, so none escapes
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: (_kill_tree(signal.SIGKILL, 0.0), os._exit(0)))
    if os.getppid() != options["parent"]:  # the command died before PDEATHSIG was set
        os._exit(0)
    try:
        _serve(options)
    except BaseException as exc:  # noqa: BLE001 - reported to the command as its one line
        with contextlib.suppress(OSError):
            why = first_line(exc)
            os.write(options["report_fd"], json.dumps({"error": why}).encode() + b"\n")
        _kill_tree(signal.SIGKILL, 0.0)
    os._exit(0)  # Ray's exit hooks would try to talk to the processes just killed


if __name__ == "__main__":
    main()
