"""A search's result without a law: best trials, Pareto front, the validation plan and its summary."""

from __future__ import annotations

import pytest

from orchestrator.search.best_trials import best_section, distinct_knob_sets, dominates, fronts, rank_trials
from orchestrator.config.sweep import SweepConfig
from orchestrator.records.trial_record import TrialRecord
from orchestrator.search.validation_plan import OT, SFT, arm_of, make_plan, points, summarize_validation
from orchestrator.search.validation_stats import NO_WINNER
from trainables import metric_names as K

EM, STABLE = K.GREEDY_EXACT_MATCH, K.STABLE_CERTIFIED_FROM


def rec(tid: str, em: float | None, stable: float | None, method: str = "memft", status: str = "ok",
        config: dict | None = None, **knobs) -> TrialRecord:
    config = config or {"method": {"name": method, **knobs}, "budget": {"lr": 0.01}}
    return TrialRecord(tid, "s", status, config, {EM: em, STABLE: stable}, config_hash=tid)


def test_dominance_and_fronts_by_hand():
    assert dominates((1, 1), (1, 0)) and not dominates((1, 0), (1, 0)) and not dominates((2, 0), (1, 1))
    # scores, larger is better: a(3,1) b(1,3) c(2,2) on front 0; d(1,1) dominated by c; e(0,0) by d
    assert fronts([(3, 1), (1, 3), (2, 2), (1, 1), (0, 0)]) == [0, 0, 0, 1, 2]


def test_pareto_front_of_max_em_min_stable_and_failed_or_incomplete_trials_left_out():
    records = [rec("a", 1.0, 100), rec("b", 0.5, 40), rec("c", 0.5, 80), rec("d", 1.0, 120),
               rec("e", None, 30), rec("f", 1.0, 10, status="nan")]
    section = best_section(records, [EM, STABLE], ["max", "min"])
    assert section["kind"] == "pareto"
    assert [r["trial_id"] for r in section["rows"]] == ["a", "b"]  # c and d are dominated
    assert (section["trials_ok"], section["trials_ranked"]) == (5, 4)  # e lacks a value, f failed
    assert [r.front for r in rank_trials(records, [EM, STABLE], ["max", "min"])] == [0, 0, 1, 1]


def test_single_objective_best_first_and_distinct_knob_sets():
    records = [rec("a", 0.2, 1, mix=0.5), rec("b", 0.9, 1, mix=0.3), rec("c", 0.9, 1, mix=0.3),
               rec("d", 0.5, 1, mix=0.1)]
    section = best_section(records, [EM], ["max"], top=3)
    assert section["kind"] == "best" and [r["trial_id"] for r in section["rows"]] == ["b", "c", "d"]
    top = distinct_knob_sets(rank_trials(records, [EM], ["max"]), 2)
    assert [r.trial_id for r in top] == ["b", "d"]  # c has b's knobs
    assert top[0].knobs == {"method.name": "memft", "method.mix": 0.3, "budget.lr": 0.01}


SWEEP = {"name": "v", "trial": {"model": {"name": "tiny-xs"}, "budget": {"steps": 10}}, "space": "memft_optuna",
         "search": {"kind": "optuna", "metrics": [EM], "modes": ["max"], "validate_top": 2, "validate_seeds": 3},
         "num_samples": 4}


def test_the_plan_skips_sft_settings_and_pairs_seeds():
    sweep = SweepConfig.from_dict(SWEEP)
    records = [rec("s", 1.0, 1, method="sft"), rec("z", 0.95, 1, mix=0.0),  # both SFT: SFT is its own arm
               rec("a", 0.9, 1, mix=0.4, threshold_margin=0.1), rec("b", 0.7, 1, mix=0.8)]
    plan = make_plan(sweep, records)
    assert [a["label"] for a in plan["arms"]] == [SFT, OT, "top1", "top2"]
    assert plan["arms"][2]["knobs"] == {"method.name": "memft", "method.mix": 0.4, "method.threshold_margin": 0.1}
    assert plan["arms"][2]["search"] == {"trial_id": "a", "values": {EM: 0.9}}
    assert len(plan["seeds"]) == 3 and len(points(plan)) == 12
    assert {p["seed"] for p in points(plan)} == set(plan["seeds"])
    assert all(p["seed"] == p["data.seed"] for p in points(plan))
    assert len(set(arm_of(plan, sweep))) == 12  # every planned trial has its own config


@pytest.mark.parametrize("gain, winner", [(0.2, "top1"), (0.0, None)])
def test_summary_pairs_by_seed_and_declares_a_winner_only_beyond_zero(gain, winner):
    sweep = SweepConfig.from_dict({**SWEEP, "search": {**SWEEP["search"], "validate_seeds": 5}})  # 5: can win
    plan = make_plan(sweep, [rec("a", 0.9, 1, mix=0.4)])
    where = {v: k for k, v in arm_of(plan, sweep).items()}
    records = []
    for i, seed in enumerate(plan["seeds"]):
        for label, em in ((SFT, 0.3 + 0.1 * i), (OT, 0.3 + 0.1 * i), ("top1", 0.3 + 0.1 * i + gain)):
            records.append(TrialRecord(f"{label}-{seed}", "v/validation", "ok", {}, {EM: em, STABLE: 50},
                                       config_hash=where[(label, seed)]))
    records.append(TrialRecord("stray", "v/validation", "ok", {}, {EM: 1.0}, config_hash="other"))
    summary = summarize_validation(plan, sweep, records)
    top = next(a for a in summary["arms"] if a["label"] == "top1")
    assert top["seeds_done"] == 5 and top["stats"][EM]["value"]["mean"] == pytest.approx(0.5 + gain)
    assert top["stats"][EM]["vs_baseline"]["mean"] == pytest.approx(gain)
    assert summary["verdict"]["winner"] == winner
    assert winner or summary["verdict"]["text"] == NO_WINNER
