"""Joining a running sweep's Ray to ask its results actor, with a deadline.

The address comes from the experiment's live file (orchestrator/experiment/live_file.py) or
--address. The embedded Ray listens on 127.0.0.1 only; connecting keeps Ray from rewriting the
address to the machine's IP (ray_session.loopback_node_ip), within CONNECT_TIMEOUT_S, so a query
never hangs.
"""

from __future__ import annotations

import contextlib
import threading

from orchestrator.experiment.live_file import NotLive
from orchestrator.tune.ray_session import NAMESPACE, default_token_auth, loopback_node_ip, start_ray, tighten_token_file

CONNECT_TIMEOUT_S = 10.0
_STUCK: list[threading.Thread] = []  # connect attempts past their deadline, still inside ray.init


def connect(address: str, namespace: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ray.init(address) with a deadline. Ray retries a GCS it cannot reach for a long time (and,
    without loopback_node_ip, rewrites 127.0.0.1 to the machine's address, which the embedded Ray
    does not listen on): past the deadline this raises NotLive, and the stuck attempt is left to a
    daemon thread, so the caller should exit rather than use Ray afterwards."""
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


def report_from_actor(address: str, sweep: str | None, namespace: str | None = None) -> dict:
    """The live fit from the results actor, joining Ray at `address` within CONNECT_TIMEOUT_S."""
    default_token_auth()  # before Ray is imported (results_actor imports it)
    import ray

    from orchestrator.tune import results_actor

    if address == "auto":  # Ray resolves `auto` itself (the newest local cluster); no loopback rewrite to undo
        start_ray(address)
    else:
        connect(address, namespace or NAMESPACE)
    tighten_token_file()  # joining a cluster may have written the token
    report = ray.get(results_actor.find(sweep).report.remote(wait_s=10.0), timeout=60)
    report["source"] = f"live: the results actor on Ray at {address}"
    return report
