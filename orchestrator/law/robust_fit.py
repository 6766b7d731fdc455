"""A second estimator of the law: Besiroglu et al.'s robust recipe (arXiv 2404.10102, the Chinchilla
replication), beside fit_law's weighted least squares, for `memlaw law --robust`.

fit_law minimises squared relative residuals: one outlying cell (a cell still rising at its budget, a
cell on the saturation edge) pulls it quadratically. The robust recipe minimises a Huber loss of the
log residuals, which is linear beyond δ, so such a cell pulls it only as hard as any other; it starts
L-BFGS from a grid of points and keeps the best optimum (the objective has several), and it takes
its intervals from a bootstrap. When the two estimators agree, the fit does not hinge on a few cells;
when they do not (a point estimate outside the other's interval), the report says so and names the
exponent (docs/science.md §5).

Pure math (numpy, scipy); it reuses fit.py's filter and cells, so both estimators see the same data.

Notation (fit.py's x, ℓ, cells; k cells, each with its mean response ȳ_c)
  θ        (ln C, α, β, b); the solver works with a = ln C + α c_x − β c_ℓ and centred logs u, v
  f_c(θ)   C · x_c^α · ℓ_c^(−β) + b, the predicted response of cell c (nats per token)
  r_c(θ)   ln f_c − ln ȳ_c, the log residual (dimensionless); f_c ≤ 0 is outside the model and is
           scored as f_c = F_FLOOR, a residual of about −28 that the linear part of the loss rejects
  H_δ(r)   Huber loss: r²/2 for |r| ≤ δ, else δ(|r| − δ/2); δ = HUBER_DELTA = 1e-3, the value of
           Hoffmann et al. and Besiroglu et al.: at the 1–10 % scatter met here it is nearly the sum of
           absolute log residuals, a median-type fit
  m_c      a cell's multiplicity: 1, or its count in a bootstrap resample of the cells
  objective  Σ_c m_c · H_δ(r_c(θ))
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from orchestrator.law.fit import (CONFIDENCE, LawFit, _bounds, _Cells, _cells, _identifiable, _internal, _natural,
                                  _observations, _usable_records)

HUBER_DELTA = 1e-3
F_FLOOR = 1e-12
#: Starting grid of the multi-start search (Besiroglu et al. start from a grid over every parameter).
START_ALPHA = (0.0, 0.5, 1.0, 2.0)
START_BETA = (0.0, 0.5, 1.0, 2.0)
START_B_SHARE = (-0.5, 0.0, 0.5)  # b as a share of the smallest cell mean (within fit.py's bounds)
N_BOOT = 200


@dataclass(frozen=True)
class RobustFit:
    """The Huber fit of one group's cells, or why there is none."""

    status: str
    """"ok", or the status fit_law would give the same records ("too_few_points", ...), or "no_convergence"."""
    alpha: float | None = None
    beta: float | None = None
    C: float | None = None
    b: float | None = None
    alpha_ci: tuple[float, float] | None = None
    """Percentile interval over the cell bootstrap (CONFIDENCE, two-sided)."""
    beta_ci: tuple[float, float] | None = None
    n_cells: int = 0
    n_boot: int = 0
    """Bootstrap refits that converged."""
    n_starts: int = 0
    """Starts of the multi-start search that converged."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def fit_law_robust(x: Any, ell: Any, y: Any, loss_final: Any, *, n_boot: int = N_BOOT, seed: int = 0) -> RobustFit:
    """The robust fit on the same usable records and cells as fit_law(x, ell, y, loss_final)."""
    records, _, _, problem = _usable_records(x, ell, y, loss_final, None, None)
    if problem is not None:
        return RobustFit(problem[0])
    cells = _observations(_cells(records, np.ones(records.y.size)))
    centre = (float(np.mean(np.log(cells.x))), float(np.mean(np.log(cells.ell))))
    best, n_starts = _multi_start(cells, centre)
    if best is None:
        return RobustFit("no_convergence", n_cells=int(cells.x.size))
    draws = _bootstrap(cells, best, centre, n_boot, seed)
    tail = 100 * (1 - CONFIDENCE) / 2
    ci = np.percentile(draws, [tail, 100 - tail], axis=0).T if len(draws) else None
    return RobustFit("ok", alpha=float(best[1]), beta=float(best[2]), C=math.exp(best[0]), b=float(best[3]),
                     alpha_ci=None if ci is None else (float(ci[1, 0]), float(ci[1, 1])),
                     beta_ci=None if ci is None else (float(ci[2, 0]), float(ci[2, 1])),
                     n_cells=int(cells.x.size), n_boot=len(draws), n_starts=n_starts)


def disagreements(least_squares: LawFit, robust: RobustFit) -> list[str]:
    """The exponents whose robust estimate lies outside the least-squares interval, or the reverse."""
    if least_squares.status != "ok" or robust.status != "ok":
        return []
    out = []
    for name, ls_ci in (("alpha", least_squares.alpha_ci), ("beta", least_squares.beta_ci)):
        ls, rb, rb_ci = getattr(least_squares, name), getattr(robust, name), getattr(robust, f"{name}_ci")
        outside = (ls_ci is not None and not ls_ci[0] <= rb <= ls_ci[1]) or \
                  (rb_ci is not None and not rb_ci[0] <= ls <= rb_ci[1])
        if outside:
            out.append(f"{name}: robust {rb:.3g} vs least squares {ls:.3g}, outside the other's interval")
    return out


def _objective(cells: _Cells, centre: tuple[float, float], weight: np.ndarray):
    """Σ m_c H_δ(r_c) and its gradient over the internal parameters (a, α, β, b)."""
    u, v = np.log(cells.x) - centre[0], np.log(cells.ell) - centre[1]
    log_y = np.log(cells.y_bar)

    def value_and_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
        power = np.exp(np.clip(p[0] + p[1] * u - p[2] * v, -700, 700))
        f = power + p[3]
        inside = f > F_FLOOR
        r = np.log(np.where(inside, f, F_FLOOR)) - log_y
        small = np.abs(r) <= HUBER_DELTA
        loss = np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA))
        dloss = np.where(small, r, HUBER_DELTA * np.sign(r)) * weight
        df = np.where(inside, 1.0 / np.where(inside, f, 1.0), 0.0)  # ∂r/∂f; flat below the floor
        parts = np.column_stack([power, power * u, -power * v, np.ones_like(u)])
        return float(np.sum(weight * loss)), (dloss * df) @ parts

    return value_and_grad


def _solve(cells: _Cells, start: np.ndarray, centre: tuple[float, float],
           weight: np.ndarray) -> tuple[np.ndarray, float] | None:
    """L-BFGS-B within fit.py's bounds from `start` (natural θ): (θ̂, objective), or None."""
    lower, upper = _bounds(cells)
    p0 = np.clip(_internal(start, centre), lower, upper)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = optimize.minimize(_objective(cells, centre, weight), p0, jac=True, method="L-BFGS-B",
                                bounds=list(zip(lower, upper)), options={"maxiter": 2000})
    if not res.success or not np.all(np.isfinite(res.x)):
        return None
    return _natural(res.x, centre), float(res.fun)


