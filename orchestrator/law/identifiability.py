"""Whether the cells pin the law's exponents down: profile intervals, the exponents over b's interval,
and the lack-of-fit test against the replicates' pure error.

A law fitted with a free offset b can reach a high R² along a ridge on which b trades against α and
β: moving b and refitting the rest changes the exponents while the residuals barely move. The Wald
(covariance) interval sees that ridge only through a straight-line approximation at θ̂; the figures
here follow the objective itself. uncertainty.fit_law calls `report` on every fit with intervals and
puts `warnings` in its message; `memlaw law` prints them (orchestrator/report/law_report.py).

Notation (fit.py's k cells with m_c records each, n = Σ m_c records, θ = (ln C, α, β, b), ȳ_c the cell
mean, ρ_c = (f(x_c, ℓ_c) − ȳ_c) / ȳ_c; uncertainty.py's dof = k − 4)
  S(θ)         Σ_c ρ_c², the fit's objective (dimensionless); Ŝ its minimum, s² = Ŝ / (k − 4)
  S_p(ψ)       the profile: min S over the other three parameters with one parameter held at ψ
  profile interval of ψ ∈ {α, β}: {ψ : (S_p(ψ) − Ŝ) / s² ≤ t(0.975, k − 4)²}. For a model linear in
               its parameters this is exactly the Wald t interval; for the law it follows the ridge. A
               side that never rises far enough before ±EXPONENT_BOUND is open: its bound is reported.
  over b       α̂ and β̂ refitted with b held at B_POINTS values across b's own 95 % interval (clipped to
               the solver's bounds on b): their smallest and largest values. When either range is wider
               than that exponent's own interval, `identified` is False and the fit says so.
  lack of fit  F = (Σ_c m_c ρ_c² / (k − 4)) / (SS_pe / (n − k)), SS_pe = Σ_i (1 − ȳ_c / ΔL_i)² the
               relative spread of records about their cell means (the pure error), p = P(F(k − 4, n − k)
               ≥ F). Needs replicates that differ (SS_pe > 0, n > k). Replicates that vary only the
               adapter init on the same targets measure init noise alone, which understates the pure error
               of a new draw of targets: their test rejects more often than it should, and says so.

Pure numpy and scipy (no Ray, no torch), like the rest of orchestrator.law.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize, special

from orchestrator.law.fit import (
    CONFIDENCE, EXPONENT_BOUND, _bounds, _Cells, _cells, _internal, _natural, _predict, _Records, _Solution,
)

#: b values (across b's interval, ends included) at which α and β are refitted for the `over b` ranges.
B_POINTS = 5
#: Lack of fit below this p is named in the fit's message.
LACK_OF_FIT_LEVEL = 0.05
_DOUBLINGS = 12  # outward steps of the profile search before a side is declared open


def report(records: _Records, cells: _Cells, solution: _Solution, centre: tuple[float, float],
           intervals: np.ndarray | None, dof: int) -> dict[str, Any]:
    """The LawFit fields of this module: lack_of_fit_p, alpha/beta_profile_ci, alpha/beta_over_b and
    identified (None where there is nothing to compute: no residual dof, no intervals)."""
    out: dict[str, Any] = dict(lack_of_fit_p=lack_of_fit(records, cells, solution.theta, dof))
    if dof < 1 or solution.rss <= 0.0:
        return out
    s2 = solution.rss / dof
    halves = None if intervals is None else (intervals[:, 1] - intervals[:, 0]) / 2
    for index, name in ((1, "alpha_profile_ci"), (2, "beta_profile_ci")):
        first = None if halves is None else float(halves[index])
        out[name] = profile_interval(cells, solution, centre, index, s2, dof, first)
    if intervals is not None:
        alpha_range, beta_range = exponents_over_b(cells, solution, centre, tuple(intervals[3]))
        out.update(alpha_over_b=alpha_range, beta_over_b=beta_range)
        if alpha_range is not None and beta_range is not None:
            widths = intervals[1:3, 1] - intervals[1:3, 0]
            moved = np.array([alpha_range[1] - alpha_range[0], beta_range[1] - beta_range[0]])
            out["identified"] = bool(np.all(moved <= widths))
    return out


def warnings(fields: dict[str, Any]) -> list[str]:
    """Sentences for the fit's message: an offset that trades against the exponents, lack of fit."""
    parts = []
    if fields.get("identified") is False:
        (a_lo, a_hi), (b_lo, b_hi) = fields["alpha_over_b"], fields["beta_over_b"]
        parts.append(f"not identified: α moves over [{a_lo:.3g}, {a_hi:.3g}] and β over [{b_lo:.3g}, {b_hi:.3g}] "
                     f"as b moves within its interval, wider than their own intervals: the offset trades against "
                     f"the exponents and these cells do not pin them down")
    p = fields.get("lack_of_fit_p")
    if p is not None and p < LACK_OF_FIT_LEVEL:
        parts.append(f"lack of fit: the cells scatter about the law more than replicates scatter about their cell "
                     f"means (F test p = {p:.2g})")
    return parts


