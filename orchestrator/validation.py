"""Held-out validation of a MemFT search: its best knob sets against SFT and MemFT-OT on fresh seeds.

    search records -> plan (arms: SFT, MemFT-OT, the k best distinct knob sets; seeds s_1..s_n)
        -> a second Tune phase of the same experiment, `<experiment>/validation` (its own Tune
           experiment and record log; resumable: Tuner.restore, journaled trials are replayed)
        -> per arm and metric: mean and 95 % interval, paired difference to SFT (validation_stats)
        -> `<experiment>/validation/validation.json`, the Optuna study's user attribute
           `memlaw_validation`, and the sweep's end report

Why fresh seeds: picking the best of many noisy trials flatters it (the optimism of the maximum);
each seed s sets both the adapter init (`seed`) and the data (`data.seed`), the same s for every
arm, so the differences to SFT are paired. Every arm keeps the sweep's rank, lr and steps.

The plan is written before the first validation trial starts and read back on `memlaw resume`, so
a resumed validation runs exactly the trials it planned; finished ones are not run again. This
module imports Ray only inside `run_validation` and `memorize_point`: the plan and the summary are
plain data, and `memlaw best` reads them without Ray.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Iterable

from orchestrator.experiment import VALIDATION, validation_uri  # the phase's folder names
from orchestrator.experiment import VALIDATION_PLAN_FILE as PLAN_FILE
from orchestrator.experiment import VALIDATION_SUMMARY_FILE as SUMMARY_FILE
from orchestrator.experiment import read_validation_summary as read_summary
from orchestrator.best_trials import distinct_knob_sets, knob_text, rank_trials
from orchestrator.records import TrialRecord
from orchestrator.validation_stats import summarize, verdict
from trainables import metric_names as K
from trainables.schema import set_dotted

if TYPE_CHECKING:
    from orchestrator.config import SweepConfig

log = logging.getLogger(__name__)
STUDY_ATTR = "memlaw_validation"
ACTOR_SUFFIX = "/validation"  # the phase's results actor: `<sweep>/validation`
POINT = "point"  # the Tune config key holding one validation trial's dotted fields
SEED_BASE = 100_000  # validation seeds s_i = SEED_BASE + i: away from the seeds a sweep file sets
SFT, OT = "SFT", "MemFT-OT"
BASELINES = {SFT: {"method.name": "sft"},
             OT: {"method.name": "memft", "method.mix": 1.0, "method.threshold_margin": 0.0}}
METRICS = (K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH, K.FRAC_SEQUENCES_CERTIFIED, K.STABLE_CERTIFIED_FROM)


# -- the plan (pure) --------------------------------------------------------------------------------
def _is_sft(knobs: dict[str, Any]) -> bool:
    """SFT is an arm of its own: a top knob set that is SFT (as a method, or memft at mix 0) is skipped."""
    return knobs.get("method.name") == "sft" or knobs.get("method.mix") == 0.0


def make_plan(sweep: SweepConfig, records: Iterable[TrialRecord], searched: Iterable[str] = ()) -> dict[str, Any]:
    """Arms and seeds from the search's finished trials (see the module doc). `searched`: the fields
    the search drew (the Optuna kind passes them: this module does not import orchestrator.searches,
    which calls it); the lr is kept in an arm's knobs only when it was searched."""
    s = sweep.search
    searched = set(searched)
    ranked = [r for r in rank_trials(records, s.metrics, s.modes) if not _is_sft(r.knobs)]
    arms = [{"label": label, "knobs": knobs, "search": None} for label, knobs in BASELINES.items()]
    for i, r in enumerate(distinct_knob_sets(ranked, s.validate_top), start=1):
        knobs = {k: v for k, v in r.knobs.items() if k != "budget.lr" or k in searched}
        arms.append({"label": f"top{i}", "knobs": knobs,
                     "search": {"trial_id": r.trial_id, "values": dict(zip(s.metrics, r.values))}})
    seeds = [SEED_BASE + i for i in range(s.validate_seeds)]
    metrics = list(METRICS) + [m for m in s.metrics if m not in METRICS]
    return {"arms": arms, "seeds": seeds, "metrics": metrics,
            "primary": {"metric": s.metrics[0], "mode": s.modes[0]}}


