"""Where a running sweep's Ray is: the live file another shell reads to ask the live law.

    <experiment>/memlaw_live.json   {"address": "127.0.0.1:PORT", "namespace": "memlaw", "sweep": ...,
                                     "host": ..., "pid": ..., "started_at": ...}

written by the sweep's driver once Ray is up, removed when the run ends (a killed driver leaves it:
its pid is then gone, which `read_live` checks). `memlaw law --experiment DIR --live` reads it and
connects to that address with orchestrator/tune/live_query.py. Reading the file needs no Ray.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

LIVE_FILE = "memlaw_live.json"


class NotLive(RuntimeError):
    """The sweep is not running, or its Ray cannot be reached in time: the message says which."""


def live_path(experiment_uri: str) -> str:
    return os.path.join(experiment_uri, LIVE_FILE)


def write_live(experiment_uri: str, sweep: str, address: str, namespace: str) -> dict[str, Any]:
    """Record how to reach this run (local experiments; an object store has no other shell's view)."""
    info = {"address": address, "namespace": namespace, "sweep": sweep, "host": socket.gethostname(),
            "pid": os.getpid(), "started_at": time.time()}
    if "://" not in experiment_uri:
        from orchestrator.records.storage import Store

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
