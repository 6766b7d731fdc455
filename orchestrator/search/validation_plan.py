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

This module is the plan and its statistics, plain data with no Ray: `memlaw best` reads them
without Ray. The Tune phase that runs the plan, saves it before its first trial and reads it back
on `memlaw resume` (so a resumed validation runs exactly the trials it planned) is
orchestrator/tune/validation_phase.py.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol

from orchestrator.records.trial_record import FAILURES, TrialRecord
from orchestrator.search.best_trials import distinct_knob_sets, knob_text, rank_trials
from orchestrator.search.kinds import SearchConfig
from orchestrator.search.validation_stats import summarize, verdict
from trainables import metric_names as K
from trainables.config import TrialConfig

STUDY_ATTR = "memlaw_validation"
ACTOR_SUFFIX = "/validation"  # the phase's results actor: `<sweep>/validation`
POINT = "point"  # the Tune config key holding one validation trial's dotted fields
SEED_BASE = 100_000  # validation seeds s_i = SEED_BASE + i: away from the seeds a sweep file sets
SFT, OT = "SFT", "MemFT-OT"
BASELINES = {SFT: {"method.name": "sft"},
             OT: {"method.name": "memft", "method.mix": 1.0, "method.threshold_margin": 0.0}}
METRICS = (K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH, K.FRAC_SEQUENCES_CERTIFIED, K.STABLE_CERTIFIED_FROM)


class PlannedSweep(Protocol):
    """What the plan reads of a sweep (orchestrator/config/sweep.py's SweepConfig)."""

    search: SearchConfig

    def trial_config(self, values: Mapping[str, Any]) -> TrialConfig: ...


def _is_sft(knobs: dict[str, Any]) -> bool:
    """SFT is an arm of its own: a top knob set that is SFT (as a method, or memft at mix 0) is skipped."""
    return knobs.get("method.name") == "sft" or knobs.get("method.mix") == 0.0


def make_plan(sweep: PlannedSweep, records: Iterable[TrialRecord], searched: Iterable[str] = ()) -> dict[str, Any]:
    """Arms and seeds from the search's finished trials (see the module doc). `searched`: the fields
    the search drew (search.kinds.Optuna.validation names them); the lr is kept in an arm's knobs
    only when it was searched."""
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


def arm_of(plan: dict[str, Any], sweep: PlannedSweep) -> dict[str, tuple[str, int]]:
    """config hash of each planned trial -> (arm label, seed)."""
    out = {}
    for seed in plan["seeds"]:
        for arm in plan["arms"]:
            cfg = sweep.trial_config({**arm["knobs"], "seed": seed, "data.seed": seed})
            out[cfg.config_hash()] = (arm["label"], seed)
    return out


def summarize_validation(plan: dict[str, Any], sweep: PlannedSweep, records: Iterable[TrialRecord]) -> dict[str, Any]:
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
            failed[label] += r.status in FAILURES  # a stopped trial did not fail: resume trains it on
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


def progress(plan: dict[str, Any], sweep: PlannedSweep, records: Iterable[TrialRecord]) -> tuple[int, int]:
    """(planned points with a final record, planned points): below the second, no verdict is drawn."""
    where = arm_of(plan, sweep)
    done = {where[r.config_hash] for r in records if r.final and r.config_hash in where}
    return len(done), len(plan["arms"]) * len(plan["seeds"])


def incomplete_text(done: int, planned: int, experiment_uri: str) -> str:
    return (f"held-out validation incomplete: {done} of {planned} arms x seeds done, no verdict yet; "
            f"`memlaw resume {experiment_uri}` continues it")
