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


class LiveRefused(LookupError):
    """The live file is damaged, or names a place memlaw will not send the Ray token to
    (orchestrator/experiment/live_trust.py). A LookupError, so the read commands' one-line, exit-2
    path takes it; it is never a reason to fall back to storage in silence."""


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


#: What a live file holds, with the type of each field (anything else: the file is damaged).
FIELDS = {"address": str, "namespace": str, "sweep": str, "host": str, "pid": int}


def read_live(experiment_uri: str) -> dict[str, Any]:
    """The running sweep's record; NotLive when there is none or its driver is gone, LiveRefused
    (orchestrator/experiment/live_trust.py) when the file is damaged."""
    path = live_path(experiment_uri)
    try:
        with open(path, "rb") as fh:
            info = json.loads(fh.read(64 * 1024))
    except FileNotFoundError:
        raise NotLive(f"the sweep is not running (no {LIVE_FILE} in {experiment_uri})") from None
    except (OSError, ValueError, RecursionError) as err:  # a folder, a torn or binary file
        reason = getattr(err, "strerror", None) or str(err)
        raise LiveRefused(f"{path} is damaged ({reason[:200]}): delete it if no sweep runs there") from None
    wrong = [k for k, kind in FIELDS.items() if not isinstance(info, dict) or not isinstance(info.get(k), kind)
             or isinstance(info.get(k), bool)]
    if wrong:
        raise LiveRefused(f"{path} is damaged (missing or mistyped: {', '.join(wrong)}): delete it if no sweep "
                          f"runs there")
    if info["host"] == socket.gethostname() and not _alive(info["pid"]):
        raise NotLive(f"the sweep is not running (its driver, pid {info['pid']}, has ended)")
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
