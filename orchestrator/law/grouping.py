"""One fit of the law per group of rows: fit_groups, and each group's summary figures (GroupFit).

The results actor, `memlaw law`, the plot and the reproduction hand it rows: each finished trial's
metrics and its "group" label (same model, data kind, random share, placement and method;
orchestrator/records/journal.py law_rows, orchestrator/records/trial_record.py). fit_groups splits
the rows by label, fits each group with covariance intervals (fit_law, uncertainty.py) and
summarises it in a GroupFit (defined here). It imports fit.py and uncertainty.py only.

Notation (fit.py's x, ℓ, ΔL, L_final, y; the bits are trainables/information.py's)
  per group, over its valid rows (finite x, ℓ, ΔL, L_final; ΔL, x, ℓ > 0):
  bits_per_param_mean   mean bits absorbed per adapter parameter, the paper's ΔL-based figure
  loss_init_mean        mean L_init (nats per token)
  per group, over its rows with finite x, ℓ and L_final (a run above chance counts, with 0 bits):
  bits_above_chance_per_param_mean, _max, certified_bits_per_param_mean, loss_chance (ln |V_cand|)
  bits_above_chance_per_param_unsaturated_mean   the same mean over those rows that are not saturated
                        (L_final >= ln 2, fit.py's cut): the figure the demo's finding reports
  cells_rising, cells_ratio_known   over the rows the fit uses: cells whose median ΔL(T)/ΔL(T/2) exceeds
                        trainables/convergence.py's RISING_RATIO (still rising at the budget), and cells with a ratio
  per group, over its rows whose trainable_params / rank is finite and > 0:
  params_per_rank       the median of that ratio (N_eff per unit of rank): converts a capacity in
                        parameters back to a rank
A metric that is missing, None or not a number is NaN here: invalid in the fit, unknown in a summary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.law.fit import LN2, RESPONSES, LawFit, _check_options, _invalid_mask, _plain, _tupled
from orchestrator.law.robust_fit import RobustFit, fit_law_robust
from orchestrator.law.uncertainty import fit_law
from trainables import metric_names as mn
from trainables.convergence import RISING_RATIO


@dataclass(frozen=True)
class GroupFit:
    """The law for one group of records (a model, a dataset, a method), with its summary figures."""

    group: str
    """The opaque label from each row's "group" key."""
    fit: LawFit
    n_rows: int
    """Rows in the group, usable or not."""
    bits_per_param_mean: float | None
    """Mean bits absorbed per adapter parameter over valid rows (saturated ones included)."""
    loss_init_mean: float | None
    """Mean L_init (nats) over valid rows."""
    params_per_rank: float | None
    """Median trainable_params / rank: converts a capacity in parameters back to a rank."""
    bits_above_chance_per_param_mean: float | None = None
    """Mean bits above chance (trainables/information.py) per adapter parameter over every finished row."""
    bits_above_chance_per_param_max: float | None = None
    certified_bits_per_param_mean: float | None = None
    """Mean certified bits (tokens with p > 0.5 × log2 |V_cand|) per adapter parameter."""
    loss_chance: float | None = None
    """ln |V_cand| of the group's data (nats per token)."""
    bits_above_chance_per_param_unsaturated_mean: float | None = None
    """The same mean over unsaturated rows (final loss >= ln 2, the fit's cut): what the demo reports."""
    cells_rising: int | None = None
    """Fitted (unsaturated, valid) cells whose median ΔL(T)/ΔL(T/2) > 1.05 (trainables/convergence.py): ΔL
    was still rising when the budget ran out, so the fit is of ΔL at T steps, not of a plateau."""
    cells_ratio_known: int | None = None
    left_out: tuple[tuple[float, float, str, int], ...] = ()
    """(x, ℓ, reason, records) for each cell and reason the fit left records out: "saturated" (final loss
    < ln 2), "y <= 0" (the response is not positive: with drop_below_chance, the trial ended at or above
    chance), "not finite". A reader sees where the cut fell, not only how many records it took."""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "fit"}
        return {**out, "fit": self.fit.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupFit:
        fields = {f.name: _tupled(data[f.name]) for f in dataclasses.fields(cls) if f.name != "fit" and f.name in data}
        return cls(**fields, fit=LawFit.from_dict(data["fit"]))


def fit_groups(rows: Iterable[Mapping[str, Any]], *, capacity_variable: str = mn.RANK,
               response: str = mn.DELTA_LOSS) -> dict[str, GroupFit]:
    """One covariance-interval fit per distinct row["group"], in sorted group order.

    Each row carries "group" and the metric keys RANK, TRAINABLE_PARAMS, TARGET_TOKENS, the response
    (DELTA_LOSS or DROP_BELOW_CHANCE), LOSS_FINAL, LOSS_INIT, LOSS_CHANCE and the bits figures; other
    keys are ignored. A metric that is missing, None or not a number becomes NaN, so its row counts as
    invalid in the fit (or unknown in a summary) rather than raising.
    """
    _check_options(capacity_variable, "covariance", 1)
    if response not in RESPONSES:
        raise ValueError(f"response must be one of {RESPONSES}, not {response!r}")
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row)
    return {group: _fit_group(group, by_group[group], capacity_variable, response) for group in sorted(by_group)}


def robust_groups(rows: Iterable[Mapping[str, Any]], *, capacity_variable: str = mn.RANK,
                  response: str = mn.DELTA_LOSS) -> dict[str, RobustFit]:
    """fit_groups' groups fitted by the robust recipe (robust_fit.py): the same rows, filter and cells."""
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row)
    out = {}
    for group in sorted(by_group):
        cols = [np.array([_number(row.get(key)) for row in by_group[group]])
                for key in (capacity_variable, mn.TARGET_TOKENS, response, mn.LOSS_FINAL)]
        out[group] = fit_law_robust(*cols)
    return out


