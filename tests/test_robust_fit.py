"""The robust estimator (orchestrator/law/robust_fit.py), the left-out cells, and fit_law on data with no
signal: the three checks every printed statistic passes (a null, a duplicate, a bound) plus recovery."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.law.grouping import fit_groups, left_out_cells
from orchestrator.law.robust_fit import HUBER_DELTA, disagreements, fit_law_robust
from orchestrator.law.uncertainty import fit_law
from orchestrator.report.law_report import left_out_lines, robust_lines

RANKS = np.array([1.0, 2, 4, 8, 16, 32, 64])
LENGTHS = np.array([64.0, 128, 256, 512, 1024, 2048])
TRUE = dict(C=3.0, alpha=0.6, beta=0.4, b=0.2)


def _grid(noise: float, seed: int, replicates: int = 1):
    r, ell = (a.ravel() for a in np.meshgrid(RANKS, LENGTHS))
    r, ell = np.repeat(r, replicates), np.repeat(ell, replicates)
    y = TRUE["C"] * r ** TRUE["alpha"] * ell ** -TRUE["beta"] + TRUE["b"]
    y = y * np.exp(np.random.default_rng(seed).normal(0.0, noise, y.size))
    return r, ell, y, np.full(y.size, 5.0)


def test_recovers_the_law_from_exact_data():
    fit = fit_law_robust(*_grid(0.0, 0), n_boot=20)
    assert fit.status == "ok" and fit.n_cells == RANKS.size * LENGTHS.size
    for name, value in TRUE.items():
        assert getattr(fit, name) == pytest.approx(value, rel=1e-3, abs=1e-3), name


def test_one_outlying_cell_moves_least_squares_more_and_the_report_says_so():
    """One cell's ΔL doubled (a cell far off its plateau): Huber on log residuals is linear beyond δ, so
    the cell pulls the robust fit no harder than any other; least squares is pulled off the truth."""
    r, ell, y, lf = _grid(0.03, 1)
    y[5] *= 2.0
    robust, least_squares = fit_law_robust(r, ell, y, lf, n_boot=100), fit_law(r, ell, y, lf)
    assert abs(robust.alpha - TRUE["alpha"]) < 0.01
    assert abs(robust.alpha - TRUE["alpha"]) < abs(least_squares.alpha - TRUE["alpha"]) / 3
    found = disagreements(least_squares, robust)
    assert found and found[0].startswith("alpha:")
    lines = robust_lines({"robust": robust.to_dict(), "robust_disagrees": found})
    assert f"Huber δ={HUBER_DELTA:g}" in lines[0] and "WARNING the estimators disagree on alpha" in lines[1]


def test_agreement_is_said_when_neither_estimate_leaves_the_other_interval():
    r, ell, y, lf = _grid(0.03, 2)
    robust, least_squares = fit_law_robust(r, ell, y, lf, n_boot=100), fit_law(r, ell, y, lf)
    assert disagreements(least_squares, robust) == []
    assert robust_lines({"robust": robust.to_dict(), "robust_disagrees": []})[-1].endswith(
        "each exponent inside the other's interval")


def test_null_no_signal_gives_exponents_near_zero_with_intervals_that_cover_it():
    """ΔL that depends on neither rank nor length (5 % noise): α̂ and β̂ near 0, and the intervals cover
    0 in about 95 % of draws (measured: α 37 of 40, β 39 of 40; the bound below allows binomial noise)."""
    r, ell = (a.ravel() for a in np.meshgrid(RANKS[:5], LENGTHS[1:5]))
    r, ell = np.repeat(r, 2), np.repeat(ell, 2)
    covered = 0
    for seed in range(12):
        y = 3.0 * np.exp(np.random.default_rng(seed).normal(0.0, 0.05, r.size))
        fit = fit_law_robust(r, ell, y, np.full(r.size, 5.0), n_boot=60, seed=seed)
        assert abs(fit.alpha) < 0.2 and abs(fit.beta) < 0.2
        covered += fit.alpha_ci[0] <= 0.0 <= fit.alpha_ci[1]
    assert covered >= 9


def test_duplicate_records_leave_the_robust_fit_and_its_intervals_unchanged():
    r, ell, y, lf = _grid(0.03, 3)
    once = fit_law_robust(r, ell, y, lf, n_boot=50)
    twice = fit_law_robust(*(np.concatenate([a, a]) for a in (r, ell, y, lf)), n_boot=50)
    for name in ("alpha", "beta", "C", "b"):
        assert getattr(twice, name) == pytest.approx(getattr(once, name), rel=1e-9), name
    for name in ("alpha_ci", "beta_ci"):
        assert getattr(twice, name) == pytest.approx(getattr(once, name), rel=1e-9), name
    assert twice.n_cells == once.n_cells


def test_too_few_cells_gives_fit_law_status_not_a_number():
    r, ell, y, lf = _grid(0.0, 0)
    assert fit_law_robust(r[:3], ell[:3], y[:3], lf[:3]).status == fit_law(r[:3], ell[:3], y[:3], lf[:3]).status


def test_fit_law_never_raises_on_data_with_no_signal():
    """Regression: with ΔL flat in r and ℓ the profile's refits failed inside Brent's bracket (ValueError)
    and an unidentified ln C overflowed math.exp; fit_law promises never to raise on bad data."""
    r, ell = (a.ravel() for a in np.meshgrid(RANKS[:5], LENGTHS[1:5]))
    r, ell = np.repeat(r, 2), np.repeat(ell, 2)
    for seed in range(8):
        y = 3.0 * np.exp(np.random.default_rng(seed).normal(0.0, 0.05, r.size))
        fit = fit_law(r, ell, y, np.full(r.size, 5.0))
        assert fit.status in ("ok", "no_convergence")
        assert fit.to_dict()["status"] == fit.status


def test_left_out_cells_say_where_the_cut_fell():
    """Saturated cells, cells whose response is not positive (a drop-below-chance trial that ended above
    chance) and non-finite records: each cell once per reason, with its record count; the fit's counts agree."""
    x = np.array([1.0, 1, 2, 2, 4, 4, 8, 8, 16, 16])
    ell = np.array([64.0, 64, 64, 64, 128, 128, 128, 128, 64, 64])
    y = np.array([-0.1, -0.2, 1.0, 1.1, 2.0, 2.1, 3.0, np.nan, 6.0, 6.1])
    lf = np.array([6.0, 6.0, 4.0, 4.0, 3.0, 3.0, 2.0, 2.0, 0.5, 0.4])
    cells = left_out_cells(x, ell, y, lf)
    assert cells == ((8.0, 128.0, "not finite", 1), (16.0, 64.0, "saturated", 2), (1.0, 64.0, "y <= 0", 2))
    fit = fit_law(x, ell, y, lf)
    assert fit.n_excluded == 2 and fit.n_invalid == 3
    lines = left_out_lines({"left_out": [list(c) for c in cells], "capacity_variable": "rank",
                            "response": "drop_below_chance"})
    assert any("saturated" in line and "16×64 (2)" in line for line in lines)
    assert any("drop below chance <= 0" in line and "1×64 (2)" in line for line in lines)


