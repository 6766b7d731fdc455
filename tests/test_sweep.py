"""Sweeps through the real CLI on a real local Ray: Optuna with failing trials (the grid end to end,
fit, export and plot, and a second demo: tests/test_readme_block.py),
sweep validation, resume after a driver crash, and a two-node cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import memlaw_cmd, memlaw_in_process
from orchestrator.config.preflight import load_sweep
from orchestrator.records.journal import RecordLog
from trainables import metric_names as K
from trainables.schema import ConfigError

SMOKE_TRIAL = {
    "model": {"name": "tiny-xs"},
    "adapter": {"placement": "paper", "rank": 1},
    "data": {"kind": "random", "target_tokens": 32},
    "budget": {"preset": "cpu", "steps": 30},
    "eval": {"every": 10},
}


def write_sweep(tmp_path: Path, **fields) -> Path:
    sweep = {"name": "smoke", "trial": SMOKE_TRIAL, "space": "law_grid_smoke", "search": {"kind": "grid"},
             "resources": {"cpu": 1}, "max_concurrency": 2, "storage_path": str(tmp_path / "runs"), **fields}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(memlaw_cmd(*args), capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def test_sweep_validation_reports_every_problem_at_once(tmp_path):
    path = write_sweep(tmp_path, space="law_grid_nope", max_concurrency=0, storage_path="ftpx://bucket/x",
                       search={"kind": "grid", "seed": -1})
    with pytest.raises(ConfigError) as err:
        load_sweep(str(path))
    fields = {p.field for p in err.value.problems}
    assert {"max_concurrency", "storage_path", "search.seed"} <= fields, err.value
    path = write_sweep(tmp_path, space_overrides={"adapter.rank": [1, 0, 200]})
    with pytest.raises(ConfigError) as err:
        load_sweep(str(path))
    text = str(err.value)
    assert "space_overrides.adapter.rank" in text and "[1, 65536]" in text and "[1, 64]" in text, text
    run = memlaw_in_process("validate", str(path))
    assert run.returncode == 2 and "space_overrides.adapter.rank" in run.stderr


@pytest.mark.slow  # a full CLI sweep
def test_failing_trials_under_optuna_end_failed_and_the_sweep_goes_on(tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    trial = {**SMOKE_TRIAL, "inject_at_step": 5}
    path = write_sweep(tmp_path, name="drill", trial=trial, space="fault_drill", num_samples=8, max_failures=0,
                       search={"kind": "optuna", "metrics": [K.FRAC_P_GT_HALF], "modes": ["max"], "seed": 3})
    run = run_cli("sweep", str(path))
    assert run.returncode == 0, run.stderr[-3000:]
    experiment = tmp_path / "runs" / "drill"
    records = RecordLog.for_experiment(str(experiment)).all()
    assert len(records) == 8
    by_fault = {}
    for r in records:
        by_fault.setdefault(r.config["inject_fault"], set()).add(r.status)
    print(f"drill drew {dict(sorted((k, sorted(v)) for k, v in by_fault.items()))}")
    # the seeded search must draw both failure kinds, or their categories go unchecked
    assert {"nan", "error"} <= set(by_fault), f"the drill drew {sorted(by_fault)}: change the search seed"
    assert by_fault["nan"] == {"nan"} and by_fault["error"] == {"error"}
    assert by_fault.get("none", {"ok"}) == {"ok"}

    storage = JournalStorage(JournalFileBackend(str(experiment / "optuna.journal")))
    study = optuna.load_study(study_name="drill", storage=storage)
    states = [t.state for t in study.trials]
    assert len(states) == 8
    assert optuna.trial.TrialState.RUNNING not in states
    n_failed = sum(1 for r in records if not r.ok)
    assert states.count(optuna.trial.TrialState.FAIL) == n_failed
    law = json.loads(run_cli("law", "--experiment", str(experiment), "--json").stdout)
    assert sum(law["trials_failed"].values()) == n_failed


def _kill_when(experiment: Path, proc: subprocess.Popen, n_records: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journal = experiment / "memlaw" / "journal"
        done = len(list(journal.glob("*.json"))) if journal.is_dir() else 0
        if done >= n_records:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return done
        if proc.poll() is not None:
            raise AssertionError("the sweep ended before it could be interrupted")
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("timed out waiting for finished trials")


@pytest.mark.slow
def test_resume_after_a_driver_crash_has_every_trial_exactly_once(tmp_path):
    path = write_sweep(tmp_path, name="crash", max_concurrency=1, checkpoint_every=1,
                       space_overrides={"adapter.rank": [1, 2, 4], "data.target_tokens": [32, 48]})
    experiment = tmp_path / "runs" / "crash"
    proc = subprocess.Popen(memlaw_cmd("sweep", str(path)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy(), start_new_session=True)
    try:
        before = _kill_when(experiment, proc, n_records=2)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver's local Ray goes with it
        except ProcessLookupError:
            pass
    first = {r.trial_id: r for r in RecordLog.for_experiment(str(experiment)).all()}
    assert 2 <= before == len(first) < 6
    time.sleep(2)
    run = run_cli("resume", str(experiment))
    assert run.returncode == 0, run.stderr[-3000:]
    records = RecordLog.for_experiment(str(experiment)).all()
    assert len(records) == 6 and len({r.trial_id for r in records}) == 6
    for trial_id, record in first.items():  # finished trials were not rerun
        again = next(r for r in records if r.trial_id == trial_id)
        assert again.ended_at == record.ended_at
    law = json.loads(run_cli("law", "--experiment", str(experiment), "--json").stdout)
    assert law["trials_accepted"] == 6 and sorted(law["report"]["trial_ids"]) == sorted(r.trial_id for r in records)


@pytest.mark.slow
def test_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    from ray.cluster_utils import Cluster

    import ray
    from orchestrator.tune.tuner import run_sweep

    # Ray resolves a loopback bootstrap address to the machine's own IP before connecting, so a
    # multi-node cluster that an outside driver joins runs on that IP (Ray's processes listen on
    # every interface in any case; token authentication guards them).
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": 100 * 2**20})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
        cluster.wait_for_nodes()
        sweep = load_sweep(str(write_sweep(tmp_path, name="twonode", max_concurrency=2)))
        grid = run_sweep(sweep, address=cluster.address)
        assert not grid.errors
        records = RecordLog.for_experiment(sweep.experiment_uri).all()
        assert len(records) == 6
        nodes = {r.node_id for r in records}
        assert len(nodes) == 2, nodes
        assert nodes <= {n["NodeID"] for n in ray.nodes()}
    finally:
        ray.shutdown()
        cluster.shutdown()
