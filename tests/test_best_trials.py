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
         "search": {"kind": "optuna", "metrics": [EM], "modes": ["max"], "validate_top": 2, "validate_seeds": 6},
         "num_samples": 4}


def test_the_plan_skips_sft_settings_and_pairs_seeds():
    sweep = SweepConfig.from_dict(SWEEP)
    records = [rec("s", 1.0, 1, method="sft"), rec("z", 0.95, 1, mix=0.0),  # both SFT: SFT is its own arm
               rec("a", 0.9, 1, mix=0.4, threshold_margin=0.1), rec("b", 0.7, 1, mix=0.8)]
    plan = make_plan(sweep, records)
    assert [a["label"] for a in plan["arms"]] == [SFT, OT, "top1", "top2"]
    assert plan["arms"][2]["knobs"] == {"method.name": "memft", "method.mix": 0.4, "method.threshold_margin": 0.1}
    assert plan["arms"][2]["search"] == {"trial_id": "a", "values": {EM: 0.9}, "last_step": None}
    assert len(plan["seeds"]) == 6 and len(points(plan)) == 4 * 6
    assert {p["seed"] for p in points(plan)} == set(plan["seeds"])
    assert all(p["seed"] == p["data.seed"] for p in points(plan))
    assert len(set(arm_of(plan, sweep))) == 4 * 6  # every planned trial has its own config


@pytest.mark.parametrize("gain, winner", [(0.2, "top1"), (0.0, None)])
def test_summary_pairs_by_seed_and_declares_a_winner_only_beyond_zero(gain, winner):
    sweep = SweepConfig.from_dict(SWEEP)  # 6 seeds: 2 arms compared with SFT, Holm's 0.025 >= 2^-6
    plan = make_plan(sweep, [rec("a", 0.9, 1, mix=0.4)])
    where = {v: k for k, v in arm_of(plan, sweep).items()}
    records = []
    for i, seed in enumerate(plan["seeds"]):
        for label, em in ((SFT, 0.2 + 0.1 * i), (OT, 0.2 + 0.1 * i), ("top1", 0.2 + 0.1 * i + gain)):
            records.append(TrialRecord(f"{label}-{seed}", "v/validation", "ok", {}, {EM: em, STABLE: 50},
                                       config_hash=where[(label, seed)]))
    records.append(TrialRecord("stray", "v/validation", "ok", {}, {EM: 1.0}, config_hash="other"))
    summary = summarize_validation(plan, sweep, records)
    top = next(a for a in summary["arms"] if a["label"] == "top1")
    assert top["seeds_done"] == 6 and top["stats"][EM]["value"]["mean"] == pytest.approx(0.45 + gain)
    assert top["stats"][EM]["vs_baseline"]["mean"] == pytest.approx(gain)
    assert summary["verdict"]["winner"] == winner
    assert winner or summary["verdict"]["text"].startswith(NO_WINNER)


def test_the_validations_primary_metric_is_recall_at_the_equal_budget():
    two = {**SWEEP["search"], "metrics": [STABLE, EM], "modes": ["min", "max"]}
    plan = make_plan(SweepConfig.from_dict({**SWEEP, "search": two}), [rec("a", 0.9, 1, mix=0.4)])
    assert plan["primary"] == {"metric": EM, "mode": "max"} and plan["modes"][STABLE] == "min"
    only_steps = {**SWEEP["search"], "metrics": [STABLE], "modes": ["min"]}
    plan = make_plan(SweepConfig.from_dict({**SWEEP, "search": only_steps}), [rec("a", 0.9, 1, mix=0.4)])
    assert plan["primary"] == {"metric": K.GREEDY_TOKEN_ACC, "mode": "max"}


CENSORED_SWEEP = {**SWEEP, "trial": {"model": {"name": "tiny-xs"}, "budget": {"steps": 100}, "eval": {"every": 20}},
                  "search": {**SWEEP["search"], "metrics": [STABLE, EM], "modes": ["min", "max"]}}


def censored_validation() -> tuple[dict, SweepConfig, list[TrialRecord]]:
    """SFT never certifies; MemFT-OT is certified only at its last evaluation (100); top1 stably from 80,
    top2 from 60 on odd seeds. Recall (exact match) is 1 on every arm and seed."""
    sweep = SweepConfig.from_dict(CENSORED_SWEEP)
    plan = make_plan(sweep, [rec("a", 1.0, 80, mix=0.4), rec("b", 1.0, 90, mix=0.8)])
    where = {v: k for k, v in arm_of(plan, sweep).items()}
    records = []
    for i, seed in enumerate(plan["seeds"]):
        for label, stable in ((SFT, 101), (OT, 100), ("top1", 80), ("top2", 60 if i % 2 else 101)):
            records.append(TrialRecord(f"{label}-{seed}", "v/validation", "ok", {}, {
                EM: 1.0, K.GREEDY_TOKEN_ACC: 1.0, K.FRAC_SEQUENCES_CERTIFIED: 1.0 if stable <= 100 else 0.875,
                STABLE: stable, K.STEP: 100}, config_hash=where[(label, seed)]))
    return plan, sweep, records