def test_group_fit_carries_its_left_out_cells_through_json():
    from orchestrator.law.grouping import GroupFit
    from trainables import metric_names as mn

    rows = [{"group": "g", mn.RANK: x, mn.TRAINABLE_PARAMS: 10 * x, mn.TARGET_TOKENS: 64.0, mn.DELTA_LOSS: 6.0,
             mn.LOSS_FINAL: 0.3} for x in (1.0, 2.0)]
    group = fit_groups(rows)["g"]
    assert group.left_out == ((1.0, 64.0, "saturated", 1), (2.0, 64.0, "saturated", 1))
    assert GroupFit.from_dict(group.to_dict()) == group


@pytest.mark.slow  # spawns the CLI: the point is a fresh process with Ray unimportable
def test_law_robust_reads_storage_without_ray_and_is_refused_with_live(tmp_path):
    from test_structure import finished_experiment, run_without_ray

    uri = finished_experiment(tmp_path)
    run = run_without_ray("law", "--experiment", uri, "--robust")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "robust fit (Huber δ=0.001 on log residuals" in run.stdout
    assert "the estimators agree" in run.stdout or "WARNING the estimators disagree" in run.stdout
    live = run_without_ray("law", "--experiment", uri, "--robust", "--live")
    assert live.returncode == 2 and "Traceback" not in live.stderr
    assert "--robust" in live.stderr and len(live.stderr.strip().splitlines()) == 1, live.stderr