def _starts(cells: _Cells, centre: tuple[float, float]) -> list[np.ndarray]:
    """A grid over (α, β, b); ln C from the cells' mean log response above b at the centre."""
    y_min = float(cells.y_bar.min())
    out = []
    for alpha, beta, share in itertools.product(START_ALPHA, START_BETA, START_B_SHARE):
        b = share * y_min
        a = float(np.mean(np.log(np.maximum(cells.y_bar - b, F_FLOOR))))
        out.append(_natural(np.array([a, alpha, beta, b]), centre))
    return out


def _multi_start(cells: _Cells, centre: tuple[float, float]) -> tuple[np.ndarray | None, int]:
    """The best optimum over the start grid, and how many starts converged."""
    ones = np.ones(cells.x.size)
    found = [s for s in (_solve(cells, start, centre, ones) for start in _starts(cells, centre)) if s is not None]
    if not found:
        return None, 0
    return min(found, key=lambda s: s[1])[0], len(found)


def _bootstrap(cells: _Cells, theta: np.ndarray, centre: tuple[float, float], n_boot: int, seed: int) -> np.ndarray:
    """Refits on cell resamples (each warm-started from θ̂): shape (converged, 4)."""
    rng, k, draws = np.random.default_rng(seed), cells.x.size, []
    for _ in range(n_boot):
        m = np.bincount(rng.integers(0, k, size=k), minlength=k).astype(float)
        kept = cells.take(m > 0)
        if not _identifiable(kept):
            continue
        solved = _solve(kept, theta, centre, m[m > 0])
        if solved is not None:
            draws.append(solved[0])
    return np.array(draws).reshape(-1, 4)
