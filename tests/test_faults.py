"""Fault injection on a real local Ray (issue 7): the promises of docs/reliability.md, counted."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.config.preflight import load_sweep
from orchestrator.report.law_report import build_report
from orchestrator.records.journal import RecordLog


def _sweep(tmp_path, name: str, **fields):
    sweep = {"name": name, "space": "law_grid_smoke", "search": {"kind": "grid"}, "resources": {"cpu": 1},
             "max_concurrency": 2, "storage_path": str(tmp_path / "runs"),
             "space_overrides": {"adapter.rank": [1, 2, 3, 4], "data.target_tokens": [32, 48, 64]},
             "trial": {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper"},
                       "data": {"kind": "random", "target_tokens": 32},
                       "budget": {"preset": "cpu", "steps": 40}, "eval": {"every": 10}}, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return load_sweep(str(path))


def _journaled(sweep) -> int:
    """Records in the sweep's journal now: the drills' clock (issue 28 item 6)."""
    folder = os.path.join(sweep.experiment_uri, "memlaw", "journal")
    return len([n for n in os.listdir(folder) if n.endswith(".json")]) if os.path.isdir(folder) else 0


NODE_KILLS_AFTER = (4, 10, 16)


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_r2_results_actor_killed_ten_times_loses_and_duplicates_nothing(tmp_path):
    import ray

    from orchestrator.tune import results_actor
    from orchestrator.tune.ray_session import start_ray
    from orchestrator.tune.tuner import run_sweep

    sweep = _sweep(tmp_path, "r2")
    start_ray(None, num_cpus=2)
    kills, stop = [], threading.Event()

    def killer() -> None:
        """Kill the actor each time another trial starts (Tune makes its folder; progress, not the clock:
        the drill means the same on a laptop and a GPU node). Records are no clock here: a killed
        actor's records land together once it is back, so they arrive in bursts."""
        seen = 0
        while not stop.is_set():
            stop.wait(0.1)
            started = len(list(Path(sweep.experiment_uri).glob("memorize_*")))
            if started > seen and _journaled(sweep) < 12:
                seen = started
                try:
                    ray.kill(results_actor.find(sweep.name), no_restart=False)
                    kills.append(started)
                except (LookupError, ValueError):
                    continue  # not created yet, or between restarts

    thread = threading.Thread(target=killer, daemon=True)
    try:
        thread.start()
        grid = run_sweep(sweep)
        stop.set()
        thread.join(timeout=30)
        tune_ids = {r.metrics["trial_id"] for r in grid}
        actor = results_actor.find(sweep.name)
        live = ray.get(actor.report.remote(wait_s=30.0))
        stored = RecordLog.for_experiment(sweep.experiment_uri).all()
        journal_ids = [r.trial_id for r in stored]
        lost = tune_ids - set(journal_ids)
        duplicated = len(journal_ids) - len(set(journal_ids))
        print(f"\nR2: {len(kills)} actor kills during the sweep (as trials {kills} started), {len(grid)} trials "
              f"finished, {len(lost)} records lost, {duplicated} duplicated")
        assert len(kills) >= 4 and kills == sorted(set(kills)), kills  # at most one kill per trial start
        assert len(grid) == 12 and not grid.errors
        assert not lost and duplicated == 0
        assert sorted(live["trial_ids"]) == sorted(tune_ids)
        refit = build_report(sweep.name, stored, sweep.fit)
        for label, group in refit["groups"].items():
            for key in ("alpha", "beta", "C", "b", "r2", "n_points"):
                assert live["groups"][label]["fit"][key] == group["fit"][key], key
    finally:
        stop.set()
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_r1_worker_node_loss_every_trial_finishes_exactly_once(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator.tune import results_actor
    from orchestrator.experiment.export import export, read_export
    from orchestrator.tune.tuner import run_sweep

    sweep = _sweep(tmp_path, "r1", max_concurrency=3, max_failures=3, checkpoint_every=1,
                   space_overrides={"adapter.rank": [1, 2, 3, 4], "data.target_tokens": [32, 40, 48, 56, 64, 72]})
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": 80 * 2**20})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20) for _ in range(2)]
    cluster.wait_for_nodes()
    kills, outcome = [], {}

    def sweep_thread() -> None:  # the sweep runs beside; node surgery must stay on the main thread
        try:
            outcome["grid"] = run_sweep(sweep, address=cluster.address)
        except BaseException as err:  # noqa: BLE001 - reported below
            outcome["error"] = err

    thread = threading.Thread(target=sweep_thread, daemon=True)
    try:
        thread.start()
        rng = random.Random(11)
        while len(kills) < 3 and thread.is_alive():  # a node dies after records 4, 10 and 16 of 24 land
            thread.join(timeout=0.2)
            if not thread.is_alive() or _journaled(sweep) < NODE_KILLS_AFTER[len(kills)]:
                continue
            victim = workers.pop(rng.randrange(len(workers)))
            cluster.remove_node(victim, allow_graceful=False)
            kills.append(time.monotonic())
            workers.append(cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20))
        thread.join(timeout=600)
        assert "error" not in outcome, outcome.get("error")
        grid = outcome["grid"]
        records = RecordLog.for_experiment(sweep.experiment_uri).all()
        out = tmp_path / "r1.parquet"
        export(sweep.experiment_uri, str(out))
        exported = [r.trial_id for r in read_export(str(out))]
        live = ray.get(results_actor.find(sweep.name).report.remote(wait_s=30.0))
        print(f"\nR1: {len(kills)} worker nodes killed and replaced, {len(grid)} trials, "
              f"{sum(1 for r in records if r.ok)} finished, {len(exported) - len(set(exported))} duplicated in export, "
              f"{len(grid) - len(set(exported))} missing")
        assert len(kills) == 3, "the sweep ended before three node kills"
        assert len(grid) == 24 and not grid.errors
        assert sorted(exported) == sorted({r.metrics["trial_id"] for r in grid})
        assert len(records) == 24 and all(r.ok for r in records)
        group = next(iter(live["groups"].values()))
        assert group["n_rows"] == 24 and live["trials_accepted"] == 24
    finally:
        ray.shutdown()
        cluster.shutdown()