def lack_of_fit(records: _Records, cells: _Cells, theta: np.ndarray, dof: int) -> float | None:
    """p of the lack-of-fit F test (notation above); None without differing replicates or without dof."""
    replicated = _cells(records, np.ones_like(records.y))
    pure_dof = records.y.size - replicated.x.size
    pure = float(replicated.within.sum())
    if dof < 1 or pure_dof < 1 or pure <= 0.0:
        return None
    rho = (_predict(theta, cells.x, cells.ell) - cells.y_bar) / cells.y_bar
    lack = float(np.sum(replicated.count * rho**2))
    return float(special.fdtrc(dof, pure_dof, (lack / dof) / (pure / pure_dof)))


def profile_interval(cells: _Cells, solution: _Solution, centre: tuple[float, float], index: int, s2: float,
                     dof: int, first_step: float | None = None) -> tuple[float, float] | None:
    """The profile interval of α (index 1) or β (index 2); None when a profile refit fails. The search
    starts one Wald half-width out (`first_step`), where a nearly linear profile already crosses."""
    limit = special.stdtrit(dof, 0.5 + CONFIDENCE / 2) ** 2
    best = float(solution.theta[index])

    def excess(value: float) -> float:
        rss = _fixed_rss(cells, solution.theta, centre, index, value)
        return np.nan if rss is None else (rss - solution.rss) / s2 - limit

    step = first_step if first_step is not None and first_step > 1e-6 else max(abs(best) * 0.05, 1e-3)
    edges = []
    for side in (-1.0, 1.0):
        edge = _edge(excess, best, side, step)
        if edge is None:
            return None
        edges.append(edge)
    return float(edges[0]), float(edges[1])


def _edge(excess, best: float, side: float, step: float) -> float | None:
    """Where excess crosses 0 going from best towards `side`: doubling steps, then Brent's root."""
    inner = best
    for _ in range(_DOUBLINGS):
        outer = best + side * step
        if abs(outer) >= EXPONENT_BOUND:
            outer = side * EXPONENT_BOUND
        value = excess(outer)
        if not np.isfinite(value):
            return None
        if value >= 0.0:
            try:
                return optimize.brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-4 * step)
            except ValueError:  # a refit between the brackets failed (NaN): no interval, never a crash
                return None
        if abs(outer) >= EXPONENT_BOUND:
            return outer  # open on this side: the profile never rose far enough
        inner, step = outer, step * 1.5
    return side * EXPONENT_BOUND


def exponents_over_b(cells: _Cells, solution: _Solution, centre: tuple[float, float],
                     b_interval: tuple[float, float]) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """(α range, β range) over b held at B_POINTS values across b_interval (clipped to b's bounds)."""
    lower, upper = _bounds(cells)
    lo, hi = max(b_interval[0], lower[3]), min(b_interval[1], upper[3])
    alphas, betas = [float(solution.theta[1])], [float(solution.theta[2])]
    for b in np.linspace(lo, hi, B_POINTS) if hi > lo else ():
        fixed = _fixed_fit(cells, solution.theta, centre, 3, float(b))
        if fixed is None:
            return None, None
        alphas.append(float(fixed[1][1]))
        betas.append(float(fixed[1][2]))
    return (min(alphas), max(alphas)), (min(betas), max(betas))


def _fixed_rss(cells: _Cells, start: np.ndarray, centre: tuple[float, float], index: int, value: float) -> float | None:
    fixed = _fixed_fit(cells, start, centre, index, value)
    return None if fixed is None else fixed[0]


def _fixed_fit(cells: _Cells, start: np.ndarray, centre: tuple[float, float], index: int,
               value: float) -> tuple[float, np.ndarray] | None:
    """(S, natural θ) minimised with parameter `index` (1 α, 2 β or 3 b: the same in fit.py's internal
    coordinates) held at `value`; None when the solver fails."""
    lower, upper = _bounds(cells)
    free = [j for j in range(4) if j != index]
    u, v = np.log(cells.x) - centre[0], np.log(cells.ell) - centre[1]
    root = np.sqrt(cells.weight)

    def full(q: np.ndarray) -> np.ndarray:
        p = np.empty(4)
        p[free], p[index] = q, value
        return p

    def residuals(q: np.ndarray) -> np.ndarray:
        p = full(q)
        return root * (np.exp(p[0] + p[1] * u - p[2] * v) + p[3] - cells.y_bar)

    def jacobian(q: np.ndarray) -> np.ndarray:
        p = full(q)
        power = np.exp(p[0] + p[1] * u - p[2] * v)
        return (root[:, None] * np.column_stack([power, power * u, -power * v, np.ones_like(u)]))[:, free]

    q0 = np.clip(_internal(start, centre)[free], lower[free], upper[free])
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            res = optimize.least_squares(residuals, q0, jac=jacobian, bounds=(lower[free], upper[free]),
                                         method="trf", max_nfev=200)
    except (ValueError, np.linalg.LinAlgError):
        return None
    if res.status <= 0 or not np.all(np.isfinite(res.x)):
        return None
    return float(2.0 * res.cost), _natural(full(res.x), centre)
