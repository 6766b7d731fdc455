"""Ray heads that a test starts and stops itself, and the sockets Ray's processes listen on.

Other agents and test runs share this machine, so nothing here runs `ray stop` (it stops every Ray
on the machine). A head runs as `ray start --head --block`: its processes (and the fake autoscaler's
nodes) stay its descendants, and stopping it means SIGTERM to that one command, then SIGKILL to any
descendant still alive. Every port is chosen free, never Ray's fixed defaults (6379, 8265, 10001,
52365), which another run may hold.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Head:
    """A `ray start --head --block` of our own; `address` is its GCS address."""

    proc: subprocess.Popen
    address: str
    dashboard_port: int | None
    log: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        """The head command and every descendant alive now (remembered for `stop`)."""
        try:
            root = psutil.Process(self.proc.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            found = []
        for p in found:
            self.seen.setdefault(p.pid, p)
        return found

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the head command (it stops its own processes), then SIGKILL whatever is left."""
        self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        alive = [p for p in self.seen.values() if p.is_running()]
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)


def start_head(tmp: Path, env: dict[str, str], *, num_cpus: float = 1, dashboard: bool = False,
               extra: tuple[str, ...] = (), port: int | None = None, timeout: float = 90.0) -> Head:
    """Start a head on ports chosen free (GCS on `port` if given); wait until Ray says it runs.

    A `ray start` that exits before its runtime is up is tried once more on fresh ports, saying why:
    the ports are chosen free before Ray binds them, and a fresh-clone CI once saw the raylet fail to
    register in Ray's own 30 s (2026-12-06), where the same test passed alone in 7 s. A head that is
    still starting when `timeout` ends is not retried: that is a failure."""
    try:
        return _start_head(tmp, env, num_cpus=num_cpus, dashboard=dashboard, extra=extra, port=port, timeout=timeout)
    except HeadExited as first:
        print(f"[ray_heads] ray start --head exited before its runtime was up; once more on fresh ports:\n"
              f"{str(first)[-1500:]}", flush=True)
        return _start_head(tmp, env, num_cpus=num_cpus, dashboard=dashboard, extra=extra, port=port,
                           timeout=timeout)


class HeadExited(AssertionError):
    """`ray start --head` ended before printing that its runtime started."""


def _start_head(tmp: Path, env: dict[str, str], *, num_cpus: float, dashboard: bool, extra: tuple[str, ...],
                port: int | None, timeout: float) -> Head:
    port, dash = port or free_port(), free_port() if dashboard else None
    args = [RAY, "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
            "--object-store-memory=100000000", f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--include-dashboard={str(dashboard).lower()}", *extra]
    if dashboard:
        args += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dash}"]
    log = tmp / f"ray-head-{port}.log"
    # Ray 2.60 drains a node on SIGTERM for up to 30 s, until it is idle; a detached results actor keeps
    # it busy, so every stop would wait the full 30 s. A test's head has no traffic to drain.
    env = {**env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    head = Head(proc, "", dash, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Ray runtime started" in text:
            head.address = _gcs_address(head, port)
            head.processes()
            return head
        if proc.poll() is not None:
            head.stop()
            raise HeadExited(f"ray start --head exited ({proc.returncode}) before it was up:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    head.stop()
    raise AssertionError(f"ray start --head did not come up in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _gcs_address(head: Head, port: int) -> str:
    """The address the head advertises (Ray may have turned 127.0.0.1 into the machine's IP)."""
    for p in head.processes():
        for arg in _cmdline(p):
            if arg.startswith("--gcs-address=") and arg.endswith(f":{port}"):
                return arg.split("=", 1)[1]
    return f"{socket.gethostbyname(socket.gethostname())}:{port}"


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


# -- sockets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Listener:
    """One listening TCP socket (or bound UDP socket) of a process."""

    process: str
    proto: str
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        addr = ipaddress.ip_address(self.ip.split("%")[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return addr.is_loopback


def process_label(p: psutil.Process) -> str:
    """A short stable name: `ray::X`, or the script/binary a Python or native process runs."""
    args = _cmdline(p)
    if args and args[0].startswith("ray::"):
        return args[0].split()[0]
    for arg in args:
        base = os.path.basename(arg)
        if base.endswith(".py") or base in ("gcs_server", "raylet"):
            return base
    try:
        return p.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # it ended while we looked (nodes scaling down)
        return ""


def listeners(processes: list[psutil.Process]) -> set[Listener]:
    """Every listening TCP socket and every unconnected bound UDP socket of these processes."""
    found = set()
    for p in processes:
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for c in conns:
            tcp = c.type == socket.SOCK_STREAM
            if (tcp and c.status == psutil.CONN_LISTEN) or (not tcp and not c.raddr):
                found.add(Listener(process_label(p), "tcp" if tcp else "udp", c.laddr.ip, c.laddr.port))
    return found


def raylets(head: Head) -> list[psutil.Process]:
    """The raylet of every node the head started (the fake autoscaler's nodes are its descendants)."""
    return [p for p in head.processes() if process_label(p) == "raylet"]


def node_type(raylet: psutil.Process) -> str | None:
    """The autoscaler node type a fake node was launched as (RAY_NODE_TYPE_NAME); None for the head."""
    try:
        return raylet.environ().get("RAY_NODE_TYPE_NAME")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants alive now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
