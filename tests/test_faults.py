"""Fault injection on a real local Ray (issue 7): the promises of docs/reliability.md, counted."""

from __future__ import annotations

import random
import threading
import time

import pytest
import yaml

from orchestrator.config import load_sweep
from orchestrator.law_report import build_report
from orchestrator.record_log import RecordLog


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


@pytest.mark.slow
def test_r2_results_actor_killed_ten_times_loses_and_duplicates_nothing(tmp_path):
    import ray

    from orchestrator import results_actor
    from orchestrator.tuner import run_sweep, start_ray

    sweep = _sweep(tmp_path, "r2")
    start_ray(None, num_cpus=2)
    kills, stop = [], threading.Event()

    def killer() -> None:
        rng = random.Random(7)
        while len(kills) < 10 and not stop.is_set():
            stop.wait(rng.uniform(0.8, 2.0))
            try:
                ray.kill(results_actor.find(sweep.name), no_restart=False)
                kills.append(time.monotonic())
            except (LookupError, ValueError):
                continue  # not created yet

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
        print(f"\nR2: {len(kills)} actor kills during the sweep, {len(grid)} trials finished, "
              f"{len(lost)} records lost, {duplicated} duplicated")
        assert len(kills) == 10, "the sweep ended before ten kills"
        assert len(grid) == 12 and not grid.errors
        assert not lost and duplicated == 0
        assert sorted(live["trial_ids"]) == sorted(tune_ids)
        refit = build_report(sweep.name, stored, sweep.capacity_variable)
        for label, group in refit["groups"].items():
            for key in ("alpha", "beta", "C", "b", "r2", "n_points"):
                assert live["groups"][label]["fit"][key] == group["fit"][key], key
    finally:
        stop.set()
        ray.shutdown()


@pytest.mark.slow
def test_r1_worker_node_loss_every_trial_finishes_exactly_once(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator import results_actor
    from orchestrator.export import export, read_export
    from orchestrator.tuner import run_sweep

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
        while len(kills) < 3 and thread.is_alive():
            thread.join(timeout=rng.uniform(3.0, 6.0))
            if not thread.is_alive():
                break
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
