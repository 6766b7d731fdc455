"""A disk that fills during a sweep is named once and resumes cleanly (issue 24, item 3).

A real tmpfs (mounted for the test, loopback of nothing: a private mount point under tmp_path)
holds the experiment. Once two records are journaled the test fills it to the last byte, so the
journal, Tune's checkpoint uploads and Tune's state all hit ENOSPC at once. The sweep must stop
with one message naming the cause and exit 3, journal no trial as failed, and, with the space
freed, `memlaw resume` must finish every trial exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, memlaw_cmd, require_root
from orchestrator.records.journal import RecordLog
from orchestrator.records.trial_record import FAILURES

TRIAL = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 1},
         "data": {"kind": "random", "target_tokens": 32}, "budget": {"preset": "cpu", "steps": 300},
         "eval": {"every": 100}}


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "16m"):
    require_root("mounting a tmpfs")
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros until the file system is full; the file, to free the space again."""
    ballast = folder / "ballast.bin"
    with open(ballast, "wb") as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    return ballast


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_disk_that_fills_mid_sweep_stops_it_once_and_resume_finishes_it(tmp_path, request):
    from conftest import print_figure

    with tmpfs(tmp_path / "disk") as disk:
        sweep = tmp_path / "full.yaml"
        sweep.write_text(yaml.safe_dump({"name": "full", "trial": TRIAL, "space": "law_grid_smoke",
                                         "resources": {"cpu": 1}, "max_concurrency": 2, "checkpoint_every": 1,
                                         "storage_path": str(disk)}))
        experiment, journal = disk / "full", disk / "full" / "memlaw" / "journal"
        log = tmp_path / "sweep.log"
        proc = subprocess.Popen(memlaw_cmd("sweep", str(sweep)), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=log.open("w"))
        deadline = time.monotonic() + 300
        while not (journal.is_dir() and len(list(journal.glob("*.json"))) >= 2):  # progress, not the clock
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        ballast = fill(disk)
        assert proc.wait(timeout=300) == 3, log.read_text()[-3000:]
        stderr = log.read_text()
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "the experiment's storage failed" in errors[0], errors
        assert "no space left on the device (ENOSPC)" in errors[0] and f"memlaw resume {experiment}" in errors[0]
        assert stderr.count("stopping the sweep") == 1 and "re-sending" not in stderr  # named once, no flood
        assert "EOFError" not in stderr and stderr.strip().splitlines()[-1] == errors[0]  # the run's last word
        before = RecordLog.for_experiment(str(experiment)).all()
        assert not [r for r in before if r.status in FAILURES], [(r.trial_id, r.status) for r in before]

        ballast.unlink()  # the space is back
        resumed = subprocess.run(memlaw_cmd("resume", str(experiment)), cwd=REPO, capture_output=True, text=True,
                                 timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        after = RecordLog.for_experiment(str(experiment)).all()
        law = json.loads(subprocess.run(memlaw_cmd("law", "--experiment", str(experiment), "--json"), cwd=REPO,
                                        capture_output=True, text=True, timeout=120).stdout)
    assert law["trials_accepted"] == 6 and law["report"]["trials_ok"] == 6 and law["trials_failed"] == {}
    ok = [r for r in after if r.ok]
    assert len(ok) == len({r.trial_id for r in ok}) == len({r.config_hash for r in ok}) == 6
    print_figure(request, f"full disk: stopped with {len(before)} records ({sum(r.ok for r in before)} ok, "
                          f"{sum(r.status == 'stopped' for r in before)} stopped, 0 failed), exit 3, one error line; "
                          f"after freeing the space, resume: 6 of 6 ok, each once")


def test_the_storage_cause_is_found_under_wrappers_and_in_a_trace():
    import errno

    from orchestrator.records.storage_failure import cause_in_text, storage_cause

    full = OSError(errno.ENOSPC, "No space left on device", "/exp/memlaw/journal/0000000002.json")

    class TaskError(Exception):  # how Ray hands a remote call's exception over: `cause`
        def __init__(self, cause):
            super().__init__("ray::ResultsActor.add() failed")
            self.cause = cause

    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("while journaling") from inner
    except RuntimeError as outer:
        wrapped = TaskError(outer)
    failure = storage_cause(wrapped)
    assert (failure.errno, failure.path, failure.code) == (errno.ENOSPC, full.filename, "ENOSPC")
    assert storage_cause(OSError(errno.ENOENT, "No such file")) is None and storage_cause(ValueError("x")) is None
    trace = "Traceback ...\nOSError: [Errno 30] Read-only file system: '/exp/trial/checkpoint_000003'\n"
    assert cause_in_text(trace).text() == ("the experiment's storage failed writing /exp/trial/checkpoint_000003: "
                                           "the file system is read-only (EROFS)")
    assert cause_in_text("OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space").errno == 28
    assert cause_in_text("TrialDiverged: loss is nan at step 40") is None


def test_the_space_reserve_holds_real_blocks_and_releases_them(tmp_path):
    from orchestrator.records.storage_failure import Reserve

    reserve = Reserve(str(tmp_path / "memlaw"), size=1 << 20)
    assert reserve.hold()
    assert os.stat(reserve.path).st_blocks * 512 >= 1 << 20  # allocated, not sparse
    reserve.release()
    assert not os.path.exists(reserve.path)
    reserve.release()  # twice is harmless


def test_resume_on_read_only_storage_is_one_line_before_ray(tmp_path, capsys):
    """Issue 24, item 10: it was a traceback from the lock file."""
    import shutil

    from orchestrator.cli import main as cli
    from test_structure import finished_experiment

    uri = finished_experiment(tmp_path / "src")
    with tmpfs(tmp_path / "ro", size="8m") as disk:
        shutil.copytree(uri, disk / "law")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert cli.main(["resume", str(disk / "law")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot resume: cannot write the experiment folder {disk / 'law'}: Read-only file system "
                   "(a writable local folder or an s3://, gs:// URI)\n")


def test_only_the_experiments_storage_stops_a_sweep(tmp_path):
    """A permission error reading a model folder elsewhere is that trial's error, not a full disk;
    an error under the experiment, or one that names no path (Tune's checkpoint upload), is storage."""
    from orchestrator.records.storage_failure import cause_in_text
    from orchestrator.tune.callbacks import StorageWatch

    StorageWatch.arm(None, str(tmp_path / "exp"))
    try:
        elsewhere = cause_in_text("PermissionError: [Errno 13] Permission denied: '/models/llama/config.json'")
        inside = cause_in_text(f"OSError: [Errno 28] No space left on device: '{tmp_path}/exp/memlaw/journal/x'")
        unnamed = cause_in_text("OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space")
        assert not StorageWatch.concerns(elsewhere) and StorageWatch.concerns(inside) and StorageWatch.concerns(unnamed)
        assert not StorageWatch.concerns(None)
    finally:
        StorageWatch.arm(None)
