"""What a run of an experiment ran on: memlaw's version and commit, Python, every dependency's version,
the machine and the command line. One entry per run in `provenance.json`; exports carry the list. No Ray.

Why: a number in an export is only reproducible with the software and machine that made it. A sweep
and each resume of it may run on another machine or after an upgrade, so each run appends its own
entry (under the experiment's run lock: one writer) rather than overwriting one record:

    [{"kind": "start" | "resume", "started_at", "command", "argv", "memlaw_version", "git_commit",
      "git_dirty", "python", "python_implementation", "python_executable",
      "dependencies": {name: version | null}, "platform", "machine", "host", "cpu", "cpu_count",
      "usable_cpus", "gpus", "gpu_count", "ray_cluster"}, ...]

The GPUs and the Ray cluster come from the caller (orchestrator.tune.run_provenance): reading them
needs torch or Ray, and this package never imports either (`memlaw export` reads the file Ray-free).
An experiment made before memlaw recorded runs has no file: `read_runs` says so, and never fails.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from orchestrator.records.storage import Store

PROVENANCE_FILE = "provenance.json"
#: memlaw's distribution name (pyproject.toml [project] name): its version and requirements.
DISTRIBUTION = "memlaw"
#: Where memlaw's packages sit: a checkout's root when memlaw runs from one (editable install).
CHECKOUT = Path(__file__).resolve().parents[2]
GIT_TIMEOUT_S = 10.0
NONE_RECORDED = "none recorded"


# -- the facts ---------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memlaw_version() -> str | None:
    try:
        return importlib_metadata.version(DISTRIBUTION)
    except importlib_metadata.PackageNotFoundError:
        return None


def dependency_versions() -> dict[str, str | None]:
    """{name: installed version or None} for every requirement memlaw's metadata lists (pyproject.toml's
    dependencies and its extras), read from the installed distribution so the list never drifts from
    pyproject.toml. {} when memlaw is not installed (a bare checkout on sys.path)."""
    try:
        requirements = importlib_metadata.requires(DISTRIBUTION) or []
    except importlib_metadata.PackageNotFoundError:
        return {}
    versions: dict[str, str | None] = {}
    for requirement in requirements:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if name is None or name.group(1) in versions:
            continue
        try:
            versions[name.group(1)] = importlib_metadata.version(name.group(1))
        except importlib_metadata.PackageNotFoundError:
            versions[name.group(1)] = None  # an extra not installed here (s3fs, pytest, ...)
    return versions


def git_state(checkout: Path = CHECKOUT) -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether the work tree differs from it: `git status --porcelain` not empty) when
    memlaw runs from a git checkout, else (None, None). Only the checkout memlaw's packages sit in counts:
    an installed memlaw inside some other repository (a venv in a project) has no commit of its own.
    Never raises: no git, a slow disk or a broken repository give (None, None)."""
    checkout = checkout.resolve()
    try:
        top = _git(checkout, "rev-parse", "--show-toplevel")
        if top is None or Path(top).resolve() != checkout:
            return None, None
        commit, status = _git(checkout, "rev-parse", "HEAD"), _git(checkout, "status", "--porcelain")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None, None
    if commit is None:
        return None, None
    return commit, None if status is None else bool(status)


def _git(folder: Path, *args: str) -> str | None:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    return done.stdout.strip() if done.returncode == 0 else None


def run_facts(kind: str, gpus: list[str] | None = None, ray_cluster: dict[str, Any] | None = None,
              argv: list[str] | None = None) -> dict[str, Any]:
    """One run's entry (see the module doc). `gpus`: the GPU names this process sees (None: not
    looked at); `ray_cluster`: the Ray cluster's resources the trials ran on; `argv`: the command line
    (default: this process's)."""
    argv = list(sys.argv if argv is None else argv)
    commit, dirty = git_state()
    try:
        usable_cpus: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable_cpus = None
    return {
        "kind": kind,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(argv),
        "argv": argv,
        "memlaw_version": memlaw_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "dependencies": dependency_versions(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "gpus": gpus,
        "gpu_count": None if gpus is None else len(gpus),
        "ray_cluster": ray_cluster,
    }


# -- the file ----------------------------------------------------------------------------------------


def read_runs(experiment_uri: str) -> tuple[list[dict[str, Any]], str | None]:
    """(the recorded runs, oldest first; None) or ([], why there are none): an experiment made before
    memlaw recorded runs, or a file that is not a list of runs. Never raises for the file's content."""
    store = Store(experiment_uri)
    try:
        if not store.exists(PROVENANCE_FILE):
            return [], (f"{NONE_RECORDED}: the experiment has no {PROVENANCE_FILE} "
                        "(made before memlaw recorded what each run ran on)")
        runs = json.loads(store.read_bytes(PROVENANCE_FILE))
    except (OSError, ValueError, RecursionError) as err:  # a folder in its place, torn or not JSON
        return [], f"{NONE_RECORDED}: {PROVENANCE_FILE} is unreadable ({str(err)[:200]})"
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        return [], f"{NONE_RECORDED}: {PROVENANCE_FILE} is not a list of runs"
    return runs, None


def record_run(experiment_uri: str, facts: dict[str, Any]) -> None:
    """Append this run's entry to the experiment's provenance.json, atomically (Store.write_bytes). The
    caller holds the experiment's run lock, so no other run appends at the same time. A file that
    cannot be read is kept beside it (provenance.json.unreadable) rather than silently replaced."""
    store = Store(experiment_uri)
    runs, problem = read_runs(experiment_uri)
    if problem is not None and store.exists(PROVENANCE_FILE):
        try:
            store.write_bytes(f"{PROVENANCE_FILE}.unreadable", store.read_bytes(PROVENANCE_FILE))
        except OSError:  # a folder in its place: the write below fails and names it
            pass
    store.write_bytes(PROVENANCE_FILE, (json.dumps([*runs, facts], indent=1, sort_keys=True) + "\n").encode())
