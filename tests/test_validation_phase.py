"""The held-out validation phase end to end: a MemFT search, then SFT, MemFT-OT and its best knob
set on fresh seeds as a second Tune phase; the driver killed mid-validation; `memlaw resume`
finishes it without training a finished validation trial again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from orchestrator.records.journal import RecordLog
from orchestrator.tune.validation_phase import PLAN_FILE, SUMMARY_FILE, VALIDATION

TRIAL = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "peft", "rank": 1},
         "data": {"kind": "random", "target_tokens": 16, "num_sequences": 2}, "budget": {"preset": "cpu", "steps": 20},
         "eval": {"every": 10}}


def _tune_trials(folder) -> dict[str, tuple[str, dict]]:
    from ray.tune import ExperimentAnalysis

    return {t.trial_id: (t.status, dict(t.last_result or {})) for t in ExperimentAnalysis(str(folder)).trials}


@pytest.mark.slow
def test_validation_resumes_after_a_driver_kill_without_rerunning_finished_arms(tmp_path, request):
    from conftest import memlaw_cmd, print_figure
    from orchestrator.tune.trainable import REPLAYED

    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({
        "name": "v", "trial": TRIAL, "space": "memft_optuna", "num_samples": 2, "max_concurrency": 2,
        "space_overrides": {"method.name": ["memft"]},
        "search": {"kind": "optuna", "metrics": ["greedy_exact_match", "stable_certified_from"],
                   "modes": ["max", "min"], "sampler": "nsga2", "seed": 1, "validate_top": 1, "validate_seeds": 2},
        "resources": {"cpu": 1}, "storage_path": str(tmp_path / "runs"), "checkpoint_every": 1}))
    experiment = tmp_path / "runs" / "v"
    phase = experiment / VALIDATION
    with open(tmp_path / "sweep.log", "wb") as log:
        proc = subprocess.Popen(memlaw_cmd("sweep", str(path)), stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy(), start_new_session=True)
    journal = phase / "memlaw" / "journal"
    deadline = time.monotonic() + 600
    try:
        while not (journal.is_dir() and len(list(journal.glob("*.json"))) >= 2):
            assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "timed out waiting for validation trials"
            time.sleep(0.2)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    first = {r.trial_id: r for r in RecordLog.for_experiment(str(phase)).all()}
    plan_before = (phase / PLAN_FILE).read_text()
    assert not (phase / SUMMARY_FILE).exists()
    cut = subprocess.run(memlaw_cmd("best", str(experiment), "--json"), capture_output=True, text=True, timeout=120)
    validation = json.loads(cut.stdout)["validation"]  # an interrupted validation has no verdict
    assert validation["incomplete"] and validation["planned"] == 6 and 2 <= validation["done"] < 6, validation

    run = subprocess.run(memlaw_cmd("resume", str(experiment)), capture_output=True, text=True, timeout=600,
                         env=os.environ.copy())
    assert run.returncode == 0, run.stderr[-3000:]
    records = RecordLog.for_experiment(str(phase)).all()
    tune_after = _tune_trials(phase)
    rerun = [t for t, r in first.items() if tune_after[t][1].get("timestamp") != r.ended_at
             and not tune_after[t][1].get(REPLAYED)]
    print_figure(request, f"validation: driver SIGKILL after {len(first)} of 6 validation trials; "
                          f"{len(records)} records after resume, {len(rerun)} finished trials trained again")
    assert (phase / PLAN_FILE).read_text() == plan_before  # the resumed phase ran the plan it had made
    assert len(records) == len({r.trial_id for r in records}) == 6 == len(tune_after)
    assert len({r.config_hash for r in records}) == 6  # every planned (arm, seed) once
    for trial_id, record in first.items():
        again = next(r for r in records if r.trial_id == trial_id)
        assert again.ended_at == record.ended_at and again.metrics == record.metrics
    assert not rerun, f"finished validation trials run again after resume: {rerun}"

    summary = json.loads((phase / SUMMARY_FILE).read_text())
    assert [a["label"] for a in summary["arms"]] == ["SFT", "MemFT-OT", "top1"]
    assert all(a["seeds_done"] == 2 for a in summary["arms"])
    assert "held-out validation" in run.stdout and "verdict:" in run.stdout and "Pareto front" in run.stdout
    # issue 25 item 3: memlaw's running line, never Tune's status tables, in the validation phase too
    assert "== Status ==" not in run.stdout + run.stderr and "Trial status" not in run.stdout, run.stdout[-3000:]
    best = subprocess.run(memlaw_cmd("best", str(experiment), "--json"), capture_output=True, text=True, timeout=120)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["validation"]["verdict"] == summary["verdict"]
    law = subprocess.run(memlaw_cmd("law", "--experiment", str(experiment)), capture_output=True, text=True,
                         timeout=120)
    assert law.returncode == 0 and "no law for this sweep" in law.stdout, law.stdout + law.stderr

    import optuna

    from orchestrator.experiment.folder import optuna_storage
    from orchestrator.search.validation_plan import STUDY_ATTR

    study = optuna.load_study(study_name="v", storage=optuna_storage(str(experiment)))
    assert study.metric_names == ["greedy_exact_match", "stable_certified_from"]
    assert study.user_attrs[STUDY_ATTR]["verdict"] == summary["verdict"]["text"]
