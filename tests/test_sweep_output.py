"""What a sweep prints (orchestrator/tune/sweep_output.py): pure text, tested in milliseconds."""

from __future__ import annotations

from orchestrator.search.trial_label import law_point
from orchestrator.tune.sweep_output import duration, eta_s, fit_line, trial_line, trial_table
from trainables import metric_names as K


def _config(rank: int, ell: int, sequences: int = 1) -> dict:
    return {"adapter": {"rank": rank}, "data": {"target_tokens": ell, "num_sequences": sequences}}


GRID_KEYS = (K.DELTA_LOSS, K.FRAC_P_GT_HALF, K.GREEDY_EXACT_MATCH)


def test_eta_is_this_runs_rate_times_what_is_left():
    assert eta_s(done_total=4, total=16, done_this_run=4, elapsed_s=60.0) == 180.0
    # a resumed run: 10 done before, 2 in this run's 60 s -> 4 left at 30 s each
    assert eta_s(done_total=12, total=16, done_this_run=2, elapsed_s=60.0) == 120.0
    assert eta_s(done_total=3, total=16, done_this_run=0, elapsed_s=60.0) is None
    assert [duration(s) for s in (7, 65, 3725)] == ["7s", "1m05s", "1h02m"]


def test_a_trial_line_has_progress_axes_metrics_status_and_eta():
    metrics = {K.DELTA_LOSS: 4.7669, K.FRAC_P_GT_HALF: 0.0078, K.GREEDY_EXACT_MATCH: 0.0}
    line = trial_line(3, 16, law_point(_config(4, 128)), metrics, GRID_KEYS, "ok", elapsed_s=45.0, eta=195.0)
    assert line == " 3/16 done  rank 4 x ℓ 128: ΔL 4.77, certified 0.01, greedy EM 0.00, ok   elapsed 45s, ETA 3m15s"
    assert trial_line(1, 2, "x", {}, GRID_KEYS, "failed", 5.0, None).endswith(
        "ΔL -, certified -, greedy EM -, failed   elapsed 5s, ETA -")


def test_a_trial_is_named_by_the_l_of_the_law_and_a_search_trial_by_its_knobs_and_objectives():
    """issue 25 item 4: the Optuna example's lines read 'rank 4 x l 32' (per sequence, 8 sequences: the
    law's ℓ is 256) and showed neither the method, its knobs nor the search's objectives."""
    from orchestrator.config.sweep import SweepConfig
    from orchestrator.search.kinds import search_of

    assert law_point(_config(2, 32, sequences=8)) == "rank 2 x ℓ 256 (8 seq x 32)"
    sweep = SweepConfig.from_dict({"name": "opt", "trial": {"model": {"name": "tiny-xs"}}, "space": "memft_optuna",
                                   "search": {"kind": "optuna", "metrics": ["greedy_token_acc", "stable_certified_from"],
                                              "modes": ["max", "min"]}, "num_samples": 4})
    kind = search_of(sweep)
    memft = sweep.trial_config({"method.name": "memft", "method.mix": 0.4213, "method.threshold_margin": 0.1337})
    lr = sweep.trial_config({}).budget.lr
    assert kind.trial_label(sweep, memft.to_dict()) == f"memft threshold_margin=0.134 mix=0.421 lr={lr:.3g}"
    assert kind.trial_label(sweep, sweep.trial_config({"method.name": "memft_sw"}).to_dict()) == f"memft_sw lr={lr:.3g}"
    line = trial_line(1, 4, "sft", {K.GREEDY_TOKEN_ACC: 0.4519, K.STABLE_CERTIFIED_FROM: 80, K.STEP: 100},
                      kind.line_metrics(sweep), "ok", 9.0, None)
    assert "sft: greedy token acc 0.452, stable_certified_from 80, ok" in line, line
    # never certified within its 100 steps: the metric holds budget + 1, a censoring placeholder
    never = trial_line(2, 4, "sft", {K.GREEDY_TOKEN_ACC: 0.1, K.STABLE_CERTIFIED_FROM: 101, K.STEP: 100},
                       kind.line_metrics(sweep), "ok", 9.0, None)
    assert "stable_certified_from > 100, ok" in never and "101" not in never, never


