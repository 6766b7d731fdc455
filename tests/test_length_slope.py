"""β as per-replicate slopes (orchestrator/law/length_slope.py) and the law's held-out prediction
(orchestrator/law/holdout.py): the null, duplicate and bound checks every printed statistic passes.
Pure math, milliseconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.law.holdout import held_out
from orchestrator.law.length_slope import length_slope

LENGTHS = (32, 64, 128, 256)


def _law(r, ell, C=40.0, alpha=0.5, beta=0.6, b=0.0):
    return C * r ** alpha * ell ** (-beta) + b


def _rows(beta=0.6, noise=0.05, replicates=3, seed=0, final=2.0):
    rng = np.random.default_rng(seed)
    return [(f"s{j}", ell, _law(1, ell, beta=beta) * math.exp(rng.normal(0, noise)), final)
            for j in range(replicates) for ell in LENGTHS]


def test_the_slope_recovers_beta_and_its_interval_covers_it():
    fit = length_slope(_rows(beta=0.6))
    assert fit.status == "ok" and fit.dof == 2 and len(fit.slopes) == 3 and fit.lengths == LENGTHS
    assert fit.beta_ci[0] < 0.6 < fit.beta_ci[1] and fit.beta == pytest.approx(0.6, abs=0.1)
    assert "per-replicate slopes" in fit.message and "of ΔL" in fit.message and "offset b is 0" in fit.message
    assert "of the drop below chance" in length_slope(_rows(), response="the drop below chance").message


def test_null_no_length_dependence_gives_a_beta_near_zero_whose_interval_holds_zero():
    fit = length_slope(_rows(beta=0.0, noise=0.05, seed=3))
    assert abs(fit.beta) < 0.05 and fit.beta_ci[0] < 0 < fit.beta_ci[1]


def test_duplicate_a_repeated_record_moves_neither_the_estimate_nor_the_interval():
    rows = _rows()
    once = length_slope(rows)
    twice = length_slope(rows + [rows[0], rows[5]] * 4)
    assert twice.beta == pytest.approx(once.beta) and twice.beta_ci == pytest.approx(once.beta_ci)
    assert twice.dof == once.dof == 2  # replicates, not records, set the degrees of freedom


def test_bound_a_saturated_cell_is_dropped_from_every_replicate_and_reported_as_a_bound():
    rows = [(rep, ell, y, 0.01 if (ell == 32 and rep == "s1") else lf) for rep, ell, y, lf in _rows()]
    fit = length_slope(rows)
    assert fit.lengths == (64, 128, 256) and fit.dropped_lengths == (32,)
    (cell,) = fit.saturated
    assert (cell.replicate, cell.ell) == ("s1", 32) and cell.delta_loss == pytest.approx(rows[4][2])
    # the same slopes as if ℓ 32 had never been run: the bound is not averaged in
    without = length_slope([r for r in rows if r[1] != 32])
    assert fit.beta == pytest.approx(without.beta) and fit.beta_ci == pytest.approx(without.beta_ci)


def test_too_little_data_says_why_instead_of_printing_a_number():
    assert length_slope([]).status == "no_rows"
    one = length_slope(_rows(replicates=1))
    assert one.status == "one_replicate" and one.beta_ci is None and "no interval" in one.message
    saturated = [(rep, ell, y, 0.0 if ell > 32 else lf) for rep, ell, y, lf in _rows()]
    assert length_slope(saturated).status == "too_few_lengths" and length_slope(saturated).beta is None


# -- the held-out prediction ------------------------------------------------------------------------


def _grid(ranks=(1, 2, 4), lengths=(64, 128, 256), noise=0.0, seed=0, b=1.0):
    """Two records per cell sharing the cell's noise (so repeating one leaves the cell's mean alone)."""
    rng = np.random.default_rng(seed)
    cells = [(r, ell, _law(r, ell, b=b) * math.exp(rng.normal(0, noise))) for r in ranks for ell in lengths]
    rows = [(r, ell, y, 2.0) for r, ell, y in cells for _ in range(2)]
    return [np.array(c, dtype=float) for c in zip(*rows)]


def test_null_data_on_the_law_is_predicted_out_of_sample_with_no_error():
    x, ell, y, lf = _grid()
    out = held_out(x, ell, y, lf, x < 4, identify=False)
    assert out.status == "ok" and out.extrapolates and len(out.cells) == 3
    assert out.mape < 0.5 and all(c.error is not None for c in out.cells)
    assert "outside that range" in out.message


def test_duplicate_held_out_or_training_records_leave_the_error_unchanged():
    x, ell, y, lf = _grid(noise=0.05, seed=1)
    base = held_out(x, ell, y, lf, x < 4, identify=False)
    dup = [np.concatenate([c, c[:1], c[-1:]]) for c in (x, ell, y, lf)]  # one training, one held-out record again
    again = held_out(*dup, dup[0] < 4, identify=False)
    assert again.mape == pytest.approx(base.mape) and again.fit.n_cells == base.fit.n_cells == 6
    assert again.fit.dof == base.fit.dof == 2  # cells, not records: the training fit is no more certain
    assert [c.records for c in again.cells][-1] == 3


def test_bound_a_saturated_held_out_cell_is_a_bound_not_a_scored_error():
    x, ell, y, lf = _grid(noise=0.05, seed=2)
    lf = np.where((x == 4) & (ell == 64), 0.1, lf)
    out = held_out(x, ell, y, lf, x < 4, identify=False)
    cell = next(c for c in out.cells if c.ell == 64)
    assert cell.saturated and cell.error is None
    assert len([c for c in out.cells if c.error is not None]) == 2 and "1 saturated (bounds" in out.message


def test_no_training_fit_is_reported_not_predicted_from():
    x, ell, y, lf = _grid()
    out = held_out(x, ell, y, lf, x == 1, identify=False)  # one rank: the law cannot be fitted
    assert out.status == "one_capacity" and out.cells == () and out.mape is None
