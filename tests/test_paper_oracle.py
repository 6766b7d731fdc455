"""The paper-size oracle (orchestrator/law/paper_oracle.py), the trial cost model (trial_cost.py) and the
cost-aware adaptive design driven on the oracle, all without Ray: deterministic answers, the law
recovered from noise-free data, saturation left out as the fit leaves it out, ℓ = 10,000 priced far
above ℓ = 500, and a design that reaches its stopping rule for less than the grid order costs while
its intervals cover the true exponents."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import REPO
from orchestrator.law import adaptive_design as ad
from orchestrator.law import design_points
from orchestrator.law import paper_oracle as po
from orchestrator.law import trial_cost as tc
from orchestrator.law.fit import LN2
from search_spaces.law_grid import PAPER_FULL_LENGTHS, PAPER_FULL_RANKS
from trainables import metric_names as mn

PAPER_POINTS = [(r, ell) for r in PAPER_FULL_RANKS for ell in PAPER_FULL_LENGTHS]
#: A 35-point slice of the paper's grid across the capacity edge (9 of its cells saturate without noise):
#: small enough to drive the design on 10 seeds in about a second.
SMALL_RANKS, SMALL_LENGTHS = (1, 2, 4, 8, 16, 32, 64), (100, 300, 1000, 3000, 10000)


# -- the oracle ------------------------------------------------------------------------------------


def test_the_oracle_is_deterministic_per_seed_and_cell_whatever_the_order():
    a, b = po.Oracle(seed=3), po.Oracle(seed=3)
    forward = [a.answer(p) for p in PAPER_POINTS[:40]]
    backward = [b.answer(p) for p in reversed(PAPER_POINTS[:40])][::-1]
    assert forward == backward
    other = [po.Oracle(seed=4).answer(p)[mn.DELTA_LOSS] for p in PAPER_POINTS[:40]]
    assert other != [r[mn.DELTA_LOSS] for r in forward]
    # the two noise levels share z: the 10 % answer is the 3 % answer's log-deviation scaled
    point = (4, 2000)
    true = float(po.PAPER_LAW.delta(*point))
    low, high = po.Oracle(noise=0.03, seed=3).answer(point), po.Oracle(noise=0.10, seed=3).answer(point)
    assert math.log(high[mn.DELTA_LOSS] / true) == pytest.approx(math.log(low[mn.DELTA_LOSS] / true) / 0.03 * 0.10)


def test_noise_is_multiplicative_at_the_stated_level():
    """ln(ΔL_obs / f) over the unsaturated cells of 10 seeds has mean ≈ 0 and sd ≈ σ."""
    for sigma in po.NOISE_LEVELS:
        logs = [math.log(o[mn.DELTA_LOSS] / float(po.PAPER_LAW.delta(o[mn.RANK], o[mn.TARGET_TOKENS])))
                for seed in range(10) for o in map(po.Oracle(noise=sigma, seed=seed).answer, PAPER_POINTS)
                if o[mn.LOSS_FINAL] >= LN2]
        assert abs(np.mean(logs)) < 0.15 * sigma and np.std(logs) == pytest.approx(sigma, rel=0.1)


def test_noise_free_answers_give_back_the_law_and_the_fit_leaves_out_the_saturated_cells():
    oracle = po.Oracle(noise=0.0)
    law = oracle.law
    assert (law.alpha, law.beta, law.b, law.loss_init) == (0.78, 0.62, 0.1, 13.0)
    fit = po.grid_fit(oracle, PAPER_POINTS)
    assert fit.status == "ok"
    assert (fit.alpha, fit.beta) == (pytest.approx(0.78, abs=1e-6), pytest.approx(0.62, abs=1e-6))
    assert (fit.C, fit.b) == (pytest.approx(law.C, rel=1e-5), pytest.approx(law.b, abs=1e-6))
    saturated = [p for p in PAPER_POINTS if law.loss_init - float(law.delta(*p)) < LN2]
    assert fit.n_excluded == len(saturated) and 0.2 < len(saturated) / len(PAPER_POINTS) < 0.5  # spans the edge
    assert fit.n_points == len(PAPER_POINTS) - len(saturated)


def test_saturation_sits_at_the_capacity_edge_and_is_floored():
    oracle = po.Oracle(noise=0.0)
    law = oracle.law
    for r in (4, 16, 64):
        edge = law.edge_length(r)
        below, above = oracle.answer((r, edge * 0.99)), oracle.answer((r, edge * 1.01))
        assert below[mn.LOSS_FINAL] < LN2 <= above[mn.LOSS_FINAL]
    deep = oracle.answer((512, 50))  # far past the edge: the loss floors, ΔL stops at L_init − floor
    assert deep[mn.LOSS_FINAL] == po.LOSS_FLOOR and deep[mn.DELTA_LOSS] == pytest.approx(law.loss_init - po.LOSS_FLOOR)
    assert law.edge_length(1) < 50 and law.edge_length(512) > 10_000  # the edge crosses the whole grid


# -- the cost model --------------------------------------------------------------------------------


def test_the_8b_shapes_are_their_published_configs():
    for shape, folder in ((tc.QWEN3_8B, "Qwen--Qwen3-8B"), (tc.LLAMA31_8B, "meta-llama--Llama-3.1-8B-Instruct")):
        config = json.loads((REPO / "tests" / "data" / "hf_configs" / folder / "config.json").read_text())
        assert tc.ModelShape.from_hf_config(config, shape.adapter_layer, name=shape.name) == shape


def test_the_cost_model_orders_long_targets_far_above_short_ones_and_ignores_the_rank():
    cost = tc.FlopCost(tc.QWEN3_8B)
    short, long_, long_high_rank = cost.seconds([(1, 500), (1, 10_000), (512, 10_000)])
    assert long_ > 10 * short and long_ == long_high_rank
    seconds = cost.seconds([(1, ell) for ell in PAPER_FULL_LENGTHS])
    assert np.all(np.diff(seconds) > 0)  # every longer target costs more
    uncached = tc.FlopCost(tc.ModelShape(**{**tc.QWEN3_8B.__dict__, "cached": False}))
    assert uncached.seconds([(1, 5000)])[0] > cost.seconds([(1, 5000)])[0]  # the prefix cache saves time
    assert tc.UniformCost().seconds([(1, 500), (1, 10_000)]).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="mfu"):
        tc.FlopCost(tc.QWEN3_8B, mfu=0)


def test_measured_times_replace_the_prior_where_measured_and_keep_its_shape_elsewhere():
    prior = tc.FlopCost(tc.QWEN3_8B)
    assert tc.with_measurements(prior, [(1, 500)], [None]) is prior  # nothing usable: the prior
    measured = tc.with_measurements(prior, [(1, 500), (4, 500), (2, 5000)], [300.0, 500.0, 2000.0])
    got = measured.seconds([(8, 500), (1, 5000), (1, 100), (1, 10_000)])
    assert got[0] == pytest.approx(math.sqrt(300.0 * 500.0))  # geometric mean of the two at ℓ = 500
    assert got[1] == pytest.approx(2000.0)
    p = prior.seconds([(1, 100), (1, 500), (1, 5000), (1, 10_000)])
    assert got[2] / got[0] == pytest.approx(p[0] / p[1])  # beyond the measured lengths: the prior's shape
    assert got[3] / got[1] == pytest.approx(p[3] / p[2])


# -- the cost-aware design on the oracle -------------------------------------------------------------


def _tolerances(oracle: po.Oracle, candidates, k: float = 1.25) -> ad.Settings:
    fit = po.grid_fit(oracle, candidates.points)
    return ad.Settings(alpha_tol=k * (fit.alpha_ci[1] - fit.alpha_ci[0]),
                       beta_tol=k * (fit.beta_ci[1] - fit.beta_ci[0]), initial_points=6)


def test_the_cost_aware_design_reaches_the_rule_for_less_than_the_grid_order_and_covers_the_exponents():
    """10 seeds at 3 % noise, the rule at 1.25x the grid's own widths. Coverage is judged as a rate: the
    intervals are nominal 95 %, and a rule that stops when the estimated width first falls below the
    tolerance stops more often on a lucky small s² (optional stopping), more so on a small grid where
    it can stop at 10 cells (on 40 seeds of this grid: 34 and 36 of 40 against the grid's 37 and 39).
    A biased or overconfident fit falls well below 7 of 10, and no seed's estimate is far off."""
    candidates = design_points.candidates_from_values(SMALL_RANKS, SMALL_LENGTHS)
    adaptive, grid_order, covered = [], [], np.zeros(2, dtype=int)
    for seed in range(10):
        oracle = po.Oracle(noise=0.03, seed=seed)
        settings = _tolerances(oracle, candidates)
        run = po.run_design(ad.AdaptiveDesign(candidates, settings, oracle.cost), oracle)
        walk = po.run_order(ad.AdaptiveDesign(candidates, settings), oracle, list(candidates.points))
        assert run.reached and walk.reached and len(set(run.points)) == run.trials  # the rule fired, no point twice
        covered += run.covers(oracle.law)
        fit = run.fit
        assert abs(fit.alpha - 0.78) < 2 * (fit.alpha_ci[1] - fit.alpha_ci[0]), fit
        assert abs(fit.beta - 0.62) < 2 * (fit.beta_ci[1] - fit.beta_ci[0]), fit
        adaptive.append(run.seconds)
        grid_order.append(walk.seconds)
    assert np.mean(adaptive) < 0.8 * np.mean(grid_order)
    assert covered.min() >= 7, covered


def test_scoring_per_second_prefers_cheap_points_that_per_trial_scoring_does_not():
    candidates = design_points.candidates_from_values(SMALL_RANKS, SMALL_LENGTHS)
    oracle = po.Oracle(noise=0.03, seed=0)
    settings = _tolerances(oracle, candidates)
    aware = po.run_design(ad.AdaptiveDesign(candidates, settings, oracle.cost), oracle)
    blind = po.run_design(ad.AdaptiveDesign(candidates, ad.Settings(**{**settings.__dict__, "cost_aware": False}),
                                            oracle.cost), oracle)
    n0 = settings.initial_points
    assert aware.points[:n0] == blind.points[:n0]  # the same initial design
    first = n0 + 3
    assert oracle.seconds(aware.points[n0:first]).mean() < oracle.seconds(blind.points[n0:first]).mean()


def test_a_cost_budget_stops_the_design_before_it_is_spent():
    candidates = design_points.candidates_from_values(SMALL_RANKS, SMALL_LENGTHS)
    oracle = po.Oracle(noise=0.03, seed=1)
    budget = 0.15 * float(oracle.seconds(candidates.points).sum())
    settings = ad.Settings(alpha_tol=1e-6, beta_tol=1e-6, cost_budget=budget)  # tolerances never met
    design = ad.AdaptiveDesign(candidates, settings, oracle.cost)
    run = po.run_design(design, oracle)
    assert run.stopped == "cost_budget" and run.seconds <= budget
    cheapest = float(oracle.seconds(candidates.points).min())
    assert run.seconds > budget - 10 * cheapest  # it spent the budget down, not stopped at once
    with pytest.raises(ValueError, match="cost_budget"):
        ad.Settings(cost_budget=-1.0)


def test_the_design_counts_measured_seconds_as_spent():
    candidates = design_points.candidates_from_values(SMALL_RANKS, SMALL_LENGTHS)
    design = ad.AdaptiveDesign(candidates, ad.Settings(), tc.FlopCost(tc.QWEN3_8B))
    state = ad.AdaptiveState()
    oracle = po.Oracle(seed=0)
    state.propose("a", (2, 100))
    state.propose("b", (8, 1000))
    state.complete("a", {**oracle.answer((2, 100)), mn.WALL_S: 123.0})
    predicted = float(design.prior.seconds([(8, 1000)])[0]) * 123.0 / float(design.prior.seconds([(2, 100)])[0])
    assert design.spent(state) == pytest.approx(123.0 + predicted)  # running: the prior scaled by the measurement


def test_a_bad_cost_budget_is_refused_naming_the_field_and_range():
    from orchestrator.config.sweep import ConfigError, SweepConfig

    sweep = {"name": "ad", "trial": {"model": {"name": "tiny-s"}, "data": {"kind": "random"}},
             "space": "law_grid_cpu", "storage_path": "/tmp/memlaw-test-unused"}
    ok = SweepConfig.from_dict({**sweep, "search": {"kind": "adaptive", "cost_budget_hours": 2.5}})
    from orchestrator.search.kinds import search_of

    assert search_of(ok).settings(ok).cost_budget == 2.5 * 3600
    for bad in (-1, 2e6, "lots"):
        with pytest.raises(ConfigError) as err:
            SweepConfig.from_dict({**sweep, "search": {"kind": "adaptive", "cost_budget_hours": bad}})
        assert [p.field for p in err.value.problems] == ["search.cost_budget_hours"]
        if bad != "lots":
            assert "[0.0, 1000000.0]" in err.value.problems[0].message
    with pytest.raises(ConfigError, match="only for search.kind adaptive"):
        SweepConfig.from_dict({**sweep, "space": "law_grid_smoke", "search": {"kind": "grid", "cost_budget_hours": 1}})
