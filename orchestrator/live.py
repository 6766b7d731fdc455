"""How another shell reaches a running sweep: the sweep records where its Ray is, a query connects.

    <experiment>/memlaw_live.json   {"address": "127.0.0.1:PORT", "namespace": "memlaw", "sweep": ...,
                                     "host": ..., "pid": ..., "started_at": ...}

written by the sweep's driver once Ray is up, removed when the run ends (a killed driver leaves it:
its pid is then gone, which `running` checks). `memlaw law --experiment DIR --live` reads it and
connects to that address (the embedded Ray listens on 127.0.0.1 only; connecting keeps Ray from
rewriting the address to the machine's IP, see ray_session.loopback_node_ip) within
CONNECT_TIMEOUT_S, so a query never hangs. Reading the file needs no Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from typing import Any

LIVE_FILE = "memlaw_live.json"
CONNECT_TIMEOUT_S = 10.0
_STUCK: list[threading.Thread] = []  # connect attempts past their deadline, still inside ray.init


class NotLive(RuntimeError):
    """The sweep is not running, or its Ray cannot be reached in time: the message says which."""


def live_path(experiment_uri: str) -> str:
    return os.path.join(experiment_uri, LIVE_FILE)


def write_live(experiment_uri: str, sweep: str, address: str, namespace: str) -> dict[str, Any]:
    """Record how to reach this run (local experiments; an object store has no other shell's view)."""
    info = {"address": address, "namespace": namespace, "sweep": sweep, "host": socket.gethostname(),
            "pid": os.getpid(), "started_at": time.time()}
    if "://" not in experiment_uri:
        from orchestrator.storage import Store

        Store(experiment_uri).write_json(LIVE_FILE, info)
    return info


def clear_live(experiment_uri: str) -> None:
    if "://" not in experiment_uri:
        try:
            os.remove(live_path(experiment_uri))
        except FileNotFoundError:
            pass


def read_live(experiment_uri: str) -> dict[str, Any]:
    """The running sweep's record; NotLive when there is none or its driver is gone."""
    try:
        with open(live_path(experiment_uri), encoding="utf-8") as fh:
            info = json.load(fh)
    except FileNotFoundError:
        raise NotLive(f"the sweep is not running (no {LIVE_FILE} in {experiment_uri})") from None
    except (OSError, ValueError) as err:
        raise NotLive(f"{live_path(experiment_uri)} cannot be read ({err})") from None
    if info.get("host") == socket.gethostname() and not _alive(info.get("pid")):
        raise NotLive(f"the sweep is not running (its driver, pid {info.get('pid')}, has ended)")
    return info


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connect(address: str, namespace: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ray.init(address) with a deadline. Ray retries a GCS it cannot reach for a long time (and,
    without loopback_node_ip, rewrites 127.0.0.1 to the machine's address, which the embedded Ray
    does not listen on): past the deadline this raises NotLive, and the stuck attempt is left to a
    daemon thread, so the caller should exit rather than use Ray afterwards."""
    from orchestrator.ray_session import default_token_auth, loopback_node_ip

    default_token_auth()
    import ray

    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            with loopback_node_ip() if _is_loopback(address) else contextlib.nullcontext():
                ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level="ERROR")
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            errors.append(err)

    thread = threading.Thread(target=attempt, name="memlaw-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        _STUCK.append(thread)
        raise NotLive(f"could not reach the sweep's Ray at {address} within {timeout_s:g} s")
    if errors:
        raise NotLive(f"could not reach the sweep's Ray at {address}: {str(errors[0]).splitlines()[0]}")


def stuck_connect() -> bool:
    """Whether a connect attempt timed out and is still running (the process should then os._exit)."""
    return any(t.is_alive() for t in _STUCK)


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")
