"""memlaw through the Ray Jobs API: a sweep submitted as a job, the live law read by a short job.

    memlaw submit SWEEP_FILE --dashboard URL   -> a job `python -m orchestrator.cli.main sweep sweep.yaml --address
                                                  auto --storage S --name N`: the file as its working_dir,
                                                  this checkout's packages as py_modules
    memlaw law --dashboard URL --sweep NAME    -> a job `memlaw law --address auto --json`, its JSON read back

The Jobs API is the dashboard's HTTP server; the SDK (`ray.job_submission.JobSubmissionClient`)
adds the cluster's bearer token to each request. Every way this can fail becomes one `JobsError`
line that says what to do (unreachable, no job agent yet, 401/403, a job that failed), never a
traceback. Each call has a deadline (`HTTP_TIMEOUT_S`, longer for a submission): the SDK itself
sets none, so a black-holed host or a stuck agent would otherwise hang the command.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import time
from pathlib import Path
from typing import Any

HTTP_TIMEOUT_S = 10.0
SUBMIT_TIMEOUT_S = 30.0  # the job head waits up to 10 s for its agent; the agent then starts the job's supervisor
UPLOAD_TIMEOUT_S = 120.0  # a sweep job uploads the sweep file and this checkout's packages first
LAW_JOB_TIMEOUT_S = 120.0
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
REPO = Path(__file__).resolve().parents[2]


class JobsError(RuntimeError):
    """A Jobs API call that did not work, as one line for the user."""


def dashboard_url_problem(url: str, insecure_http: bool = False) -> str | None:
    """Why memlaw must not send the Ray token to `url`, else None. Pure: no I/O, no DNS.

    The Jobs API client sends the cluster's bearer token with every request, so it may go only
    where nobody can read it on the way: https, or plain http to this machine's loopback (127.0.0.0/8,
    ::1, localhost: the `ray dashboard cluster.yaml` tunnel). Plain http elsewhere needs the
    explicit `insecure_http`. A URL without a scheme is http, as Ray reads it."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = parts.hostname
    except ValueError:  # a malformed [ipv6] part
        return f"--dashboard {url!r}: not a URL"
    if parts.scheme not in ("http", "https"):
        return f"--dashboard {url!r}: the Jobs API is http:// or https://, not {parts.scheme}://"
    if not host:
        return f"--dashboard {url!r}: no host in the URL"
    if parts.scheme == "https" or insecure_http:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only the loopback names are known without asking DNS
        loopback = host.lower() in LOOPBACK_NAMES
    if loopback:
        return None
    return (f"--dashboard {url!r}: memlaw sends the cluster's Ray token with each request, and plain http to "
            f"{host} would show it to anyone on the network. Use https://, or a tunnel to 127.0.0.1 "
            "(`ray dashboard cluster.yaml`), or pass --insecure-http if this network is yours alone")


