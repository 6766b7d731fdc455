"""Held-out validation of a MemFT search: its best knob sets against SFT and MemFT-OT on fresh seeds.

    search records -> plan (arms: SFT, MemFT-OT, the k best distinct knob sets; seeds s_1..s_n)
        -> a second Tune phase of the same experiment, `<experiment>/validation` (its own Tune
           experiment and record log; resumable: Tuner.restore, journaled trials are replayed)
        -> per arm: recall at the equal budget (shares, with intervals inside [0, 1]) and the steps
           to stable certification as right-censored time-to-event data; against SFT, per seed:
           paired differences (validation_stats) and orderings (validation_censored); the verdict
           on the primary metric, Holm-adjusted over the arms compared with SFT
        -> `<experiment>/validation/validation.json`, the Optuna study's user attribute
           `memlaw_validation`, and the sweep's end report

Why fresh seeds: picking the best of many noisy trials flatters it (the optimism of the maximum);
each seed s sets both the adapter init (`seed`) and the data (`data.seed`), the same s for every
arm, so the differences to SFT are paired. Every arm keeps the sweep's rank, lr and steps.

Why recall is the primary metric: every arm trains for the same budget, so what it recalls at the end
(greedy token accuracy, or exact match) is the question a user has, and every method is judged on
the same scale. MemFT optimises the certificate (every token's p above 1/2); judging it first on
the time to that certificate rewards what it optimises. The time to stable certification is reported
beside it as a secondary, censored outcome. The primary is the search's first recall objective
(greedy_token_acc or greedy_exact_match), else greedy token accuracy.

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
from orchestrator.search.validation_censored import Observation, observe, summarize_censored
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
RECALL = (K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH)  # what the validation's verdict is on (see the module doc)
SHARES = frozenset({K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH, K.FRAC_SEQUENCES_CERTIFIED, K.FRAC_P_GT_HALF,
                    K.TF_TOKEN_ACC})  # proportions in [0, 1]: intervals inside [0, 1]
#: Steps to an event, right-censored at the budget: metric -> whether the event needs a later evaluation
#: (a stable-from step does: it must be seen to hold; the first certified step does not).
CENSORED = {K.STABLE_CERTIFIED_FROM: True, K.STEPS_TO_CERTIFIED: False}
LOWER_IS_BETTER = frozenset({K.LOSS_FINAL, K.WALL_S, K.CERTIFICATION_LOSSES, *CENSORED})
STATS_VERSION = 2  # 2: censored steps, Holm, intervals of shares inside [0, 1]; 1 (no key): means of all
CENSORED_NOTE = (f"{K.STABLE_CERTIFIED_FROM} is right-censored: a trial that never certified, or whose stable "
                 "certification began only at its last evaluation (no later evaluation to show that it held), "
                 "is censored at its last evaluation step; censored steps are compared by per-seed orderings "
                 "and shown as bounds, never averaged")


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
                     "search": {"trial_id": r.trial_id, "values": dict(zip(s.metrics, r.values)),
                                "last_step": r.metrics.get(K.STEP)}})
    seeds = [SEED_BASE + i for i in range(s.validate_seeds)]
    metrics = list(METRICS) + [m for m in s.metrics if m not in METRICS]
    return {"arms": arms, "seeds": seeds, "metrics": metrics, "primary": primary_of(s.metrics, s.modes),
            "modes": {**{m: default_mode(m) for m in metrics}, **dict(zip(s.metrics, s.modes))}}


def default_mode(metric: str) -> str:
    """The good direction of a metric the search did not name (steps, losses, seconds: min)."""
    return "min" if metric in LOWER_IS_BETTER else "max"


def primary_of(metrics: Iterable[str], modes: Iterable[str]) -> dict[str, str]:
    """The validation's primary metric: the search's first recall objective, else greedy token accuracy."""
    recall = [(m, mode) for m, mode in zip(metrics, modes) if m in RECALL]
    metric, mode = recall[0] if recall else (K.GREEDY_TOKEN_ACC, "max")
    return {"metric": metric, "mode": mode}


def points(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat dict of dotted fields per validation trial, seed by seed (pairs complete early)."""
    return [{**arm["knobs"], "seed": seed, "data.seed": seed} for seed in plan["seeds"] for arm in plan["arms"]]


