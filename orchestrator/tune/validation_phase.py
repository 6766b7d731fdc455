"""The held-out validation phase of a MemFT search: a second Tune phase of the same experiment.

    <experiment>/validation/   its own Tune experiment and record log (resumable: Tuner.restore,
                               journaled trials are replayed), plan.json, validation.json

The plan (arms, seeds) and its statistics are orchestrator/search/validation_plan.py, plain data;
this module saves the plan before the first validation trial starts and reads it back on
`memlaw resume`, so a resumed validation runs exactly the trials it planned, runs them under Tune,
and records the summary in the folder and in the Optuna study.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable

from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.folder import VALIDATION, validation_uri
from orchestrator.experiment.folder import VALIDATION_PLAN_FILE as PLAN_FILE
from orchestrator.experiment.folder import VALIDATION_SUMMARY_FILE as SUMMARY_FILE
from orchestrator.records.trial_record import TrialRecord
from orchestrator.search.validation_plan import (ACTOR_SUFFIX, POINT, STUDY_ATTR, incomplete_text, make_plan, points,
                                                 progress, summarize_validation)
from trainables.schema import set_dotted


def _write_json(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_or_make_plan(sweep: SweepConfig, experiment_uri: str, records: list[TrialRecord],
                      searched: Iterable[str] = ()) -> dict[str, Any]:
    """The saved plan of a validation already started (resume), else a new one, saved first."""
    path = os.path.join(validation_uri(experiment_uri), PLAN_FILE)
    if os.path.isfile(path):  # whole: `memlaw resume` refused a torn one before Ray started
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    plan = make_plan(sweep, records, searched)
    _write_json(path, plan)
    return plan


def memorize_point(config: dict[str, Any], base: dict[str, Any], limits, experiment_uri: str) -> None:
    """A validation trial: the planned point's fields, trained as any sweep trial; a point whose
    (arm, seed) already has a finished record (a Tune state older than the journal) reports that
    record instead of training again."""
    from ray import tune

    from orchestrator.records.journal import RecordLog
    from orchestrator.tune.trainable import REPLAYED, _reportable, memorize
    from trainables.config import TrialConfig

    values = dict(config[POINT])
    wanted = TrialConfig.from_dict(set_dotted(base, values)).config_hash()
    done = [r for r in RecordLog.for_experiment(experiment_uri).all() if r.ok and r.config_hash == wanted]
    if done:
        tune.report({**_reportable(done[0].metrics, done[0].node_id or ""), REPLAYED: True})
        return
    memorize(values, base=base, limits=limits, experiment_uri=experiment_uri)


def _tuner(sweep: SweepConfig, experiment_uri: str, plan: dict[str, Any]):
    from ray import tune

    from orchestrator.tune.callbacks import ResultsForwarder

    uri = validation_uri(experiment_uri)
    fn = tune.with_parameters(memorize_point, base=sweep.base_trial.to_dict(), limits=sweep.trial_limits(),
                              experiment_uri=uri)
    memory = {"memory": sweep.trial_memory_mb * 2**20} if sweep.trial_memory_mb else {}
    trainable = tune.with_resources(fn, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu, **memory,
                                         **sweep.resources.custom})
    param_space = {POINT: tune.grid_search(points(plan))}
    if tune.Tuner.can_restore(uri):
        from orchestrator.tune.moved_experiment import repoint_search_state

        repoint_search_state(uri)
        return tune.Tuner.restore(uri, trainable=trainable, resume_errored=False, restart_errored=False,
                                  param_space=param_space)
    resolve = lambda cfg: sweep.trial_config(cfg[POINT]).to_dict()  # noqa: E731 (pickled with the callback)
    storage = experiment_uri if "://" in experiment_uri else os.path.abspath(experiment_uri)
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=sweep.max_concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=VALIDATION, storage_path=storage,
                                  callbacks=[ResultsForwarder(sweep.name + ACTOR_SUFFIX, resolve)],
                                  failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=1,
                                  progress_reporter=_reporter(sweep, len(points(plan)))))


def _reporter(sweep: SweepConfig, total: int):
    """The phase's running line (the sweep's own, running_line.RunningLine), not Tune's status tables: every
    REPORT_EVERY_S on stderr, each running trial named by its method and seed, and k/n done."""
    from orchestrator.tune.running_line import REPORT_EVERY_S, RunningLine

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the classic engine, which takes a ProgressReporter
    return RunningLine(sweep, resolve=lambda cfg: sweep.trial_config(cfg[POINT]),
                       label=lambda trial: f"{trial.method.name} seed {trial.seed}", total=total,
                       parameter_columns=[], metric_columns=[], max_report_frequency=REPORT_EVERY_S,
                       sort_by_metric=False)


def _reconcile(sweep: SweepConfig, actor, grid) -> None:
    """Every finished validation trial to the phase's actor again (idempotent), as tuner.reconcile."""
    import ray

    from orchestrator.tune.callbacks import checkpoint_path
    from orchestrator.records.trial_record import completion_status, record_from_result

    refs = []
    for result in grid:
        trial_id = (result.metrics or {}).get("trial_id")
        if result.error is not None or not trial_id:
            continue
        config = sweep.trial_config(result.config[POINT]).to_dict()
        record = record_from_result(trial_id, sweep.name + ACTOR_SUFFIX, config, result.metrics,
                                    status=completion_status(result.metrics, pruning=False),
                                    checkpoint=checkpoint_path(result.checkpoint, result.metrics))
        refs.append(actor.add.remote(record.to_dict()))
    ray.get(refs)