# -- R3: a driver crash under Optuna ----------------------------------------------------------------
R3_TRIAL = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 1},
            "data": {"kind": "random", "target_tokens": 32}, "budget": {"preset": "cpu", "steps": 30},
            "eval": {"every": 10}}


def _tune_trials(experiment) -> dict[str, tuple[str, dict]]:
    """Tune's own view of the experiment, from its saved state: trial id -> (status, last result)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    return {t.trial_id: (t.status, dict(t.last_result or {})) for t in analysis.trials}


def _optuna_trials(experiment, study_name: str) -> list:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(experiment / "optuna.journal")))
    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)


def _kill_driver_after(experiment, proc, n_records: int, timeout: float = 300) -> int:
    """SIGKILL the sweep's whole process group (driver and its local Ray) once n trials are in the journal."""
    import os
    import signal

    journal = experiment / "memlaw" / "journal"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done = len(list(journal.glob("*.json"))) if journal.is_dir() else 0
            if done >= n_records:
                return done
            if proc.poll() is not None:
                raise AssertionError(f"the sweep ended (exit {proc.returncode}) before it could be interrupted")
            time.sleep(0.2)
        raise AssertionError("timed out waiting for finished trials")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_r3_driver_killed_under_optuna_resumes_with_every_trial_once(tmp_path, request):
    import os
    import subprocess

    import optuna
    import pandas as pd

    from conftest import memlaw_cmd, print_figure
    from orchestrator.tune.optuna_study import ANSWERED_FROM, FAILED_REASON, TUNE_TRIAL_ID
    from orchestrator.tune.trainable import REPLAYED

    path = tmp_path / "r3.yaml"
    path.write_text(yaml.safe_dump({
        "name": "r3", "trial": R3_TRIAL, "space": "memft_optuna", "num_samples": 6, "max_concurrency": 2,
        "search": {"kind": "optuna", "sampler": "tpe", "metrics": ["frac_p_gt_half"], "modes": ["max"], "seed": 5,
                   "validate_top": 0},
        "resources": {"cpu": 1}, "storage_path": str(tmp_path / "runs"), "checkpoint_every": 1}))
    experiment = tmp_path / "runs" / "r3"
    with open(tmp_path / "sweep.log", "wb") as log:
        proc = subprocess.Popen(memlaw_cmd("sweep", str(path)), stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy(), start_new_session=True)
    finished_at_kill = _kill_driver_after(experiment, proc, n_records=2)
    first = {r.trial_id: r for r in RecordLog.for_experiment(str(experiment)).all()}
    tune_before = _tune_trials(experiment)
    running_before = [t.number for t in _optuna_trials(experiment, "r3")
                      if t.state == optuna.trial.TrialState.RUNNING]
    time.sleep(2)

    run = subprocess.run(memlaw_cmd("resume", str(experiment)), capture_output=True, text=True, timeout=600,
                         env=os.environ.copy())
    assert run.returncode == 0, run.stderr[-3000:]
    records = RecordLog.for_experiment(str(experiment)).all()
    ids = [r.trial_id for r in records]
    tune_after = _tune_trials(experiment)
    studied = _optuna_trials(experiment, "r3")
    states = [t.state for t in studied]
    out = tmp_path / "r3.parquet"
    assert subprocess.run(memlaw_cmd("export", str(experiment), "--out", str(out)), capture_output=True,
                          timeout=300).returncode == 0
    exported = list(pd.read_parquet(out)["trial_id"])
    # trained again: a new last result that is not the journal's record replayed (orchestrator/tune/trainable.py)
    rerun = [t for t, r in first.items() if tune_after[t][1].get("timestamp") != r.ended_at
             and not tune_after[t][1].get(REPLAYED)]
    replayed = [t for t in first if tune_after[t][1].get(REPLAYED)]
    lost = set(tune_after) - set(ids)
    print_figure(request, (
        f"R3 (Optuna): 1 driver SIGKILL after {finished_at_kill} of 6 trials finished; Tune knew "
        f"{len(tune_before)} trials, {len(tune_after)} after resume; Optuna trials RUNNING at the kill "
        f"{len(running_before)}, after resume {states.count(optuna.trial.TrialState.RUNNING)} "
        f"({len(studied)} Optuna trials: {sum(s.name == 'COMPLETE' for s in states)} complete, "
        f"{sum(s.name == 'FAIL' for s in states)} failed); {len(ids)} records, {len(lost)} lost, "
        f"{len(ids) - len(set(ids))} duplicated, {len(exported) - len(set(exported))} duplicated in export, "
        f"{len(rerun)} finished trials trained again ({len(replayed)} restored by Tune as running, "
        f"answered from the journal)"))
    assert set(tune_before) <= set(tune_after) and len(tune_after) == 6
    assert all(status == "TERMINATED" for status, _ in tune_after.values()), (
        {t: (status, last.get(REPLAYED), last.get("timestamp")) for t, (status, last) in tune_after.items()},
        run.stdout[-4000:], run.stderr[-4000:])
    assert len(ids) == len(set(ids)) == 6 and not lost
    assert sorted(exported) == sorted(ids)
    for trial_id, record in first.items():  # finished trials were not rerun: same record, same Tune result
        again = next(r for r in records if r.trial_id == trial_id)
        assert again.ended_at == record.ended_at and again.metrics == record.metrics
    assert not rerun, f"finished trials run again after resume: {rerun}"
    assert optuna.trial.TrialState.RUNNING not in states, [(t.number, t.state) for t in studied]
    trained = [t for t in studied if ANSWERED_FROM not in t.user_attrs]  # repeats are answered, not trained
    complete = [t.user_attrs.get(TUNE_TRIAL_ID) for t in trained if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(complete) == sorted(tune_after), "each Tune trial must be exactly one COMPLETE Optuna trial"
    by_tune = {t.user_attrs.get(TUNE_TRIAL_ID): t for t in trained}
    for repeat in (t for t in studied if ANSWERED_FROM in t.user_attrs):  # told its earlier trial's outcome
        source = by_tune[repeat.user_attrs[ANSWERED_FROM]]
        assert repeat.params == source.params and (repeat.state != optuna.trial.TrialState.COMPLETE
                                                   or repeat.values == source.values), (repeat, source)
    orphans = [t for t in trained if t.user_attrs.get(TUNE_TRIAL_ID) not in tune_after]
    assert all(t.state == optuna.trial.TrialState.FAIL and t.user_attrs[FAILED_REASON] for t in orphans)


# -- R4: every kind of broken trial in one sweep ----------------------------------------------------
R4_FAULTS = ("none", "nan", "inf", "error", "hang", "alloc", "none")
R4_CATEGORIES = {"nan": "nan", "inf": "inf", "error": "error", "hang": "timeout", "alloc": "oom"}


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_r4_each_broken_trial_in_its_own_category_none_in_the_fit(tmp_path, request):
    import subprocess

    import ray

    from conftest import memlaw_cmd, print_figure
    from orchestrator.tune import results_actor
    from orchestrator.tune.ray_session import start_ray
    from orchestrator.tune.tuner import run_sweep

    sweep = _sweep(tmp_path, "r4", max_failures=0, trial_timeout_s=20, trial_memory_mb=1536,
                   space_overrides={"inject_fault": list(R4_FAULTS), "adapter.rank": [2], "data.target_tokens": [32]},
                   trial={**R3_TRIAL, "inject_at_step": 3})
    start_ray(None, num_cpus=2)
    try:
        t0 = time.monotonic()
        grid = run_sweep(sweep)
        wall = time.monotonic() - t0
        live = ray.get(results_actor.find(sweep.name).report.remote(wait_s=30.0))
    finally:
        ray.shutdown()
    records = RecordLog.for_experiment(sweep.experiment_uri).all()
    by_fault: dict[str, list[str]] = {}
    for r in records:
        by_fault.setdefault(r.config["inject_fault"], []).append(r.status)
    law = subprocess.run(memlaw_cmd("law", "--experiment", sweep.experiment_uri), capture_output=True, text=True,
                         timeout=120)
    fitted = sum(g["n_rows"] for g in live["groups"].values())
    print_figure(request, (
        f"R4: {len(R4_FAULTS) - R4_FAULTS.count('none')} faults injected ({', '.join(R4_CATEGORIES)}) in a "
        f"{len(R4_FAULTS)}-trial sweep that completed in {wall:.0f} s: {sum(r.ok for r in records)} trials finished "
        f"({live['trials_ok']} configuration), "
        f"failed by category {dict(sorted(live['trials_failed'].items()))}, {fitted} trials in the fit, "
        f"{len(grid) - len(records)} records lost, {len(records) - len({r.trial_id for r in records})} duplicated"))
    assert len(grid) == len(records) == len({r.trial_id for r in records}) == len(R4_FAULTS)
    assert by_fault == {"none": ["ok", "ok"], **{fault: [category] for fault, category in R4_CATEGORIES.items()}}
    assert live["trials_failed"] == {category: 1 for category in R4_CATEGORIES.values()}
    # the two healthy trials are one configuration (the grid repeats "none"): two ok records, one
    # point of the law (records/identity.py), and no failed trial in the fit
    assert live["records"] == len(R4_FAULTS) and live["repeated"]["duplicates"] and live["conflicts"] == []
    assert live["trials_ok"] == fitted == 1, "failed trials must never reach the fit"
    assert law.returncode == 0 and "'timeout': 1" in law.stdout and "'oom': 1" in law.stdout, law.stdout