def points(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat dict of dotted fields per validation trial, seed by seed (pairs complete early)."""
    return [{**arm["knobs"], "seed": seed, "data.seed": seed} for seed in plan["seeds"] for arm in plan["arms"]]


def arm_of(plan: dict[str, Any], sweep: SweepConfig) -> dict[str, tuple[str, int]]:
    """config hash of each planned trial -> (arm label, seed)."""
    out = {}
    for seed in plan["seeds"]:
        for arm in plan["arms"]:
            cfg = sweep.trial_config({**arm["knobs"], "seed": seed, "data.seed": seed})
            out[cfg.config_hash()] = (arm["label"], seed)
    return out


def summarize_validation(plan: dict[str, Any], sweep: SweepConfig, records: Iterable[TrialRecord]) -> dict[str, Any]:
    """Per arm: seeds done and, per metric, the mean, its interval and the paired difference to SFT."""
    where = arm_of(plan, sweep)
    values: dict[str, dict[str, dict[int, float]]] = {a["label"]: {m: {} for m in plan["metrics"]} for a in plan["arms"]}
    failed: dict[str, int] = {a["label"]: 0 for a in plan["arms"]}
    done: dict[str, set[int]] = {a["label"]: set() for a in plan["arms"]}
    for r in records:
        if r.config_hash not in where:
            continue
        label, seed = where[r.config_hash]
        if not r.ok:
            failed[label] += 1
            continue
        done[label].add(seed)
        for m in plan["metrics"]:
            v = r.metrics.get(m)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values[label][m][seed] = float(v)
    stats = summarize(values, SFT, plan["metrics"])
    arms = [{**arm, "text": knob_text(arm["knobs"]), "seeds_done": len(done[arm["label"]]),
             "failed": failed[arm["label"]], "stats": stats[arm["label"]]} for arm in plan["arms"]]
    p = plan["primary"]
    return {"seeds": plan["seeds"], "metrics": plan["metrics"], "primary": p, "arms": arms,
            "verdict": verdict(stats, p["metric"], p["mode"], SFT),
            "censored_note": f"{K.STABLE_CERTIFIED_FROM} = budget steps + 1 where a trial ended uncertified"}


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
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    plan = make_plan(sweep, records, searched)
    _write_json(path, plan)
    return plan


# -- the Tune phase (Ray) ----------------------------------------------------------------------------
def memorize_point(config: dict[str, Any], base: dict[str, Any], limits, experiment_uri: str) -> None:
    """A validation trial: the planned point's fields, trained as any sweep trial; a point whose
    (arm, seed) already has a finished record (a Tune state older than the journal) reports that
    record instead of training again."""
    from ray import tune

    from orchestrator.record_log import RecordLog
    from orchestrator.trainable import REPLAYED, _reportable, memorize
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

    from orchestrator.callbacks import ResultsForwarder

    uri = validation_uri(experiment_uri)
    fn = tune.with_parameters(memorize_point, base=sweep.base_trial.to_dict(), limits=sweep.trial_limits(),
                              experiment_uri=uri)
    memory = {"memory": sweep.trial_memory_mb * 2**20} if sweep.trial_memory_mb else {}
    trainable = tune.with_resources(fn, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu, **memory,
                                         **sweep.resources.custom})
    param_space = {POINT: tune.grid_search(points(plan))}
    if tune.Tuner.can_restore(uri):
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
                                  progress_reporter=_reporter()))


def _reporter():
    """The live table of the phase, every 15 s: the metrics that matter (no parameter columns: the
    reporter cannot look up a dotted field inside the point, and dropped the whole table)."""
    from ray.tune import CLIReporter

    from orchestrator.sweep_output import LIVE_COLUMNS

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    return CLIReporter(parameter_columns=[],
                       metric_columns=[*LIVE_COLUMNS, K.STABLE_CERTIFIED_FROM], max_report_frequency=15,
                       max_progress_rows=40, sort_by_metric=False)


def _reconcile(sweep: SweepConfig, actor, grid) -> None:
    """Every finished validation trial to the phase's actor again (idempotent), as tuner.reconcile."""
    import ray

    from orchestrator.callbacks import checkpoint_path
    from orchestrator.records import completion_status, record_from_result

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

    from orchestrator import results_actor
    from orchestrator.record_log import RecordLog

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


__all__ = ["make_plan", "points", "run_validation", "summarize_validation", "read_summary"]
