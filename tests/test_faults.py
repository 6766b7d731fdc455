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
