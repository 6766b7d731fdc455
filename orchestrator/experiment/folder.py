"""An experiment folder: its names, and the sweep saved in it. No Ray.

    <storage_path>/<name>/
      memlaw_sweep.json      the validated sweep that runs here (what `memlaw resume` continues)
      provenance.json        what each run (the start, every resume) ran on (orchestrator/experiment/provenance.py)
      memlaw/                the records journal, snapshot and fit (orchestrator/records/journal.py)
      optuna.journal         the Optuna study of an optuna sweep (optuna_storage; optuna-dashboard opens it)
      <trial folders>        Tune's, each with memlaw_trial/ (config, evals, result.json, adapter)

`open_experiment(path)` is what the read-only commands (law, export, plot) and `memlaw resume` use:
it reads the saved sweep through the one validating constructor, SweepConfig.from_dict, and never
creates anything at `path`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

from orchestrator.config.sweep import SweepConfig
from orchestrator.records.journal import Damage, DamagedFile
from orchestrator.records.storage import Store, split_uri
from trainables.schema import ConfigError, Problem

VALIDATION = "validation"  # the held-out validation phase's folder under the experiment (orchestrator/tune/validation_phase.py)
VALIDATION_PLAN_FILE = "plan.json"
VALIDATION_SUMMARY_FILE = "validation.json"


def validation_uri(experiment_uri: str) -> str:
    return f"{experiment_uri.rstrip('/')}/{VALIDATION}" if "://" in experiment_uri else os.path.join(
        experiment_uri, VALIDATION)


def read_validation_summary(experiment_uri: str) -> dict | None:
    """The validation phase's summary; None while it has not ended or when its file is damaged
    (validation_summary says which)."""
    return validation_summary(experiment_uri)[0]


def validation_summary(experiment_uri: str) -> tuple[dict | None, list[Damage]]:
    """(the summary or None, the damage that kept it out). A file that is not a summary memlaw wrote
    (torn, binary, `[]`, `{}`, a folder in its place) is reported as damage, never shown as a result."""
    folder = Store(validation_uri(experiment_uri))
    name = f"{VALIDATION}/{VALIDATION_SUMMARY_FILE}"
    if folder.is_local and os.path.isdir(folder.path(VALIDATION_SUMMARY_FILE)):
        return None, [Damage(name, "validation", "a folder, not the validation's summary: left out")]
    if not folder.exists(VALIDATION_SUMMARY_FILE):
        return None, []
    try:
        summary = parse_validation_summary(folder.read_bytes(VALIDATION_SUMMARY_FILE))
    except (OSError, DamagedFile) as err:
        return None, [Damage(name, "validation", f"{getattr(err, 'strerror', None) or err}: left out")]
    return summary, []


#: A validation summary's fields and their types (orchestrator/search/validation_plan.py writes them).
SUMMARY_FIELDS = {"seeds": list, "metrics": list, "primary": dict, "arms": list, "verdict": dict}


def parse_validation_plan(data: bytes) -> dict:
    """A saved validation plan (arms, seeds); DamagedFile when the file is torn or not one."""
    try:
        plan = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise DamagedFile(f"truncated or not JSON ({str(err)[:200]})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("arms"), list) or not isinstance(plan.get("seeds"), list):
        raise DamagedFile("not a validation plan (no arms or seeds)")
    return plan


def parse_validation_summary(data: bytes) -> dict:
    try:
        summary = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise DamagedFile(f"truncated or not JSON ({str(err)[:200]})") from None
    wrong = [k for k, kind in SUMMARY_FIELDS.items() if not isinstance(summary, dict)
             or not isinstance(summary.get(k), kind)]
    if not wrong and not all(isinstance(a, dict) and isinstance(a.get("label"), str)
                             and isinstance(a.get("stats"), dict) for a in summary["arms"]):
        wrong = ["arms"]
    if wrong:
        what = f"a JSON {type(summary).__name__}" if not isinstance(summary, dict) else "an object"
        raise DamagedFile(f"not a validation summary ({what}; missing or mistyped: {', '.join(wrong)})")
    return summary

SWEEP_FILE = "memlaw_sweep.json"
OPTUNA_FILE = "optuna.journal"  # an optuna sweep's study; optuna-dashboard opens it


def optuna_storage(experiment_uri: str, create: bool = False):
    """The Optuna journal storage of an experiment (`create`: make the folder first, for a new sweep)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if create:
        os.makedirs(experiment_uri, exist_ok=True)
    return JournalStorage(JournalFileBackend(os.path.join(experiment_uri, OPTUNA_FILE)))


@dataclass(frozen=True)
class Experiment:
    """A sweep and the folder its results live in."""

    uri: str
    sweep: SweepConfig

    @classmethod
    def of(cls, sweep: SweepConfig) -> Experiment:
        return cls(sweep.experiment_uri, sweep)

    def save_sweep(self) -> None:
        Store(self.uri).write_json(SWEEP_FILE, self.sweep.to_dict())


