"""β at one rank as a slope per fresh-data replicate: the one-dimensional claim before the 2-D law.

Why per replicate: a replicate (its own adapter init AND its own targets) is the unit that repeats;
the lengths inside one replicate are not. Each replicate j gives one slope s_j of ln ΔL on ln ℓ, so
the interval comes from how much the slope moves between replicates (m − 1 degrees of freedom), not
from the m · k records as if every record were new. A repeated record lands in its (replicate, ℓ)
cell, whose ΔL is the mean of its records, so repeating it moves neither a slope nor the interval.

Why a common set of lengths: a saturated cell (final loss < ln 2, fit.py's rule) has ΔL capped by
L_init − ln 2, not by capacity; its value is a bound on what the adapter could store there, never a
point. A length saturated in any replicate is dropped from every replicate, so all slopes span the
same ℓ range and stay comparable; the dropped cells are returned as bounds ("ΔL ≥ value").

The slope is −β exactly only when the law's offset b is 0: with b ≠ 0, −d ln ΔL / d ln ℓ =
β · (ΔL − b) / ΔL, a local slope. The message says so; the 2-D fit (uncertainty.fit_law) estimates b.

Notation
  ℓ        target tokens per sequence (a length of the grid)
  y        ΔL of a cell, nats per target token: the mean over the cell's records
  j        a replicate (fresh adapter init and fresh targets), m of them with a slope
  s_j      OLS slope of ln y on ln ℓ over the common lengths of replicate j (dimensionless)
  β̂        −mean_j s_j;   interval β̂ ± t(0.975, m − 1) · sd_j(s_j) / √m   (Student t, scipy.special)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Hashable, Iterable

import numpy as np
from scipy import special

from orchestrator.law.fit import CONFIDENCE

LN2 = math.log(2.0)


@dataclass(frozen=True)
class SaturatedCell:
    """A cell left out as censored: its ΔL is a lower bound on what capacity allows there."""

    replicate: str
    ell: float
    delta_loss: float  # printed as "ΔL ≥ value"


@dataclass(frozen=True)
class LengthSlope:
    """β from per-replicate slopes, or why there is none (status "ok" or the reason)."""

    status: str
    message: str
    beta: float | None = None
    beta_ci: tuple[float, float] | None = None
    dof: int | None = None
    slopes: tuple[tuple[str, float], ...] = ()
    """(replicate, s_j) per replicate with a slope; β̂ = −mean s_j."""
    lengths: tuple[float, ...] = ()
    """The common lengths every slope spans."""
    saturated: tuple[SaturatedCell, ...] = ()
    dropped_lengths: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def length_slope(rows: Iterable[tuple[Hashable, float, float, float]], response: str = "ΔL") -> LengthSlope:
    """β from rows (replicate, ℓ, y, final loss) of one rank; never raises on bad data. y is ΔL, or
    another response such as the drop below chance (named by `response` in the message).

    Rows with a non-finite value, ΔL <= 0 or ℓ <= 0 are left out (they carry no slope). Statuses:
    "ok"; "one_replicate" (a slope without an interval); "too_few_lengths" (fewer than two common
    unsaturated lengths); "no_rows".
    """
    cells = _cells(rows)
    if not cells:
        return LengthSlope("no_rows", f"no finite rows with {response} > 0 and ℓ > 0: no slope")
    saturated = tuple(SaturatedCell(rep, ell, y) for (rep, ell), (y, lf) in sorted(cells.items()) if lf < LN2)
    replicates = sorted({rep for rep, _ in cells})
    every = sorted({ell for _, ell in cells})
    dropped = tuple(sorted({c.ell for c in saturated}))
    common = [ell for ell in every if ell not in dropped and all((rep, ell) in cells for rep in replicates)]
    base = dict(saturated=saturated, dropped_lengths=dropped, lengths=tuple(common))
    if len(common) < 2:
        return LengthSlope("too_few_lengths", f"{len(common)} length(s) unsaturated in every replicate "
                           f"(saturated cells are bounds, not points): a slope needs two", **base)
    slopes = tuple((rep, _slope(common, [cells[(rep, ell)][0] for ell in common])) for rep in replicates)
    return _estimate(slopes, base, response)


def _cells(rows: Iterable[tuple[Hashable, float, float, float]]) -> dict[tuple[str, float], tuple[float, float]]:
    """(replicate, ℓ) -> (mean ΔL, mean final loss) over the cell's usable records."""
    sums: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for rep, ell, y, lf in rows:
        ell, y, lf = float(ell), float(y), float(lf)
        if not (math.isfinite(ell) and math.isfinite(y) and math.isfinite(lf)) or y <= 0 or ell <= 0:
            continue
        sums.setdefault((str(rep), ell), []).append((y, lf))
    return {key: (float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])))
            for key, vals in sums.items()}


def _slope(ells: list[float], ys: list[float]) -> float:
    """OLS slope of ln y on ln ℓ."""
    return float(np.polyfit(np.log(ells), np.log(ys), 1)[0])


def _estimate(slopes: tuple[tuple[str, float], ...], base: dict[str, Any], response: str) -> LengthSlope:
    values = np.array([s for _, s in slopes])
    beta = float(-values.mean())
    span = f"ℓ {base['lengths'][0]:g}–{base['lengths'][-1]:g}"
    local = f"of {response}: the local slope −d ln y / d ln ℓ, the law's β only where its offset b is 0"
    if len(values) < 2:
        return LengthSlope("one_replicate", f"β ≈ {beta:.3g} from one replicate over {span}: no interval "
                           f"without a second fresh-data replicate ({local})", beta=beta, slopes=slopes, **base)
    dof = len(values) - 1
    half = float(special.stdtrit(dof, 0.5 + CONFIDENCE / 2)) * float(values.std(ddof=1)) / math.sqrt(len(values))
    ci = (beta - half, beta + half)
    return LengthSlope("ok", f"β {beta:.3g} [{ci[0]:.3g}, {ci[1]:.3g}] over {span}: the mean of {len(values)} "
                       f"per-replicate slopes, t interval with {dof} dof ({local})",
                       beta=beta, beta_ci=ci, dof=dof, slopes=slopes, **base)