def _report(status="ok"):
    fit = {"status": status, "alpha": 0.588, "alpha_ci": [0.503, 0.672], "beta": 0.399, "beta_ci": [0.336, 0.463],
           "r2": 0.99591, "n_points": 16}
    return {"trials_accepted": 16, "groups": {"tiny-s|random": {"fit": fit, "n_rows": 16}}}


def test_the_fit_line_names_alpha_beta_with_intervals_r2_and_points():
    assert fit_line(_report()) == ["law after 16 trials, group tiny-s|random: alpha 0.588 [0.503, 0.672]  "
                                   "beta 0.399 [0.336, 0.463]  R² 0.9959  points 16 of 16"]
    assert fit_line(_report("too_few_points")) == ["law after 16 trials, group tiny-s|random: too_few_points "
                                                   "(16 points)"]
    assert fit_line({"trials_accepted": 0, "groups": {}}) == ["law after 0 trials: no finished trials yet"]


def test_the_final_table_sorts_rank_then_length_and_shows_every_status():
    records = [{"trial_id": "b", "config": _config(2, 64), "status": "ok",
                "metrics": {K.DELTA_LOSS: 3.5, K.FRAC_P_GT_HALF: 0.25, K.GREEDY_EXACT_MATCH: 0.5}},
               {"trial_id": "a", "config": _config(2, 32), "status": "nan", "metrics": {}},
               {"trial_id": "c", "config": _config(1, 64), "status": "pruned",
                "metrics": {K.DELTA_LOSS: 1.0, K.FRAC_P_GT_HALF: 0.0, K.GREEDY_EXACT_MATCH: 0.0}}]
    assert trial_table(records).splitlines() == [
        "rank   ℓ   ΔL  certified  greedy EM  status",
        "----  --  ---  ---------  ---------  ------",
        "   1  64    1      0.000      0.000  pruned",
        "   2  32    -          -          -  nan",
        "   2  64  3.5      0.250      0.500  ok"]


def test_the_running_line_gives_each_trial_its_own_budget(capsys):
    """A grid over budget.steps: the running line says step k of the trial's own steps, never the base
    trial's (a 1200-step trial read 'step 100/150' before)."""
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    from orchestrator.config.sweep import SweepConfig
    from orchestrator.tune.running_line import RunningLine

    sweep = SweepConfig.from_dict({"name": "ladder", "trial": {"model": {"name": "tiny-xs"},
                                                                "budget": {"preset": "cpu", "steps": 150}},
                                   "space": "law_grid_smoke", "space_overrides": {"budget.steps": [300, 1200]}})
    trials = [SimpleNamespace(trial_id=f"t{steps}", status=Trial.RUNNING, config={"budget.steps": steps},
                              last_result={K.STEP: 100, K.LOSS_FINAL: 2.5}) for steps in (300, 1200)]
    RunningLine(sweep).report(trials, False)
    line = capsys.readouterr().err
    assert "step 100/300" in line and "step 100/1200" in line and "/150" not in line, line


def test_the_validation_phase_names_each_running_trial_by_method_and_seed(capsys):
    """issue 25 item 3: the validation phase prints the sweep's running line (method, seed, step, k/n),
    not Tune's status tables; its trials' configs are planned points."""
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    from orchestrator.config.sweep import SweepConfig
    from orchestrator.search.validation_plan import POINT
    from orchestrator.tune.validation_phase import _reporter

    sweep = SweepConfig.from_dict({"name": "opt", "trial": {"model": {"name": "tiny-xs"},
                                                             "budget": {"preset": "cpu", "steps": 40}},
                                   "space": "memft_optuna", "search": {"kind": "optuna"}, "num_samples": 4})
    trials = [SimpleNamespace(trial_id="v1", status=Trial.RUNNING, last_result={K.STEP: 20, K.LOSS_FINAL: 1.5},
                              config={POINT: {"method.name": "memft_sw", "seed": 100001}}),
              SimpleNamespace(trial_id="v2", status=Trial.TERMINATED, last_result={}, config={POINT: {"seed": 7}})]
    _reporter(sweep, total=24).report(trials, False)
    line = capsys.readouterr().err
    assert "memft_sw seed 100001 (step 20/40, loss 1.5)" in line and "[1/24 done]" in line, line
