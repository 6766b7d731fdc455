"""The law's fit with its uncertainty and quality: fit_law, Σ, intervals, R², MAPE, leave-one-length-out.

fit_law is the entry point to the law: adaptive_design.py, bench/law_refit.py and fit_groups
(grouping.py, through which the results actor, `memlaw law`, the plot and the reproduction fit)
call it. It lives here, not in fit.py, because every LawFit it returns carries its intervals and
quality figures: fit.py filters the records and finds θ̂ (_usable_records, _point_fit), and this
module adds the covariance Σ, the 95 % intervals (CONFIDENCE, fit.py) by the covariance or by the
bootstrap, R² and MAPE, and the leave-one-length-out check of whether the law extrapolates in ℓ.
It imports fit.py only; fit.py imports nothing from here.

It takes the t quantile from scipy.special, not scipy.stats: scipy 1.17's scipy.stats fails to
import when a test blocks torch with sys.modules["torch"] = None.

Notation (fit.py's: n records, k cells, θ = (ln C, α, β, b), f(x, ℓ), ρ = (f − ΔL) / ΔL, centre c_x, c_ℓ)
  J        ∂ρ/∂θ, shape (n, 4); the solver's Jacobian is in (a, α, β, b) on the k cells (exact: the
           cells keep JᵀJ), and ∂(ln C, α, β, b)/∂(a, α, β, b) carries the covariance to θ
  s²       Σ_c ρ_c² / (k − 4) over the k cells (each cell one observation, fit.py "Why cells"):
           residual variance (dimensionless); k − 4 is the fit's dof
  Σ        covariance of θ, shape (4, 4), s² (JᵀJ)⁻¹; None when J is numerically rank-deficient
  t        t(0.975, k − 4), Student's t quantile: covariance intervals are θ̂ ± t · √diag Σ
  R², MAPE on ΔL (y) itself, not on ln ΔL: MAPE = 100 · mean |f − y| / y (percent)

The bootstrap resamples cells (a cluster bootstrap) with a seed, refits each set warm-started from θ̂
and takes the 2.5 and 97.5 percentiles; C's interval is exp of ln C's in either method, so it is
positive and asymmetric. Relative residuals are what make the covariance intervals cover (fit.py's
"Why relative residuals").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from orchestrator.law.fit import (
    CONFIDENCE, RESPONSES, LawFit, _Cells, _check_options, _identifiable, _natural_jacobian, _no_convergence,
    _observations, _point_fit, _predict, _Records, _Solution, _solve, _usable_records, comparability,
)
from orchestrator.law import identifiability
from trainables import metric_names as mn

#: Leave-one-length-out refits once per distinct ℓ; beyond this many lengths (ℓ measured per trial
#: rather than set by a grid) it would cost seconds per refit, so it is skipped and the message says so.
LOLO_MAX_LENGTHS = 64


# -- the fit with its uncertainty ----------------------------------------------------------------


def fit_law(
    x: Any,
    ell: Any,
    delta_loss: Any,
    loss_final: Any,
    *,
    capacity_variable: str = mn.RANK,
    interval_method: str = "covariance",
    n_boot: int = 1000,
    seed: int = 0,
    leave_one_length_out: bool = True,
    response: str = mn.DELTA_LOSS,
    loss_init: Any = None,
    loss_chance: Any = None,
    identify: bool = True,
) -> LawFit:
    """Fit y = C · x^α · ℓ^(−β) + b to 1-D arrays of equal length; never raises on bad data.

    `delta_loss` holds the response y named by `response` (ΔL by default; the drop below chance
    L_ref − L_final with response="drop_below_chance"). `loss_init` and `loss_chance` (per record, nats;
    optional) let the fit say how far the base started above chance (init_excess) and whether its
    exponents are comparable with runs that start at chance (see comparability()).

    Records are sorted by (x, ℓ, ΔL) first, so the result does not depend on their order.

    Left out, and counted:
      invalid (n_invalid): NaN or ±inf in any of the four inputs, ΔL <= 0, x <= 0 or ℓ <= 0;
      saturated (n_excluded): valid records with loss_final < ln 2 (strictly). Such a run learned
        every token on average already, so its ΔL is capped by L_init − ln 2, not by capacity.
    Degenerate data gives a LawFit whose status says why, checked in this order: "too_few_points"
    (no records), "invalid_input" (every record invalid), "all_saturated" (no usable record, some
    saturated), "too_few_points" (fewer than MIN_POINTS usable), "one_capacity", "one_length",
    "too_few_points" (fewer than 4 distinct (x, ℓ) pairs for 4 parameters), and "no_convergence"
    when the solver stops without converging.

    Method: OLS of ln ΔL on [1, ln x, ln ℓ] (b = 0) gives the start; scipy's least_squares ("trf")
    then minimises Σρ² over (ln C, α, β, b) within the bounds
      C > 0 (fitted as ln C, unbounded), α and β in [−EXPONENT_BOUND, EXPONENT_BOUND],
      b in [−(max ΔL − min ΔL), min ΔL], so the power-law term is the part of ΔL that varies and
      every record's ΔL stays above the asymptote b.
    Parameters that end on a bound are named in at_bound and the message.

    interval_method "covariance" (fast, for the live fit) gives θ̂ ± t(0.975, k − 4) · √diag Σ (k cells);
    "bootstrap" (for documents) refits n_boot cell-resampled sets drawn with `seed` and takes the
    2.5 and 97.5 percentiles. Leave-one-length-out refits (warm-started from the full fit) predict
    each distinct ℓ from the others; skipped with fewer than 3 or more than LOLO_MAX_LENGTHS
    distinct lengths, or when leave_one_length_out is False (saves one refit per length).

    identify (default on) adds identifiability.py's figures: profile intervals of α and β, their
    ranges over b's interval and the lack-of-fit test (~30 three-parameter refits on the cells); the
    adaptive search, which refits per candidate, turns it off.

    Raises ValueError only for caller errors: arrays that are not 1-D of one length, an unknown
    capacity_variable or interval_method, n_boot < 1.
    """
    _check_options(capacity_variable, interval_method, n_boot)
    if response not in RESPONSES:
        raise ValueError(f"response must be one of {RESPONSES}, not {response!r}")
    records, counts, excess, problem = _usable_records(x, ell, delta_loss, loss_final, loss_init, loss_chance)
    if problem is not None:
        fit = LawFit(problem[0], problem[1], capacity_variable, **counts)
    else:
        options = dict(interval_method=interval_method, n_boot=n_boot, seed=seed, lolo=leave_one_length_out,
                       identify=identify)
        fit = _fit_records(records, capacity_variable, counts, **options)
    return comparability(fit, response, excess)


def _fit_records(
    records: _Records, capacity_variable: str, counts: dict[str, int], *, interval_method: str, n_boot: int,
    seed: int, lolo: bool, identify: bool,
) -> LawFit:
    """The fit proper, on records already filtered, sorted and known to be fittable."""
    cells, centre, solution = _point_fit(records)
    if solution is None:
        return _no_convergence(capacity_variable, counts)
    n_cells = int(cells.x.size)
    theta, dof = solution.theta, n_cells - 4
    covariance = _covariance(solution, centre, n_cells)
    if interval_method == "bootstrap":
        intervals, n_used = _bootstrap_intervals(cells, theta, centre, n_boot, seed)
    else:
        intervals, n_used = _covariance_intervals(theta, covariance, dof), None
    r2, mape = _quality(records, theta)
    lolo_mape, lolo_per_length = (None, None)
    if lolo:
        lolo_mape, lolo_per_length = _leave_one_length_out(records, cells, theta, centre)
    identified = identifiability.report(records, cells, solution, centre, intervals, dof) if identify else {}
    fields = dict(**identified,
        C=math.exp(theta[0]), alpha=float(theta[1]), beta=float(theta[2]), b=float(theta[3]),
        **_interval_fields(intervals), interval_method=interval_method, n_boot=n_used,
        covariance=None if covariance is None else tuple(map(tuple, covariance.tolist())),
        dof=dof, n_cells=n_cells, r2=r2, mape=mape, lolo_mape=lolo_mape, lolo_per_length=lolo_per_length,
        x_range=(float(records.x[0]), float(records.x[-1])),
        ell_range=(float(cells.ell.min()), float(cells.ell.max())), at_bound=solution.at_bound,
    )
    message = _ok_message(records, cells, counts, fields, covariance is None)
    return LawFit("ok", message, capacity_variable, **counts, **fields)


def _ok_message(
    records: _Records, cells: _Cells, counts: dict[str, int], fields: dict[str, Any], singular: bool
) -> str:
    n_x, n_ell = np.unique(records.x).size, np.unique(cells.ell).size
    parts = [
        f"fitted {counts['n_points']} records in {cells.x.size} cells ({n_x} capacities × {n_ell} lengths); "
        f"left out {counts['n_excluded']} saturated and {counts['n_invalid']} invalid",
        f"MAPE {fields['mape']:.2f} %" + ("" if fields["r2"] is None else f", R² {fields['r2']:.4f}"),
    ]
    if fields["lolo_mape"] is not None:
        parts.append(f"leave-one-length-out MAPE {fields['lolo_mape']:.2f} %")
    elif n_ell > LOLO_MAX_LENGTHS:
        parts.append(f"leave-one-length-out skipped: {n_ell} distinct lengths > {LOLO_MAX_LENGTHS}")
    if fields["at_bound"]:
        parts.append(f"at a bound: {', '.join(fields['at_bound'])} (their intervals mean little)")
    if singular:
        parts.append("the Jacobian is singular: no covariance")
    parts.extend(identifiability.warnings(fields))
    return "; ".join(parts)


# -- intervals and quality ----------------------------------------------------------------------


def _covariance(solution: _Solution, centre: tuple[float, float], n: int) -> np.ndarray | None:
    """Σ = s² (JᵀJ)⁻¹ in natural parameters, s² over n − 4 (n cells); None when J is rank-deficient."""
    _, sv, vt = np.linalg.svd(solution.jac, full_matrices=False)
    if sv[-1] <= sv[0] * max(solution.jac.shape) * np.finfo(float).eps:
        return None
    internal = (vt.T / sv**2) @ vt * (solution.rss / (n - 4))
    carry = _natural_jacobian(centre)
    return carry @ internal @ carry.T


def _covariance_intervals(theta: np.ndarray, covariance: np.ndarray | None, dof: int) -> np.ndarray | None:
    """(4, 2) bounds on (ln C, α, β, b): θ̂ ± t · se."""
    if covariance is None:
        return None
    half = special.stdtrit(dof, 0.5 + CONFIDENCE / 2) * np.sqrt(np.maximum(np.diag(covariance), 0.0))
    return np.column_stack([theta - half, theta + half])


def _bootstrap_intervals(
    cells: _Cells, theta: np.ndarray, centre: tuple[float, float], n_boot: int, seed: int
) -> tuple[np.ndarray | None, int]:
    """Percentile intervals over refits on resampled cells (a cluster bootstrap: a cell's replicates
    travel together, so they never count as independent draws), each warm-started from θ̂."""
    rng, k, draws = np.random.default_rng(seed), cells.x.size, []
    for _ in range(n_boot):
        multiplicity = np.bincount(rng.integers(0, k, size=k), minlength=k).astype(float)
        boot = _observations(cells, multiplicity)
        solution = _solve(boot, theta, centre) if _identifiable(boot) else None
        if solution is not None:
            draws.append(solution.theta)
    if not draws:
        return None, 0
    tail = 100 * (1 - CONFIDENCE) / 2
    return np.percentile(np.array(draws), [tail, 100 - tail], axis=0).T, len(draws)


def _interval_fields(intervals: np.ndarray | None) -> dict[str, tuple[float, float] | None]:
    if intervals is None:
        return dict(C_ci=None, alpha_ci=None, beta_ci=None, b_ci=None)
    pairs = [tuple(float(v) for v in row) for row in intervals]
    with np.errstate(over="ignore"):  # an unidentified ln C can reach e^710 and beyond: inf, stored as None
        pairs[0] = (float(np.exp(pairs[0][0])), float(np.exp(pairs[0][1])))
    return dict(zip(("C_ci", "alpha_ci", "beta_ci", "b_ci"), pairs))


def _quality(records: _Records, theta: np.ndarray) -> tuple[float | None, float]:
    """R² and MAPE (percent), both on ΔL itself."""
    error = records.y - _predict(theta, records.x, records.ell)
    total = float(np.sum((records.y - records.y.mean()) ** 2))
    r2 = None if total == 0.0 else 1.0 - float(np.sum(error**2)) / total
    return r2, 100.0 * float(np.mean(np.abs(error) / records.y))


def _leave_one_length_out(
    records: _Records, cells: _Cells, theta: np.ndarray, centre: tuple[float, float]
) -> tuple[float | None, tuple[tuple[float, float | None], ...] | None]:
    """Refit without each distinct ℓ (warm start θ̂) and predict it: does the law extrapolate in ℓ?"""
    lengths = np.unique(cells.ell)
    if not 3 <= lengths.size <= LOLO_MAX_LENGTHS:
        return None, None
    per_length, errors = [], []
    for ell in lengths:
        train = cells.take(cells.ell != ell)
        solution = _solve(train, theta, centre) if _identifiable(train) else None
        if solution is None:
            per_length.append((float(ell), None))
            continue
        held = records.ell == ell
        y = records.y[held]
        ape = np.abs(_predict(solution.theta, records.x[held], records.ell[held]) - y) / y
        errors.append(ape)
        per_length.append((float(ell), 100.0 * float(np.mean(ape))))
    overall = 100.0 * float(np.mean(np.concatenate(errors))) if errors else None
    return overall, tuple(per_length)
