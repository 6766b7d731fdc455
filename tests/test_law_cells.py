"""The law's intervals count cells, not records (issue 23.2): the duplicate check, the null, the
identifiability report, the lack-of-fit test, the cluster bootstrap, and groups that never pool trials
whose ΔL differs for budget reasons. Pure math: milliseconds, no Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.law.uncertainty import fit_law  # noqa: E402
from orchestrator.records.trial_record import law_group_labels  # noqa: E402
from orchestrator.report.law_report import identification_lines  # noqa: E402
from test_law import grid, synthetic, true_delta  # noqa: E402

INTERVALS = ("C_ci", "alpha_ci", "beta_ci", "b_ci", "alpha_profile_ci", "beta_profile_ci")


def width(pair):
    return pair[1] - pair[0]


def doubled(columns, noise=0.0, seed=1):
    """Every record twice; the copy's ΔL times exp(noise · N(0, 1)) (init-like replicate noise)."""
    x, ell, delta, final = columns
    copy = delta * np.exp(noise * np.random.default_rng(seed).standard_normal(delta.size))
    return np.tile(x, 2), np.tile(ell, 2), np.concatenate([delta, copy]), np.tile(final, 2)


def test_repeating_every_record_leaves_every_interval_where_it_was():
    """The duplicate check: the same cells give the same fit, intervals, dof and profile, to the digit."""
    once = fit_law(*synthetic(seed=3, noise=0.03))
    twice = fit_law(*doubled(synthetic(seed=3, noise=0.03)))
    assert twice.n_points == 2 * once.n_points and twice.n_cells == once.n_cells and twice.dof == once.dof
    for name in ("C", "alpha", "beta", "b", *INTERVALS):
        assert getattr(twice, name) == pytest.approx(getattr(once, name), rel=1e-9), name


def test_init_like_replicates_do_not_narrow_the_interval_and_the_lack_of_fit_test_says_why():
    """A copy of each record with 1 % noise (the issue: α's interval narrowed 2.2× at record-level dof)
    moves α's width by under 5 %; the replicates' pure error (1 %) is far below the cells' scatter (3 %),
    so the lack-of-fit test rejects, which is what replicates on the same targets do."""
    once = fit_law(*synthetic(seed=3, noise=0.03))
    twice = fit_law(*doubled(synthetic(seed=3, noise=0.03), noise=0.01))
    assert width(twice.alpha_ci) == pytest.approx(width(once.alpha_ci), rel=0.05)
    assert width(twice.beta_ci) == pytest.approx(width(once.beta_ci), rel=0.05)
    assert once.lack_of_fit_p is None  # no replicates: nothing to test against
    assert twice.lack_of_fit_p < 1e-6 and "lack of fit" in twice.message


def test_replicates_as_noisy_as_the_cells_pass_the_lack_of_fit_test():
    """The law holds and replicates scatter as much as the cells do: the F test does not reject (this
    seed; over seeds its p is uniform, checked below at the 5 % level)."""
    rejections = 0
    for seed in range(40):
        x, ell = grid(repeats=3)
        delta = true_delta(x, ell) * np.exp(0.03 * np.random.default_rng(seed).standard_normal(x.size))
        fit = fit_law(x, ell, delta, np.full(x.size, 3.0), leave_one_length_out=False)
        rejections += fit.lack_of_fit_p < 0.05
    assert rejections <= 6  # 5 % of 40 is 2; P(Binomial(40, 0.05) > 6) < 0.5 %


def test_a_wrong_law_fails_the_lack_of_fit_test():
    """ΔL that bends in ln ℓ (a quadratic term the law cannot follow), replicates at 2 %."""
    x, ell = grid(repeats=3)
    bend = np.exp(0.15 * (np.log(ell) - np.log(ell).mean()) ** 2)
    delta = true_delta(x, ell) * bend * np.exp(0.02 * np.random.default_rng(0).standard_normal(x.size))
    fit = fit_law(x, ell, delta, np.full(x.size, 3.0), leave_one_length_out=False)
    assert fit.lack_of_fit_p < 1e-3


@pytest.mark.parametrize("seed", range(3))
def test_no_signal_in_rank_or_length_gives_exponents_whose_intervals_hold_zero(seed):
    """The null: ΔL = 2 · 5 % noise on a 4 × 4 grid. Both exponents' intervals (Wald and profile) hold 0."""
    x, ell = grid(ranks=np.array([1.0, 2, 4, 8]), lengths=np.array([64.0, 128, 256, 512]))
    delta = 2.0 * np.exp(0.05 * np.random.default_rng(seed).standard_normal(x.size))
    fit = fit_law(x, ell, delta, np.full(x.size, 3.0))
    assert fit.status == "ok", fit.message
    for name in ("alpha_ci", "beta_ci"):
        lo, hi = getattr(fit, name)
        assert lo <= 0.0 <= hi, (name, lo, hi)


