"""Asking a running sweep's results actor for the live fit, in a child process with one deadline.

    ask(address, sweep, namespace)                     (the CLI's process: no Ray imported)
      └─ python -m orchestrator.tune.live_query ...    (the child: joins Ray, asks the actor, prints JSON)

Why a child: once a driver has joined a Ray whose GCS goes away (the sweep ended a moment after
the query connected), Ray's core worker retries for gcs_rpc_server_reconnect_timeout_s (60 s) and
then ends the whole process from C++, with nothing printed, and a connect that cannot reach its
GCS may stay inside ray.init long after any timeout. In a child, neither can take the command with
it: the parent waits at most QUERY_DEADLINE_S, then stops the child and says why in one line.

The child prints one JSON object on stdout: {"report": ...} or {"error": "not_live" | "lookup",
"message": ...}. The parent raises NotLive (the read commands then show the fit from storage, said
as such) or LookupError (one line, exit 2), and NotLive for a child that died or ran past its deadline.
The address comes from an explicit --address or from a live file already judged by
orchestrator/experiment/live_trust.py. The embedded Ray listens on 127.0.0.1 only; connecting keeps
Ray from rewriting that address to the machine's IP (ray_session.loopback_node_ip).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

from orchestrator.experiment.live_file import NotLive
from orchestrator.tune.ray_session import NAMESPACE, default_token_auth, loopback_node_ip, start_ray, tighten_token_file

CONNECT_TIMEOUT_S = 10.0
#: How long the actor may hold the query for records in flight (results_actor.report's wait_s).
REPORT_WAIT_S = 10.0
#: The whole query, child start (Ray's import, ~2 s) and connect included.
QUERY_DEADLINE_S = 45.0
#: How long a finished child may take to end after its answer (Ray's shutdown) before it is killed.
EXIT_GRACE_S = 5.0


def ask(address: str, sweep: str | None, namespace: str | None = None,
        deadline_s: float = QUERY_DEADLINE_S) -> dict:
    """The live fit from the results actor at `address`, from a child process within `deadline_s`."""
    cmd = [sys.executable, "-m", "orchestrator.tune.live_query", address, sweep or "", namespace or NAMESPACE]
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)  # its own group: Ray's helpers are stopped with it
    answer = _first_line(child, deadline_s)
    _stop(child)
    if answer is None:
        raise NotLive(f"the sweep's Ray at {address} did not answer within {deadline_s:g} s"
                      if child.returncode is None or child.returncode < 0 else
                      f"the query to the sweep's Ray at {address} ended without an answer (exit {child.returncode}; "
                      f"the sweep may have ended meanwhile)")
    if "report" in answer:
        return answer["report"]
    error = LookupError if answer.get("error") == "lookup" else NotLive
    raise error(answer.get("message", "no message"))


def _first_line(child: subprocess.Popen, deadline_s: float) -> dict | None:
    """The child's JSON answer, or None when it printed none within the deadline."""
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(deadline_s)
    if not lines or not lines[0].strip():
        return None
    try:
        answer = json.loads(lines[0])
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _stop(child: subprocess.Popen) -> None:
    """Let the child end on its own for a moment, then stop its whole process group."""
    try:
        child.wait(EXIT_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    child.stdout.close()
    child.stderr.close()


# -- the child ----------------------------------------------------------------------------------
def connect(address: str, namespace: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ray.init(address) with a deadline (in the child: past it, the child answers not_live and
    exits without waiting for the attempt). Without loopback_node_ip, Ray would rewrite 127.0.0.1 to
    the machine's address, which the embedded Ray does not listen on."""
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
        raise NotLive(f"could not reach the sweep's Ray at {address} within {timeout_s:g} s")
    if errors:
        raise NotLive(f"could not reach the sweep's Ray at {address}: {str(errors[0]).splitlines()[0]}")


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def report_from_actor(address: str, sweep: str | None, namespace: str | None = None) -> dict:
    """The live fit from the results actor, joining Ray at `address` (run in the child)."""
    import ray

    from orchestrator.tune import results_actor

    if address == "auto":  # Ray resolves `auto` itself (the newest local cluster); no loopback rewrite to undo
        start_ray(address)
    else:
        connect(address, namespace or NAMESPACE)
    tighten_token_file()  # joining a cluster may have written the token
    try:
        actor = results_actor.find(sweep)
    except ValueError:  # ray.get_actor: no actor of that name here
        raise LookupError(f"no memlaw sweep {sweep!r} on the Ray at {address} (is --sweep right?)") from None
    report = ray.get(actor.report.remote(wait_s=REPORT_WAIT_S), timeout=REPORT_WAIT_S + 15)
    report["source"] = f"live: the results actor on Ray at {address}"
    return report


def _child(address: str, sweep: str, namespace: str) -> None:
    """Answer on stdout, then leave at once (Ray's own shutdown may wait on a vanished GCS)."""
    default_token_auth()  # before Ray is imported
    try:
        answer = {"report": report_from_actor(address, sweep or None, namespace)}
    except NotLive as err:
        answer = {"error": "not_live", "message": str(err)}
    except LookupError as err:
        answer = {"error": "lookup", "message": str(err).strip("'\"")}
    except Exception as err:  # noqa: BLE001 - Ray's errors when the sweep ends mid-query
        answer = {"error": "not_live", "message": f"the query to the sweep's Ray at {address} failed: "
                                                  f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    _child(*sys.argv[1:4])
