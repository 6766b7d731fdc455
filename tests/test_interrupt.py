"""Experiments that never lie (issue 14): Ctrl-C and resume, ASHA's stops, two runs at once, reuse of
an existing experiment, a copied experiment resumed in place. Real sweeps through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, memlaw_cmd
from orchestrator.records.journal import RecordLog
from trainables import metric_names as K

STEPS = 1500
TRIAL = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 1},
         "data": {"kind": "random", "target_tokens": 32}, "budget": {"preset": "cpu", "steps": STEPS},
         "eval": {"every": 100}}


def write_sweep(tmp_path: Path, name: str = "drill", **fields) -> Path:
    sweep = {"name": name, "trial": TRIAL, "space": "law_grid_smoke", "search": {"kind": "grid"},
             "resources": {"cpu": 1}, "max_concurrency": 2, "storage_path": str(tmp_path / "runs"),
             "checkpoint_every": 1, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def start(*args: str, log: Path) -> subprocess.Popen:
    """The CLI in its own process group, as a terminal runs it (Ctrl-C reaches the whole group)."""
    return subprocess.Popen(memlaw_cmd(*args), cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def journal(experiment: Path) -> list[dict]:
    folder = experiment / "memlaw" / "journal"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def interrupt_when(proc: subprocess.Popen, experiment: Path, entries: int, timeout: float = 400) -> None:
    """Ctrl-C once `entries` records are journaled and a trial without a record has checkpointed
    (progress, not the clock: the drill means the same on a slow laptop and a GPU node)."""
    deadline = time.monotonic() + timeout
    while not (len(journal(experiment)) >= entries and in_flight_with_checkpoint(experiment)):
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        assert time.monotonic() < deadline, "no records journaled and no trial in flight in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=300)


def in_flight_with_checkpoint(experiment: Path) -> bool:
    """A trial folder with a checkpoint whose trial has no record yet: a trial under way."""
    recorded = {r["trial_id"] for r in journal(experiment)}
    for folder in experiment.glob("memorize_*"):  # memorize_<trial id>_<counter>_<params>_<date>
        done = any(folder.name.startswith(f"memorize_{trial_id}_") for trial_id in recorded)
        if not done and any(folder.glob("checkpoint_*")):
            return True
    return False


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(memlaw_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_ctrl_c_then_resume_every_fitted_trial_spent_its_budget_and_a_copy_resumes_in_place(tmp_path, request):
    from conftest import print_figure

    sweep_file = write_sweep(tmp_path)
    experiment = tmp_path / "runs" / "drill"
    proc = start("sweep", str(sweep_file), log=tmp_path / "first.log")
    interrupt_when(proc, experiment, entries=2)
    said = (tmp_path / "first.log").read_text()
    assert proc.returncode == 130, said[-3000:]  # an interrupted sweep never exits like a finished one
    assert "memlaw: interrupted (Ctrl-C): " in said and "The sweep is not complete" in said, said[-3000:]
    assert f"memlaw resume {experiment}" in said
    first = journal(experiment)
    stopped = [r for r in first if r["status"] == "stopped"]
    assert all(r["metrics"].get(K.STEP, 0) == STEPS for r in first if r["status"] == "ok"), first
    assert stopped, f"no trial was cut short: {[(r['trial_id'], r['status']) for r in first]}"
    assert all(r["metrics"].get(K.STEP, 0) < STEPS and not r["metrics"].get(K.FINISHED) for r in stopped)

    refuses_a_damaged_tune_state(tmp_path, experiment)
    copy = tmp_path / "elsewhere" / "drill"
    shutil.copytree(experiment, copy)
    before = sorted(str(p.relative_to(experiment)) for p in experiment.rglob("*"))
    done = run("resume", str(copy))
    assert done.returncode == 0, done.stderr[-3000:]
    after = sorted(str(p.relative_to(experiment)) for p in experiment.rglob("*"))
    assert after == before, sorted(set(after) ^ set(before))  # the original untouched: not one file or folder
    records = RecordLog.for_experiment(str(copy)).all()
    assert len(records) == 6 and all(r.ok for r in records), [(r.trial_id, r.status) for r in records]
    assert all(r.metrics[K.STEP] == STEPS and r.metrics[K.FINISHED] for r in records)
    resumed = {r["trial_id"] for r in stopped}
    assert resumed <= {r.trial_id for r in records}
    histories = sorted(copy.glob("*/memlaw_trial/evals.jsonl"))  # issue 24 item 7: whole after a resume
    assert len(histories) == 6
    for history in histories:
        steps = [json.loads(line)[K.STEP] for line in history.read_text().splitlines()]
        assert steps == list(range(100, STEPS + 1, 100)), (history, steps)
    # issue 25 item 2: the resume prints memlaw's lines, never Tune's boxed tables or its reporter warning
    assert "╭" not in done.stdout and "│" not in done.stdout and "Trial status" not in done.stdout, done.stdout[-3000:]
    assert "ignoring passed-in ProgressReporter" not in done.stdout + done.stderr
    again = run("resume", str(copy), "--verbose")  # finished: answered before Ray starts (--verbose: Ray would say so)
    assert again.returncode == 0 and again.stdout.startswith("memlaw resume: nothing to resume: all 6 trials"), again
    assert "Started a local Ray" not in again.stderr
    law = json.loads(run("law", "--experiment", str(copy), "--json").stdout)
    assert law["trials_accepted"] == 6 and law["report"]["trials_ok"] == 6
    print_figure(request, f"Ctrl-C drill: the resume printed {len(done.stdout.splitlines())} lines on stdout; "
                          f"{len(first)} records at the interrupt, {len(stopped)} stopped "
                          f"(steps {[r['metrics'].get(K.STEP) for r in stopped]} of {STEPS}); after resume of a "
                          f"copy: 6 ok, every one at {STEPS} steps; the original folder unchanged")


def refuses_a_damaged_tune_state(tmp_path: Path, experiment: Path) -> None:
    """Issue 24, item 1: with its Tune state torn or deleted, `memlaw resume` would have trained every
    trial again under new ids (each grid point counted twice); it refuses before Ray starts, exit 2,
    and changes nothing in the folder."""
    from orchestrator.cli import main as cli

    for damage in ("torn", "deleted"):
        copy = tmp_path / damage / "drill"
        shutil.copytree(experiment, copy)
        state = max(copy.glob("experiment_state-*.json"))
        if damage == "torn":
            state.write_bytes(state.read_bytes()[:3000])
        else:
            state.unlink()
        before = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
        done = run("resume", str(copy))
        assert done.returncode == 2 and done.stderr.startswith(f"error: cannot resume {copy}: Tune's state"), done.stderr
        assert ("is torn or unreadable" if damage == "torn" else "is missing") in done.stderr
        assert "memlaw sweep FILE --new" in done.stderr and "Traceback" not in done.stderr
        assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == before
        assert cli.main(["resume", str(copy)]) == 2  # the in-process path refuses the same way


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_asha_stops_are_pruned_not_fitted_and_ctrl_c_under_asha_trains_on(tmp_path, request):
    from conftest import print_figure

    sweep_file = write_sweep(tmp_path, name="asha", space="memft_optuna", scheduler="asha", num_samples=8,
                             search={"kind": "optuna", "metrics": [K.LOSS_FINAL], "modes": ["min"], "seed": 2,
                                     "validate_top": 0})
    experiment = tmp_path / "runs" / "asha"
    proc = start("sweep", str(sweep_file), log=tmp_path / "first.log")
    interrupt_when(proc, experiment, entries=3)
    assert all(r["metrics"].get(K.STEP) == STEPS for r in journal(experiment) if r["status"] == "ok")
    done = run("resume", str(experiment))
    assert done.returncode == 0, done.stderr[-3000:]
    records = RecordLog.for_experiment(str(experiment)).all()
    statuses = sorted(r.status for r in records)
    assert len(records) == 8 and set(statuses) <= {"ok", "pruned"}, statuses
    assert all(r.metrics[K.STEP] == STEPS for r in records if r.ok)
    pruned = [r for r in records if r.status == "pruned"]
    assert pruned and all(r.metrics[K.STEP] < STEPS for r in pruned)
    law = json.loads(run("law", "--experiment", str(experiment), "--json").stdout)
    from orchestrator.records.identity import distinct

    counted = [r for r in distinct(records).records if r.status == "pruned"]  # one per configuration
    assert law["report"]["trials_unfinished"] == ({"pruned": len(counted)} if counted else {})
    print_figure(request, f"ASHA drill: {len(pruned)} of 8 trials pruned (steps "
                          f"{sorted(r.metrics[K.STEP] for r in pruned)}), never fitted; every ok record at {STEPS} "
                          f"steps after Ctrl-C and resume")


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_two_runs_at_once_and_reruns_are_refused_before_ray_starts(tmp_path, request):
    from conftest import print_figure

    two = {"adapter.rank": [1, 2], "data.target_tokens": [32]}  # two trials: the refusals are what is tested
    sweep_file = write_sweep(tmp_path, name="once", trial={**TRIAL, "budget": {"preset": "cpu", "steps": 300}},
                             space_overrides=two)
    experiment = tmp_path / "runs" / "once"
    first = start("sweep", str(sweep_file), log=tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while not (experiment / "memlaw_sweep.json").exists():  # the first run holds the lock by then
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    t0 = time.monotonic()
    second = run("sweep", str(sweep_file), "--resume", "--verbose")  # --verbose: a Ray start would show
    refused_s = time.monotonic() - t0
    assert second.returncode == 2, second.stderr
    assert "in use by another memlaw run" in second.stderr and f"pid {first.pid}" in second.stderr
    assert "Started a local Ray instance" not in second.stderr
    assert first.wait(timeout=600) == 0
    records = RecordLog.for_experiment(str(experiment)).all()
    assert len(records) == 2 and all(r.ok for r in records)

    again = run("sweep", str(sweep_file))
    assert again.returncode == 2 and "already exists" in again.stderr and "--new" in again.stderr
    changed = write_sweep(tmp_path, name="once", trial={**TRIAL, "budget": {"preset": "cpu", "steps": 100}},
                          space_overrides=two)
    refused = run("sweep", str(changed), "--resume")
    assert refused.returncode == 2 and "trial.budget.steps" in refused.stderr, refused.stderr
    fresh = run("sweep", str(changed), "--new")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert len(RecordLog.for_experiment(str(tmp_path / "runs" / "once-2")).all()) == 2
    assert len(RecordLog.for_experiment(str(experiment)).all()) == 2  # nothing merged into the first
    print_figure(request, f"one run per experiment: the second refused in {refused_s:.1f} s before Ray started; "
                          f"0 records lost; a rerun and a changed --resume refused; --new made once-2")
