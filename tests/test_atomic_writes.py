"""Atomic writes under SIGKILL (issue 7, R6): a file memlaw owns is its old version or its new one.

For each writer (a journal entry: RecordLog.add; the snapshot: RecordLog.snapshot; a trial's
result.json: trainables.memorize.write_json_atomic; an export: orchestrator.experiment.export.export to
Parquet), a child Python process writes in a loop, alternating two distinguishable versions of a
few hundred KB, and is killed with SIGKILL after a random delay; 200 kills per writer. After each
kill every file left in the folder is checked: the target is absent (only before its first
complete write) or exactly one of the two versions, and fully readable (JSON parses, Parquet
reads, RecordLog reloads with exactly the expected trial ids). Temp files (".tmp-*" from
orchestrator.records.storage.Store, ".NAME.tmp" from write_json_atomic) may be left behind, torn; they
must never be read as data, so RecordLog reloads with them present.

How 200 kills stay fast: a "zygote" child process imports everything once, then forks one writer
per kill on request (`fork` takes milliseconds, a fresh interpreter with pandas and torch takes
seconds). The test kills the forked writer by pid and the zygote reaps it. The writers' code lives
in this file (`zygote_main`, `WRITERS`): the zygote imports this module.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import print_figure

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KILLS = 200
#: The kill comes at a random moment in [0, delay]: about the first two or three writes of each writer
#: (measured on 2 cores: journal entry 9 ms, snapshot 10 ms, result.json 23 ms, export 19 ms + setup).
MAX_DELAY_S = {"journal": 0.030, "snapshot": 0.030, "result": 0.060, "export": 0.060}
SEED = 7
WRITER_LIFETIME_S = 20.0  # a writer that outlives its test (a crashed test) stops by itself

ENTRY = re.compile(r"[0-9]{10}\.json")  # a journal entry's name (orchestrator.records.journal)

pytestmark = pytest.mark.slow


# -- the two versions of every file ----------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def blob(variant: str, size: int) -> str:
    """Incompressible text, different per variant: a torn mix of two versions cannot pass for one."""
    rng = random.Random(variant)
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=size))


def record(trial_id: str, variant: str, size: int = 300_000):
    """A failed-trial record whose error text carries the bulk (a long traceback, say)."""
    from orchestrator.records.trial_record import TrialRecord

    return TrialRecord(trial_id=trial_id, sweep="atomic", status="error",
                       config={"model": {"name": "tiny-s"}, "adapter": {"rank": 4}, "variant": variant},
                       metrics={"loss_final": 1.5}, seed=1, error=f"<{variant}:{trial_id}>" + blob(variant, size))


SNAPSHOT_IDS = tuple(f"s{i:03d}" for i in range(20))  # 20 records x 20 KB: a 400 KB snapshot
JOURNAL_BEFORE_SNAPSHOT = SNAPSHOT_IDS[:3]  # journal entries that the first snapshot folds in
EXPORT_IDS = tuple(f"e{i:02d}" for i in range(6))  # 6 records x 60 KB: a 360 KB Parquet file


@functools.lru_cache(maxsize=None)
def snapshot_version(variant: str) -> tuple:
    return tuple(record(t, variant, 20_000) for t in SNAPSHOT_IDS)


@functools.lru_cache(maxsize=None)
def result_version(variant: str) -> dict:
    """A result.json of ~400 KB: final metrics and a per-sequence list. Read-only (cached)."""
    text = blob(variant, 250_000)
    return {"variant": variant, "final_loss": 0.5 if variant == "A" else 0.25,
            "sequences": [{"index": i, "certified": i % 3 == 0, "text": text[i * 100:(i + 1) * 100]}
                          for i in range(2500)]}


@functools.lru_cache(maxsize=None)
def export_version(variant: str) -> list:
    return [record(t, variant, 60_000) for t in EXPORT_IDS]


# -- the writers: each loops forever in a forked child ---------------------------------------------
def write_journal(folder: Path, n: int) -> None:
    from orchestrator.records.journal import RecordLog
    from orchestrator.records.storage import Store

    log = RecordLog(Store(str(folder)), snapshot_every=10**9)
    k = n
    while True:  # one new entry per call; the variant alternates and is part of the trial id
        variant = "AB"[k % 2]
        log.add(record(f"j{os.getpid()}-{k}-{variant}", variant))
        k += 1


def write_snapshot(folder: Path, n: int) -> None:
    from orchestrator.records.journal import RecordLog
    from orchestrator.records.storage import Store

    log = RecordLog(Store(str(folder)), snapshot_every=10**9)
    versions = {v: {r.trial_id: r for r in snapshot_version(v)} for v in "AB"}
    k = n
    while True:
        log.records = dict(versions["AB"[k % 2]])  # the accepted set, as if records had arrived
        log.snapshot()
        k += 1


def write_result(folder: Path, n: int) -> None:
    from trainables.memorize import write_json_atomic

    versions = {v: result_version(v) for v in "AB"}
    k = n
    while True:
        write_json_atomic(folder / "result.json", versions["AB"[k % 2]])
        k += 1


def write_export(folder: Path, n: int) -> None:
    from orchestrator.experiment.export import export

    k = n
    while True:  # the same out file from two experiments, in turn
        export(str(folder.parent / f"experiment-{'AB'[k % 2]}"), str(folder / "results.parquet"))
        k += 1


WRITERS = {"journal": write_journal, "snapshot": write_snapshot, "result": write_result, "export": write_export}


def zygote_main(writer: str, folder: str) -> None:
    """Import once, then on each "fork" line start a writer and print its pid; "reap" waits for it."""
    import threading
    import traceback

    target = WRITERS[writer]
    # Everything a writer needs before its first write, done once here so that forked writers start
    # writing at once: imports (torch for write_json_atomic, pyarrow for exports) and both versions.
    if writer == "result":
        import trainables.memorize  # noqa: F401

        result_version("A"), result_version("B")
    elif writer == "export":
        import pyarrow.parquet  # noqa: F401

        import orchestrator.experiment.export  # noqa: F401
    elif writer == "snapshot":
        import orchestrator.records.journal  # noqa: F401

        snapshot_version("A"), snapshot_version("B")
    else:
        import orchestrator.records.journal  # noqa: F401

        blob("A", 300_000), blob("B", 300_000)
    print("ready", flush=True)
    pid, n = None, 0
    for line in sys.stdin:
        if line.strip() == "fork":
            n += 1
            pid = os.fork()
            if pid == 0:  # the writer: loop until killed (or, as a safety net, until its lifetime ends)
                threading.Timer(WRITER_LIFETIME_S, lambda: os._exit(3)).start()
                try:
                    target(Path(folder), n)  # writer n starts with version "AB"[n % 2]
                except BaseException:
                    traceback.print_exc()  # the test then says the writer ended by itself
                finally:
                    os._exit(4)
            print(pid, flush=True)
        elif line.strip() == "reap":
            _, status = os.waitpid(pid, 0)
            print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status), flush=True)


# -- checking what a kill left behind -------------------------------------------------------------
def is_temp(name: str, target: str | None = None) -> bool:
    return name.startswith(".tmp-") or (target is not None and name == f".{target}.tmp")


class Check:
    """Tallies for one writer: what was found after each kill."""

    def __init__(self, writer: str):
        self.writer = writer
        self.kills = 0
        self.files = 0
        self.temps = 0
        self.torn: list[str] = []
        self.seen: Counter = Counter()
        self.written = False  # a complete target was seen: from then on it must always be there
        self.reloads_with_temps = 0

    def torn_file(self, what: str) -> None:
        self.torn.append(f"kill {self.kills}: {what}")

    def target(self, present: bool, version: str | None, name: str) -> None:
        """`version`: "A", "B", or None for present but neither (torn)."""
        self.files += present
        if not present:
            if self.written:
                self.torn_file(f"{name} vanished after a complete write")
            self.seen["absent"] += 1
        elif version is None:
            self.torn_file(f"{name} is neither version")
        else:
            self.written = True
            self.seen[version] += 1

    def line(self) -> str:
        seen = ", ".join(f"{k} {v}" for k, v in sorted(self.seen.items()))
        reloads = f", {self.reloads_with_temps} RecordLog reloads beside temp files" if self.reloads_with_temps else ""
        return (f"atomic writes [{self.writer}]: {self.kills} kills, {self.files} files checked ({seen}), "
                f"{self.temps} stray temp files ignored{reloads}, {len(self.torn)} torn files")


def sweep_temps(folder: Path, check: Check, target: str | None = None) -> None:
    """Count the temp files a kill left, then remove them (they are garbage, never data)."""
    for path in folder.iterdir():
        if path.is_file() and is_temp(path.name, target):
            check.temps += 1
            path.unlink()


def unexpected(folder: Path, allowed: set[str], target: str | None = None) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name not in allowed and not is_temp(p.name, target)]


def check_journal(folder: Path, check: Check) -> None:
    from orchestrator.records.journal import JOURNAL, RecordLog
    from orchestrator.records.trial_record import TrialRecord
    from orchestrator.records.storage import Store

    journal = folder / JOURNAL
    if not journal.is_dir():  # killed before the RecordLog made its folder
        return
    entries = sorted(p for p in journal.iterdir() if not is_temp(p.name))
    for name in unexpected(folder, {JOURNAL}) + [p.name for p in entries if not ENTRY.fullmatch(p.name)]:
        check.torn_file(f"unexpected file {name}")
    ids = []
    for path in entries:
        try:
            rec = TrialRecord.from_json(path.read_bytes())
            variant = rec.trial_id.rsplit("-", 1)[1]
            ok = rec == record(rec.trial_id, variant)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            check.torn_file(f"journal/{path.name}: {type(err).__name__}: {err}")
            continue
        check.target(True, variant if ok else None, f"journal/{path.name}")
        ids.append(rec.trial_id)
    # Reload with the kill's temp files still there, plus one planted torn copy of an entry for certain.
    if entries:
        (journal / ".tmp-planted").write_bytes(entries[-1].read_bytes()[:1000])
    check.reloads_with_temps += any(is_temp(p.name) for p in journal.iterdir())
    reloaded = RecordLog(Store(str(folder)), snapshot_every=10**9)
    if sorted(r.trial_id for r in reloaded.all()) != sorted(ids):
        check.torn_file(f"reload found {len(reloaded.all())} records for {len(entries)} entries")
    (journal / ".tmp-planted").unlink(missing_ok=True)
    sweep_temps(journal, check)
    for path in entries:  # checked: make room for the next writer (it starts again at entry 0)
        path.unlink()


def check_snapshot(folder: Path, check: Check) -> None:
    from orchestrator.records.journal import JOURNAL, SNAPSHOT, RecordLog
    from orchestrator.records.storage import Store

    for name in unexpected(folder, {SNAPSHOT, JOURNAL}):
        check.torn_file(f"unexpected file {name}")
    path = folder / SNAPSHOT
    version = None
    if path.exists():
        try:
            snap = json.loads(path.read_bytes())
            variants = {r["config"]["variant"] for r in snap["records"]}
            if len(variants) == 1 and snap["through_seq"] == len(JOURNAL_BEFORE_SNAPSHOT) - 1:
                (version,) = variants
                want = [r.to_dict() for r in snapshot_version(version)]
                version = version if snap["records"] == want else None
        except (ValueError, KeyError, TypeError) as err:
            check.torn_file(f"{SNAPSHOT}: {type(err).__name__}: {err}")
            return
    check.target(path.exists(), version, SNAPSHOT)
    # The journal entries the snapshot folds in may be half deleted: the reload must count each once.
    had_temps = any(is_temp(p.name) for p in folder.iterdir())
    reloaded = RecordLog(Store(str(folder)), snapshot_every=10**9)
    ids = sorted(r.trial_id for r in reloaded.all())
    want_ids = sorted(SNAPSHOT_IDS if path.exists() else JOURNAL_BEFORE_SNAPSHOT)
    variants = {r.config["variant"] for r in reloaded.all()}
    if ids != want_ids or variants != ({version} if path.exists() else {"J"}):
        check.torn_file(f"reload: {len(ids)} records of variants {sorted(variants)}")
    sweep_temps(folder, check)
    sweep_temps(folder / JOURNAL, check)
    check.reloads_with_temps += had_temps


def check_result(folder: Path, check: Check) -> None:
    for name in unexpected(folder, {"result.json"}, "result.json"):
        check.torn_file(f"unexpected file {name}")
    path = folder / "result.json"
    version = None
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            version = data.get("variant") if data == result_version(data.get("variant")) else None
        except (ValueError, TypeError, AttributeError) as err:
            check.torn_file(f"result.json: {type(err).__name__}: {err}")
            return
    check.target(path.exists(), version, "result.json")
    sweep_temps(folder, check, "result.json")


def check_export(folder: Path, check: Check) -> None:
    from orchestrator.experiment.export import export_metadata, read_export

    for name in unexpected(folder, {"results.parquet"}):
        check.torn_file(f"unexpected file {name}")
    path = folder / "results.parquet"
    version = None
    if path.exists():
        try:
            records = read_export(str(path))
            source = export_metadata(str(path))["experiment"]
            version = source[-1]
            version = version if records == export_version(version) else None
        except Exception as err:  # noqa: BLE001  (pyarrow raises its own types for a torn file)
            check.torn_file(f"results.parquet: {type(err).__name__}: {err}")
            return
    check.target(path.exists(), version, "results.parquet")
    sweep_temps(folder, check)


def prepare(writer: str, root: Path) -> Path:
    """The folder a writer writes into, with what must be there before it starts."""
    from orchestrator.records.journal import RecordLog
    from orchestrator.records.storage import Store

    folder = root / writer
    if writer == "snapshot":  # journal entries that the first snapshot covers (variant "J")
        log = RecordLog(Store(str(folder)), snapshot_every=10**9)
        for t in JOURNAL_BEFORE_SNAPSHOT:
            log.add(record(t, "J", 20_000))
    if writer == "export":
        for v in "AB":
            log = RecordLog.for_experiment(str(root / "export" / f"experiment-{v}"), snapshot_every=10**9)
            for r in export_version(v):
                log.add(r)
        folder = root / "export" / "out"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


CHECKS = {"journal": check_journal, "snapshot": check_snapshot, "result": check_result, "export": check_export}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_sigkill_never_leaves_a_torn_file(writer, tmp_path, request):
    folder = prepare(writer, tmp_path)
    check = Check(writer)
    rng = random.Random(f"{SEED}-{writer}")
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_atomic_writes as t; t.zygote_main(*sys.argv[1:])"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    zygote = subprocess.Popen([sys.executable, "-c", code, writer, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    t0 = time.monotonic()
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for _ in range(KILLS):
            zygote.stdin.write("fork\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(rng.uniform(0.0, MAX_DELAY_S[writer]))
            os.kill(pid, signal.SIGKILL)
            zygote.stdin.write("reap\n")
            zygote.stdin.flush()
            died = int(zygote.stdout.readline())
            assert died == signal.SIGKILL, f"the writer ended by itself (status {died}) before the kill"
            check.kills += 1
            CHECKS[writer](folder, check)
            if check.torn:  # the next writer would trip over the torn file: report it now
                break
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    elapsed = time.monotonic() - t0
    print_figure(request, f"{check.line()}; {elapsed:.1f} s")
    assert not check.torn, "\n".join(check.torn[:10])
    assert check.kills == KILLS
    assert check.seen["A"] and check.seen["B"], f"the kills never let both versions land: {dict(check.seen)}"



def test_an_object_store_experiment_is_held_by_a_lease_that_a_second_run_respects_and_an_expired_one_yields():
    """README: on an object store (no flock) a run holds its experiment with a lease object that names
    the run and expires unless renewed; a second run is refused while it lives, a killed run's expired
    lease is taken over, and the lease is gone when the run ends. fsspec's memory:// store, in process."""
    import uuid

    from orchestrator.experiment.folder import LEASE_FILE, ExperimentBusy, exclusive_run, in_use
    from orchestrator.records.storage import Store

    uri = f"memory://memlaw-lease-{uuid.uuid4().hex}/exp"
    store = Store(uri)
    assert not in_use(uri)
    with exclusive_run(uri) as holder:
        lease = store.read_json(LEASE_FILE)
        assert lease["run_id"] == holder["run_id"] and lease["expires_at"] > time.time() and in_use(uri)
        with pytest.raises(ExperimentBusy, match="in use by another memlaw run"):
            with exclusive_run(uri):
                pass
    assert not store.exists(LEASE_FILE) and not in_use(uri)
    store.write_json(LEASE_FILE, {"run_id": "killed", "host": "h", "pid": 1, "expires_at": time.time() - 1})
    assert not in_use(uri)  # a killed run's lease has expired
    with exclusive_run(uri) as holder:
        assert store.read_json(LEASE_FILE)["run_id"] == holder["run_id"]  # taken over