_GROUP_KEYS = (mn.RANK, mn.TRAINABLE_PARAMS, mn.TARGET_TOKENS, mn.DELTA_LOSS, mn.DROP_BELOW_CHANCE, mn.LOSS_FINAL,
               mn.LOSS_INIT, mn.LOSS_CHANCE, mn.BITS_PER_PARAM, mn.BITS_ABOVE_CHANCE_PER_PARAM,
               mn.CERTIFIED_BITS_PER_PARAM, mn.CONVERGENCE_RATIO)


def _fit_group(group: str, rows: list[Mapping[str, Any]], capacity_variable: str, response: str) -> GroupFit:
    cols = {key: np.array([_number(row.get(key)) for row in rows]) for key in _GROUP_KEYS}
    law_inputs = (cols[capacity_variable], cols[mn.TARGET_TOKENS], cols[response], cols[mn.LOSS_FINAL])
    fit = fit_law(*law_inputs, capacity_variable=capacity_variable, response=response,
                  loss_init=cols[mn.LOSS_INIT], loss_chance=cols[mn.LOSS_CHANCE])
    # Summaries over every finished row whose inputs are finite (a trial above chance has ΔL > 0 but
    # 0 bits above chance: it belongs in the mean).
    finite = np.isfinite(cols[capacity_variable]) & np.isfinite(cols[mn.TARGET_TOKENS]) & np.isfinite(cols[mn.LOSS_FINAL])
    valid = ~_invalid_mask(cols[capacity_variable], cols[mn.TARGET_TOKENS], cols[mn.DELTA_LOSS], cols[mn.LOSS_FINAL])
    # Saturated as the law fit says (fit._usable_records: final loss < ln 2). A saturated row stores
    # its whole target, so its bits per parameter measure the target's length, not the adapter's capacity.
    unsaturated = finite & ~(cols[mn.LOSS_FINAL] < LN2)
    rising, known = _cells_rising(cols, capacity_variable, valid & unsaturated)
    per_rank = cols[mn.TRAINABLE_PARAMS] / cols[mn.RANK]
    usable_ratio = per_rank[np.isfinite(per_rank) & (per_rank > 0)]
    return GroupFit(
        group=group, fit=fit, n_rows=len(rows),
        bits_per_param_mean=_finite_mean(cols[mn.BITS_PER_PARAM][valid]),
        loss_init_mean=_finite_mean(cols[mn.LOSS_INIT][valid]),
        params_per_rank=float(np.median(usable_ratio)) if usable_ratio.size else None,
        bits_above_chance_per_param_mean=_finite_mean(cols[mn.BITS_ABOVE_CHANCE_PER_PARAM][finite]),
        bits_above_chance_per_param_max=_finite_max(cols[mn.BITS_ABOVE_CHANCE_PER_PARAM][finite]),
        certified_bits_per_param_mean=_finite_mean(cols[mn.CERTIFIED_BITS_PER_PARAM][finite]),
        loss_chance=_finite_mean(cols[mn.LOSS_CHANCE][finite]),
        cells_rising=rising, cells_ratio_known=known,
        bits_above_chance_per_param_unsaturated_mean=_finite_mean(cols[mn.BITS_ABOVE_CHANCE_PER_PARAM][unsaturated]),
        left_out=left_out_cells(*law_inputs),
    )


def left_out_cells(x: np.ndarray, ell: np.ndarray, y: np.ndarray, loss_final: np.ndarray
                   ) -> tuple[tuple[float, float, str, int], ...]:
    """GroupFit.left_out: fit_law's filter (fit._usable_records) per record, counted by cell and reason."""
    invalid = _invalid_mask(x, ell, y, loss_final)
    placed = np.isfinite(x) & np.isfinite(ell)
    reasons = np.where(~invalid, np.where(loss_final < LN2, "saturated", ""),
                       np.where(np.isfinite(y) & np.isfinite(loss_final) & placed & (x > 0) & (ell > 0),
                                "y <= 0", "not finite"))
    counts: dict[tuple[float, float, str], int] = {}
    for xi, li, reason in zip(x, ell, reasons):
        if reason:
            key = (float(xi), float(li), str(reason))
            counts[key] = counts.get(key, 0) + 1
    return tuple((xi, li, reason, n) for (xi, li, reason), n in sorted(counts.items(), key=_cell_order))


def _cell_order(item: tuple[tuple[float, float, str], int]) -> tuple:
    (xi, li, reason), _ = item
    return (reason, math.inf if math.isnan(xi) else xi, math.inf if math.isnan(li) else li)


def _cells_rising(cols: dict[str, np.ndarray], capacity_variable: str, fitted: np.ndarray) -> tuple[int, int]:
    """(cells whose median convergence ratio exceeds RISING_RATIO, cells with a known ratio), over the
    rows the fit uses: a cell's replicates vote by their median, so one slow seed does not flag it."""
    ratios: dict[tuple[float, float], list[float]] = {}
    for x, ell, ratio in zip(cols[capacity_variable][fitted], cols[mn.TARGET_TOKENS][fitted],
                             cols[mn.CONVERGENCE_RATIO][fitted]):
        if np.isfinite(ratio):
            ratios.setdefault((float(x), float(ell)), []).append(float(ratio))
    rising = sum(float(np.median(r)) > RISING_RATIO for r in ratios.values())
    return int(rising), len(ratios)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _finite_max(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else None