def test_the_profile_interval_matches_the_wald_interval_where_the_law_is_nearly_linear():
    fit = fit_law(*synthetic(seed=1, noise=0.02, repeats=2))
    for wald, profile in (("alpha_ci", "alpha_profile_ci"), ("beta_ci", "beta_profile_ci")):
        assert getattr(fit, profile) == pytest.approx(getattr(fit, wald), abs=0.02 * width(getattr(fit, wald)))
    assert fit.identified is True


def test_an_offset_that_trades_against_the_exponents_is_reported():
    """3 × 3 cells at 5 % noise (seed 1): b's interval lets α move further than α's own interval. The fit
    says so in its message and `memlaw law` prints a WARNING line."""
    x, ell = grid(ranks=np.array([1.0, 2, 4]), lengths=np.array([64.0, 128, 256]))
    delta = true_delta(x, ell) * np.exp(0.05 * np.random.default_rng(1).standard_normal(x.size))
    fit = fit_law(x, ell, delta, np.full(x.size, 3.0))
    assert fit.identified is False
    moved = max(width(fit.alpha_over_b) - width(fit.alpha_ci), width(fit.beta_over_b) - width(fit.beta_ci))
    assert moved > 0 and "not identified" in fit.message
    lines = identification_lines(fit.to_dict())
    assert any(line.strip().startswith("WARNING not identified") for line in lines)


def test_replicates_of_four_cells_are_not_five_points():
    """Four cells cannot judge four parameters however many replicates they hold."""
    x, ell = grid(repeats=5, ranks=np.array([1.0, 4]), lengths=np.array([64.0, 256]))
    delta = true_delta(x, ell) * np.exp(0.01 * np.random.default_rng(0).standard_normal(x.size))
    fit = fit_law(x, ell, delta, np.full(x.size, 3.0))
    assert fit.status == "too_few_points" and "4 distinct (x, ℓ) cells" in fit.message


def test_the_bootstrap_resamples_cells_so_repeated_records_change_nothing():
    options = dict(interval_method="bootstrap", n_boot=40, seed=7, leave_one_length_out=False)
    once = fit_law(*synthetic(seed=2, noise=0.03), **options)
    twice = fit_law(*doubled(synthetic(seed=2, noise=0.03)), **options)
    assert once.n_boot == twice.n_boot > 30
    for name in ("alpha_ci", "beta_ci"):
        assert getattr(twice, name) == pytest.approx(getattr(once, name), rel=1e-9)
    assert once.alpha_ci[0] < once.alpha < once.alpha_ci[1]


def _config(**budget):
    return {"model": {"name": "tiny-s"}, "data": {"kind": "random", "random_share": 0.0, "seed": 0},
            "adapter": {"placement": "paper", "rank": 2, "layer": None}, "method": {"name": "sft"},
            "budget": {"steps": 200, "lr": 0.03, **budget}, "seed": 0}


def test_trials_that_differ_in_budget_are_never_pooled_in_one_fit():
    same = law_group_labels([_config(), {**_config(), "seed": 1}])
    assert same == ["tiny-s|random|0|paper|sft"] * 2  # replicate seeds: one group, the usual label
    split = law_group_labels([_config(), _config(steps=600), _config(steps=600, lr=0.01)])
    assert split == ["tiny-s|random|0|paper|sft|budget.lr=0.03,budget.steps=200",
                     "tiny-s|random|0|paper|sft|budget.lr=0.03,budget.steps=600",
                     "tiny-s|random|0|paper|sft|budget.lr=0.01,budget.steps=600"]
    knobs = law_group_labels([{**_config(), "method": {"name": "sft", "margin": 0.1}},
                              {**_config(), "method": {"name": "sft", "margin": 0.2}}])
    assert knobs[0] != knobs[1] and "method.margin=0.1" in knobs[0]


def test_memlaw_law_says_what_a_cells_replicates_vary():
    from orchestrator.records.trial_record import record_from_result
    from orchestrator.report.law_report import build_report, format_report
    from test_records import config, result

    def rec(i, rank, ell, seed, data_seed):
        cfg = config(rank, ell, seed=seed)
        cfg["data"]["seed"] = data_seed
        return record_from_result(f"t{i}", "law", cfg, result(rank, ell, 0.5 + 0.1 * rank - 0.001 * ell))

    cells = [(r, ell) for r in (1, 2, 4) for ell in (64, 128)]
    init_only = [rec(i * 2 + k, r, ell, k, 0) for i, (r, ell) in enumerate(cells) for k in (0, 1)]
    fresh = [rec(i * 2 + k, r, ell, k, k) for i, (r, ell) in enumerate(cells) for k in (0, 1)]
    assert "replicates vary: init only (same targets)" in format_report(build_report("law", init_only))
    assert "replicates vary: fresh init and fresh targets" in format_report(build_report("law", fresh))
    assert "replicates vary" not in format_report(build_report("law", fresh[::2]))  # one record per cell