def arm_of(plan: dict[str, Any], sweep: PlannedSweep) -> dict[str, tuple[str, int]]:
    """config hash of each planned trial -> (arm label, seed)."""
    return {h: (label, seed) for h, (label, seed, _) in _planned(plan, sweep).items()}


def _planned(plan: dict[str, Any], sweep: PlannedSweep) -> dict[str, tuple[str, int, int]]:
    """config hash of each planned trial -> (arm label, seed, budget steps)."""
    out = {}
    for seed in plan["seeds"]:
        for arm in plan["arms"]:
            cfg = sweep.trial_config({**arm["knobs"], "seed": seed, "data.seed": seed})
            out[cfg.config_hash()] = (arm["label"], seed, cfg.budget.steps)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize_validation(plan: dict[str, Any], sweep: PlannedSweep, records: Iterable[TrialRecord]) -> dict[str, Any]:
    """Per arm: seeds done and, per metric, its estimate and its comparison with SFT (the module doc);
    the verdict on the primary metric. One value per (arm, seed): a record repeated for a seed counts once."""
    where = _planned(plan, sweep)
    labels = [a["label"] for a in plan["arms"]]
    modes = {m: default_mode(m) for m in plan["metrics"]} | plan.get("modes", {}) | {
        plan["primary"]["metric"]: plan["primary"]["mode"]}
    censored = [m for m in plan["metrics"] if m in CENSORED]
    metrics = [m for m in plan["metrics"] if m not in CENSORED]
    values: dict[str, dict[str, dict[int, float]]] = {a: {m: {} for m in metrics} for a in labels}
    times: dict[str, dict[str, dict[int, Observation]]] = {a: {m: {} for m in censored} for a in labels}
    budgets = {label: max(b for lab, _, b in where.values() if lab == label) for label in labels}
    failed: dict[str, int] = {a: 0 for a in labels}
    done: dict[str, set[int]] = {a: set() for a in labels}
    for r in records:
        if r.config_hash not in where:
            continue
        label, seed, budget = where[r.config_hash]
        if not r.ok:
            failed[label] += r.status in FAILURES  # a stopped trial did not fail: resume trains it on
            continue
        done[label].add(seed)
        for m in metrics:
            if _number(r.metrics.get(m)):
                values[label][m][seed] = float(r.metrics[m])
        last = r.metrics.get(K.STEP) if _number(r.metrics.get(K.STEP)) else budget
        for m in censored:
            times[label][m][seed] = observe(r.metrics.get(m), last, budget, CENSORED[m])
    stats = summarize(values, SFT, metrics, modes, SHARES)
    for label, per_metric in summarize_censored(times, SFT, censored, budgets, modes).items():
        stats[label].update(per_metric)
    arms = [{**arm, "text": knob_text(arm["knobs"]), "seeds_done": len(done[arm["label"]]),
             "failed": failed[arm["label"]], "stats": stats[arm["label"]]} for arm in plan["arms"]]
    p = plan["primary"]
    return {"stats_version": STATS_VERSION, "seeds": plan["seeds"], "metrics": metrics, "censored_metrics": censored,
            "modes": modes, "primary": p, "arms": arms, "verdict": verdict(stats, p["metric"], p["mode"], SFT),
            "censored_note": CENSORED_NOTE}


def progress(plan: dict[str, Any], sweep: PlannedSweep, records: Iterable[TrialRecord]) -> tuple[int, int]:
    """(planned points with a final record, planned points): below the second, no verdict is drawn."""
    where = arm_of(plan, sweep)
    done = {where[r.config_hash] for r in records if r.final and r.config_hash in where}
    return len(done), len(plan["arms"]) * len(plan["seeds"])


def incomplete_text(done: int, planned: int, experiment_uri: str) -> str:
    return (f"held-out validation incomplete: {done} of {planned} arms x seeds done, no verdict yet; "
            f"`memlaw resume {experiment_uri}` continues it")