def explain(err: BaseException, url: str) -> str:
    """One line for a Jobs API failure: what happened at `url` and what to do about it."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    name = type(err).__name__
    if name == "AuthenticationError" or "status code 401" in text or "status code 403" in text:
        if "403" in text or "Invalid" in text or "Forbidden" in text:
            return (f"the dashboard at {url} refused memlaw's Ray token (403): this is not the token of that "
                    "cluster; set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's token")
        answered = text.startswith("Authentication ") or "status code" in text  # the server's 401, not ours
        if not answered and "Ensure that the token for the cluster is available" in str(err):
            why = text.split(". Ensure")[0].rstrip(".")  # raised by the SDK before any request: no token here
            return (f"memlaw has no Ray token to send to the dashboard at {url} ({why}); put the cluster's token in "
                    "~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (on the head: `cat ~/.ray/auth_token`)")
        return (f"the dashboard at {url} asks for a Ray token (401) and memlaw has none: run with "
                "RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN)")
    if "No available agent" in text:
        return (f"the dashboard at {url} has no job agent yet (Ray starts it a few seconds after the head); "
                "try again, and if it persists check the head's dashboard_agent.log")
    if isinstance(err, (ConnectionError, socket.timeout, TimeoutError)) or "Failed to connect" in text \
            or "timed out" in text.lower():
        return f"cannot reach a Ray dashboard at {url} within {HTTP_TIMEOUT_S:g} s ({text})"
    if "Version check returned 404" in text:
        return f"{url} answers, but it is not a Ray dashboard with the Jobs API (404 on /api/version)"
    return f"the Jobs API at {url} failed: {text[:300]}"


def client(url: str, insecure_http: bool = False):
    """A JobSubmissionClient for `url` (it checks the connection and Ray's version at once)."""
    problem = dashboard_url_problem(url, insecure_http)
    if problem:
        raise JobsError(problem)
    from ray.job_submission import JobSubmissionClient

    return _call(url, JobSubmissionClient, url)


def _call(url: str, fn, *args, timeout_s: float = HTTP_TIMEOUT_S, **kwargs):
    """fn(*args, **kwargs) within `timeout_s`, its failure as one JobsError line. The SDK's requests
    carry no timeout (requests passes None to urllib3, which then waits forever), so the call runs
    in a daemon thread, left behind at the deadline (the command exits right after)."""
    import threading

    out: list = []

    def attempt() -> None:
        try:
            out.append((True, fn(*args, **kwargs)))
        except Exception as err:  # noqa: BLE001 - every SDK failure becomes one line
            out.append((False, err))

    thread = threading.Thread(target=attempt, name="memlaw-jobs-api", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not out:
        raise JobsError(f"the Ray dashboard at {url} did not answer within {timeout_s:g} s "
                        f"({getattr(fn, '__name__', 'request')})")
    ok, value = out[0]
    if not ok:
        raise JobsError(explain(value, url)) from None
    return value


def wait_for(c, url: str, job: str, timeout_s: float) -> tuple[str, str]:
    """Wait for `job` to end; (status, logs). Polls every 0.5 s (a law job takes a few seconds)."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout_s
    while True:
        status = _call(url, c.get_job_status, job)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status), _call(url, c.get_job_logs, job)
        if time.monotonic() > deadline:
            raise JobsError(f"job {job} at {url} did not finish within {timeout_s:g} s (status {status})")
        time.sleep(0.5)


def law_job_entrypoint(sweep: str | None) -> str:
    """The shell command of the law job; the sweep name is quoted (it reaches a shell on the cluster)."""
    return "memlaw law --address auto --json" + (f" --sweep {shlex.quote(sweep)}" if sweep else "")


def law_from_dashboard(url: str, sweep: str | None, insecure_http: bool = False) -> dict[str, Any]:
    """The live report through the Jobs API: a short job on the cluster asks the actor and prints JSON."""
    c = client(url, insecure_http)
    job = _call(url, c.submit_job, entrypoint=law_job_entrypoint(sweep), timeout_s=SUBMIT_TIMEOUT_S,
                metadata={"memlaw": "law", "sweep": sweep or ""})
    status, logs = wait_for(c, url, job, LAW_JOB_TIMEOUT_S)
    if status != "SUCCEEDED":
        last = next((line for line in reversed(logs.strip().splitlines()) if line.strip()), "no output")
        raise JobsError(f"the law job {job} {status.lower()} on the cluster: {last[:300]}"
                        + ("  (is memlaw installed on the cluster's PATH?)" if "not found" in logs else ""))
    try:
        return json.loads(logs[logs.index("{"):logs.rindex("}") + 1])["report"]  # `memlaw law --json`
    except (ValueError, KeyError):
        raise JobsError(f"the law job {job} printed no memlaw JSON: {logs.strip()[-300:]}") from None


SWEEP_IN_JOB = "sweep.yaml"
#: The packages a sweep job imports from this checkout (uploaded as py_modules, ahead of any memlaw
#: installed on the cluster, so the job runs the code that validated the file here).
PACKAGES = ("orchestrator", "trainables", "search_spaces")


def sweep_entrypoint(storage: str, name: str) -> str:
    """The sweep job's command, in its working_dir (which holds the sweep file as SWEEP_IN_JOB)."""
    return shlex.join(["python", "-m", "orchestrator.cli.main", "sweep", SWEEP_IN_JOB, "--address", "auto",
                       "--storage", storage, "--name", name])


def submit_sweep(url: str, sweep_file: str, storage: str, name: str, insecure_http: bool = False) -> str:
    """Start `memlaw sweep` as a Ray Job on the cluster behind `url`; the job id.

    runtime_env: working_dir is a folder holding only the sweep file, py_modules this checkout's
    packages (each uploaded once per content hash, Ray's package cache); the cluster's Python
    supplies torch, ray and the rest. Storage and name are passed resolved, so the job runs what
    was validated here. The job's env keeps one tokenizer thread and the classic Tune output."""
    import shutil
    import tempfile

    c = client(url, insecure_http)
    with tempfile.TemporaryDirectory(prefix="memlaw-submit-") as stage:
        shutil.copyfile(sweep_file, os.path.join(stage, SWEEP_IN_JOB))
        runtime_env = {"working_dir": stage, "py_modules": [str(REPO / p) for p in PACKAGES],
                       "excludes": ["__pycache__"],
                       "env_vars": {"TOKENIZERS_PARALLELISM": "false", "RAY_AIR_NEW_OUTPUT": "0"}}
        return _call(url, c.submit_job, entrypoint=sweep_entrypoint(storage, name), runtime_env=runtime_env,
                     timeout_s=SUBMIT_TIMEOUT_S + UPLOAD_TIMEOUT_S,
                     submission_id=f"memlaw-{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                     metadata={"memlaw": "sweep", "sweep": name})
