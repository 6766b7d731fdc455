"""The law's form tested out of sample: fit on some cells, predict cells the fit never saw.

Why: a four-parameter law fitted to eight cells can bend to them; leave-one-length-out
(uncertainty.py) tests extrapolation in ℓ inside one fit. Holding out whole cells — typically the
largest capacity, fitted from the smaller ones — asks whether the form carries to where the fit has no
data, the use `memlaw plan` puts it to.

A held-out cell's observed ΔL is the mean of its unsaturated records, so a repeated record changes neither the
figure nor the fit (fit_law fits cells). A held-out cell whose every record saturated (final loss < ln 2) cannot show more
than L_init − ln 2: it is reported as a bound — the prediction is consistent with it when it is at least
the observed ΔL — and never enters the error.

Notation
  x        capacity (rank r, or trainable parameters), ℓ target tokens, y ΔL in nats per token
  ŷ        the law fitted on the training cells, evaluated at a held-out cell
  e        relative error (ŷ − y) / y of one unsaturated held-out cell; MAPE = 100 · mean |e| (percent)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from orchestrator.law.fit import LawFit
from orchestrator.law.uncertainty import fit_law
from trainables import metric_names as mn

LN2 = math.log(2.0)


@dataclass(frozen=True)
class HeldOutCell:
    x: float
    ell: float
    records: int
    observed: float
    predicted: float
    saturated: bool
    """True: observed is a bound (ΔL capped by saturation); `error` is None then."""
    error: float | None
    """Relative error (ŷ − y) / y; None for a saturated cell."""


@dataclass(frozen=True)
class HeldOut:
    status: str
    message: str
    fit: LawFit
    cells: tuple[HeldOutCell, ...] = ()
    mape: float | None = None
    """Percent, over the unsaturated held-out cells; None without one."""
    extrapolates: bool = False
    """True when a held-out cell lies outside the training cells' x or ℓ range."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fit"] = self.fit.to_dict()
        return out


def held_out(x: Any, ell: Any, delta_loss: Any, loss_final: Any, train: Any, *,
             capacity_variable: str = mn.RANK, **fit_options: Any) -> HeldOut:
    """Fit the law on the records where `train` is True and predict the cells of the others."""
    x, ell, y, lf = (np.asarray(a, dtype=float) for a in (x, ell, delta_loss, loss_final))
    train = np.asarray(train, dtype=bool)
    fit = fit_law(x[train], ell[train], y[train], lf[train], capacity_variable=capacity_variable, **fit_options)
    if fit.status != "ok":
        return HeldOut(fit.status, f"no fit on the training cells ({fit.status}): {fit.message}", fit)
    cells = _held_cells(fit, x[~train], ell[~train], y[~train], lf[~train])
    if not cells:
        return HeldOut("no_held_out", "no finite held-out record to predict", fit)
    errors = [abs(c.error) for c in cells if c.error is not None]
    mape = 100 * float(np.mean(errors)) if errors else None
    outside = any(not (fit.x_range[0] <= c.x <= fit.x_range[1] and fit.ell_range[0] <= c.ell <= fit.ell_range[1])
                  for c in cells)
    bounds = sum(c.saturated for c in cells)
    consistent = sum(c.saturated and c.predicted >= c.observed for c in cells)
    text = (f"fit on {fit.n_cells} cells (x {fit.x_range[0]:g}–{fit.x_range[1]:g}), predicting {len(cells)} held-out "
            f"cell(s){' outside that range' if outside else ''}: "
            + (f"MAPE {mape:.1f} % over {len(errors)} unsaturated" if errors else "no unsaturated cell to score")
            + (f"; {bounds} saturated (bounds: the prediction is at least the observed ΔL in {consistent})"
               if bounds else ""))
    return HeldOut("ok", text, fit, tuple(cells), mape, outside)


def _held_cells(fit: LawFit, x: np.ndarray, ell: np.ndarray, y: np.ndarray, lf: np.ndarray) -> list[HeldOutCell]:
    ok = np.isfinite(x) & np.isfinite(ell) & np.isfinite(y) & np.isfinite(lf) & (x > 0) & (ell > 0)
    cells = []
    for xi, li in sorted({(float(a), float(b)) for a, b in zip(x[ok], ell[ok])}):
        here = ok & (x == xi) & (ell == li)
        unsaturated = here & ~(lf < LN2)  # fit_law's rule, per record: a saturated record is a bound
        saturated = not unsaturated.any()
        observed = float(y[here if saturated else unsaturated].mean())
        predicted = float(fit.predict(xi, li))
        error = None if saturated or observed <= 0 else (predicted - observed) / observed
        cells.append(HeldOutCell(xi, li, int(here.sum()), observed, predicted, saturated, error))
    return cells