def test_a_validation_with_censored_steps_renders_bounds_and_a_recall_verdict():
    from orchestrator.report.law_report import format_search_report

    plan, sweep, records = censored_validation()
    summary = summarize_validation(plan, sweep, records)
    assert summary["metrics"] == [K.GREEDY_TOKEN_ACC, EM, K.FRAC_SEQUENCES_CERTIFIED]
    assert summary["censored_metrics"] == [STABLE]
    arms = {a["label"]: a["stats"] for a in summary["arms"]}
    assert "value" not in arms[SFT][STABLE]  # a censored step is never averaged
    assert arms[OT][STABLE]["censored"]["events"] == 0  # certified at its last evaluation only: censored
    assert arms[OT][STABLE]["vs_baseline_order"]["tied"] == 6  # no "1-step win" over SFT
    assert arms["top1"][STABLE]["vs_baseline_order"]["p_holm"] == pytest.approx(3 * 2 ** -6)  # 3 arms compared
    assert arms["top1"][EM]["vs_baseline"]["p"] == 1.0  # identical recall: the null
    for stats in arms.values():
        for m in summary["metrics"]:
            assert 0.0 <= stats[m]["value"]["lo"] <= stats[m]["value"]["hi"] <= 1.0
    v = summary["verdict"]
    assert (v["metric"], v["winner"], v["arms_compared"]) == (EM, None, 3)
    text = format_search_report("no law", {"kind": "best", "metrics": [EM], "modes": ["max"], "trials_ranked": 0,
                                           "rows": []}, summary)
    print(text)  # what `memlaw best` prints for this validation
    assert "top1 " in text and "vs SFT on stable_certified_from: 6 seeds earlier, 0 later" in text
    assert "median paired difference ≥ 20 fewer steps (SFT censored on 6/6 seeds, this arm on 0/6)" in text
    assert "0 seeds earlier, 0 later, 6 tied (6 both censored)" in text  # MemFT-OT
    assert "KM median not reached (> 100)" in text and "verdict: no setting beat SFT here" in text
    assert "stable_certified_from 1" not in text and "[-20" not in text and "[+0, +0]" not in text
    assert "vs SFT on greedy_exact_match: +0 on every one of 6 paired seeds; exact sign-flip p = 1" in text


def test_a_repeated_record_of_a_seed_changes_nothing():
    plan, sweep, records = censored_validation()
    again = [TrialRecord(f"{r.trial_id}-again", r.sweep, r.status, r.config, r.metrics, config_hash=r.config_hash)
             for r in records[:4]]  # the first seed's four arms, reported twice
    assert summarize_validation(plan, sweep, records + again) == summarize_validation(plan, sweep, records)


def test_too_few_validation_seeds_still_run_and_an_old_experiment_still_opens(tmp_path, capsys):
    """5 seeds for 3 arms cannot give a winner (the verdict says so, test_validation_stats), but a sweep
    file or a saved experiment with them is still valid: experiments from before the default rose open."""
    import yaml

    from orchestrator.cli import main as cli

    path = tmp_path / "few.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "search": {**SWEEP["search"], "validate_seeds": 5},
                                    "storage_path": str(tmp_path)}))
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_a_step_to_certification_that_never_came_is_a_bound_in_the_front_and_the_validation():
    """stable_certified_from is budget + 1 on a trial that never certified: a placeholder set by the
    budget, printed as '> 100' (its last step), never as the number 101 (issue 23, seen again in the
    Optuna example's Pareto front)."""
    from orchestrator.search.best_trials import format_best, value_text
    from trainables import metric_names as K

    section = {"kind": "pareto", "metrics": [K.GREEDY_TOKEN_ACC, K.STABLE_CERTIFIED_FROM], "modes": ["max", "min"],
               "trials_ranked": 2, "rows": [
                   {"trial_id": "a", "values": [0.5, 101], "knobs": {"method.name": "memft_sw"},
                    "metrics": {K.STEP: 100}},
                   {"trial_id": "b", "values": [0.25, 60], "knobs": {"method.name": "sft"}, "metrics": {K.STEP: 100}}]}
    rows = format_best(section).splitlines()[2:]
    assert rows[0].split()[:2] == ["0.5", ">"] and "> 100" in rows[0] and "101" not in rows[0]
    assert rows[1].split()[:2] == ["0.25", "60"]
    assert value_text(K.STEPS_TO_CERTIFIED, None, 200) == "> 200" and value_text(K.GREEDY_TOKEN_ACC, 0.25, 100) == "0.25"