def run_validation(sweep: SweepConfig, experiment_uri: str, searched: Iterable[str], storage) -> dict[str, Any] | None:
    """Plan (or reload the plan), run the phase to its end, summarize and record it. Ray is up.
    `searched` and `storage` (the study's Optuna storage) come from the Optuna search kind."""
    import ray

    from orchestrator.tune import results_actor
    from orchestrator.records.journal import RecordLog

    if sweep.trainable != "memorize":
        print(f"memlaw: held-out validation runs function trials only (trainable is {sweep.trainable}); skipped",
              file=sys.stderr)
        return None
    uri = validation_uri(experiment_uri)
    plan = load_or_make_plan(sweep, experiment_uri, RecordLog.for_experiment(experiment_uri).all(), searched)
    n = len(plan["arms"]) * len(plan["seeds"])
    print(f"\nmemlaw: held-out validation: {len(plan['arms'])} arms x {len(plan['seeds'])} fresh seeds = {n} trials "
          f"({', '.join(a['label'] for a in plan['arms'])}) in {uri}", file=sys.stderr, flush=True)
    actor = results_actor.get_or_create(sweep.name + ACTOR_SUFFIX, uri, sweep.fit)
    grid = _tuner(sweep, experiment_uri, plan).fit()
    _reconcile(sweep, actor, grid)
    records = [TrialRecord.from_dict(r) for r in ray.get(actor.records.remote())]
    done, planned = progress(plan, sweep, records)
    if done < planned:  # interrupted (Ctrl-C, a driver shutdown): no verdict from part of the seeds
        print(f"memlaw: {incomplete_text(done, planned, experiment_uri)}", file=sys.stderr, flush=True)
        return None
    summary = summarize_validation(plan, sweep, records)
    _write_json(os.path.join(uri, SUMMARY_FILE), summary)
    _record_in_study(sweep, storage, summary)
    return summary


def _record_in_study(sweep: SweepConfig, storage, summary: dict[str, Any]) -> None:
    """The summary as the study's user attribute (optuna-dashboard shows it)."""
    import optuna

    study = optuna.load_study(study_name=sweep.name, storage=storage)
    study.set_user_attr(STUDY_ATTR, {"verdict": summary["verdict"]["text"], "arms": [
        {"label": a["label"], "knobs": a["text"], "seeds": a["seeds_done"],
         "search_trial": (a["search"] or {}).get("trial_id"),
         **{m: a["stats"][m]["value"]["mean"] for m in summary["metrics"]}} for a in summary["arms"]]})
    # Finished Optuna trials take no new attributes (UpdateFinishedTrialError): the study's attribute
    # names each validated arm's search trial by its Tune trial id instead.