def open_experiment(path: str) -> Experiment:
    """The experiment at `path`, its saved sweep fully validated; ConfigError when there is none."""
    store = Store(path)
    if not store.exists(SWEEP_FILE):
        raise ConfigError([Problem("", f"{path}: not a memlaw experiment (no {SWEEP_FILE})")])
    try:
        sweep = SweepConfig.from_saved(store.read_json(SWEEP_FILE))
    except ValueError as err:  # ConfigError, or JSON that does not parse
        problems = err.problems if isinstance(err, ConfigError) else [Problem("", str(err))]
        raise ConfigError([Problem(f"{SWEEP_FILE}: {p.field}" if p.field else SWEEP_FILE, p.message)
                           for p in problems]) from None
    return Experiment(_normalized(path), sweep)


def _normalized(path: str) -> str:
    """The experiment where it is now (a moved or copied folder resumes in place)."""
    scheme, root = split_uri(path)
    return root if scheme is None else path.rstrip("/")


# -- one run at a time ---------------------------------------------------------------------------------
LOCK_FILE = "memlaw.lock"  # local disk and NFS: an exclusive flock, released by the kernel if the run dies
LEASE_FILE = "memlaw.lease"  # object stores: a lease with a run id and an expiry, renewed while the run lives
LEASE_TTL_S = 120.0


class ExperimentBusy(RuntimeError):
    """Another run holds the experiment; the message names it (host, pid, start time)."""


def _holder_text(holder: dict) -> str:
    started = holder.get("started_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {when}"


def _holder() -> dict:
    return {"run_id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}


@contextlib.contextmanager
def exclusive_run(uri: str) -> Iterator[dict]:
    """Hold the experiment at `uri` for this run; ExperimentBusy at once if another run holds it.

    Local paths: flock(2) on `memlaw.lock` (the kernel drops it when the holder dies, so a killed
    run leaves no stale lock; Linux NFS clients map it onto NFS byte-range locks). URIs: a lease
    object that names its run and expires LEASE_TTL_S after its last renewal; an expired lease
    (a killed run) is taken over."""
    scheme, root = split_uri(uri)
    holder = _holder()
    with (_flock(root, holder) if scheme is None else _lease(uri, holder)):
        yield holder


def in_use(uri: str) -> bool:
    """Whether a run holds the experiment at `uri` now (its flock, or an unexpired lease); a folder
    that is gone is held by nobody."""
    scheme, root = split_uri(uri)
    if scheme is not None:
        store = Store(uri)
        lease = store.read_json(LEASE_FILE) if store.exists(LEASE_FILE) else None
        return bool(lease and lease.get("expires_at", 0) > time.time())
    import fcntl

    try:
        fd = os.open(os.path.join(root, LOCK_FILE), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


@contextlib.contextmanager
def _flock(root: str, holder: dict) -> Iterator[None]:
    import fcntl

    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExperimentBusy(f"{root} is in use by another memlaw run ({_holder_text(_read_holder(fd))}); "
                                 "wait for it to end, or pick another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


@contextlib.contextmanager
def _lease(uri: str, holder: dict) -> Iterator[None]:
    store = Store(uri)
    current = store.read_json(LEASE_FILE) if store.exists(LEASE_FILE) else None
    if current and current.get("expires_at", 0) > time.time():
        raise ExperimentBusy(f"{uri} is in use by another memlaw run ({_holder_text(current)}, lease until "
                             f"{time.strftime('%H:%M:%S', time.localtime(current['expires_at']))})")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_TTL_S / 3):
            store.write_json(LEASE_FILE, {**holder, "expires_at": time.time() + LEASE_TTL_S})

    store.write_json(LEASE_FILE, {**holder, "expires_at": time.time() + LEASE_TTL_S})
    if store.read_json(LEASE_FILE).get("run_id") != holder["run_id"]:  # another run wrote in between
        raise ExperimentBusy(f"{uri} was taken by another memlaw run at the same moment")
    thread = threading.Thread(target=renew, name="memlaw-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        if store.exists(LEASE_FILE) and store.read_json(LEASE_FILE).get("run_id") == holder["run_id"]:
            store.delete(LEASE_FILE)


def exists(uri: str) -> bool:
    """Whether an experiment was started at `uri` (its sweep was saved). Creates nothing."""
    scheme, root = split_uri(uri)
    if scheme is None:
        return os.path.isfile(os.path.join(root, SWEEP_FILE))
    import fsspec

    return fsspec.filesystem(scheme).exists(f"{root.rstrip('/')}/{SWEEP_FILE}")


def enclosing_experiment(uri: str) -> str | None:
    """The experiment folder that `uri` lies inside (its validation phase, a trial folder, any
    folder below it), or None. A sweep there would mix its files and records into that experiment."""
    if "://" in uri:
        return None
    path = os.path.dirname(os.path.abspath(uri))
    while True:
        if os.path.isfile(os.path.join(path, SWEEP_FILE)):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def free_name(sweep: SweepConfig) -> SweepConfig:
    """The same sweep under the first name `<name>-2`, `<name>-3`, ... with no experiment yet (--new)."""
    for n in range(2, 10000):
        candidate = dataclasses.replace(sweep, name=f"{sweep.name}-{n}")
        if not exists(candidate.experiment_uri):
            return candidate
    raise ExperimentBusy(f"no free name for {sweep.name}-N under {sweep.storage_path}")


def changed_fields(saved: SweepConfig, sweep: SweepConfig) -> list[str]:
    """Dotted fields in which `sweep` differs from the experiment's saved sweep."""
    from orchestrator.records.trial_record import flatten

    old, new = flatten(saved.to_dict()), flatten(sweep.to_dict())
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
