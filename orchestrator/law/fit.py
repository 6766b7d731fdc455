"""The Parametric Memory Law ΔL = C · x^α · ℓ^(−β) + b: the fit, its quality, uncertainty, inverse.

Pure math (numpy, scipy, the metric-name constants): the results actor, the CLI and the documents
call it, and it knows nothing about Ray, Tune or torch, so it can be tested and rerun offline on
exported records. It takes the t quantile from scipy.special, not scipy.stats: scipy 1.17's
scipy.stats fails to import when a test blocks torch with sys.modules["torch"] = None.

Notation (n records, k distinct (x, ℓ) cells, k ≤ n)
  x        capacity variable, shape (n,): the LoRA rank r (dimensionless) or the effective parameter
           count N_eff = trainable adapter parameters (parameters)
  ℓ        target tokens to memorise, shape (n,) (tokens)
  ΔL       L_init − L_final, shape (n,) (nats per target token)
  L_final  final mean target-token loss, shape (n,) (nats per target token)
  θ        (ln C, α, β, b), shape (4,): C in nats · x^(−α) · ℓ^β; α, β dimensionless; b in nats
  f(x, ℓ)  C · x^α · ℓ^(−β) + b, the predicted ΔL (nats per target token)
  ρ        (f − ΔL) / ΔL, shape (n,): the relative residual the fit minimises (the observed ΔL
           is the fixed denominator: weighted least squares with weights 1/ΔL², not reweighted)
  s²       Σρ² / (n − 4): residual variance (dimensionless)
  Σ        covariance of θ, shape (4, 4), s² (JᵀJ)⁻¹ with J = ∂ρ/∂θ, shape (n, 4)
  c_x, c_ℓ means of ln x and ln ℓ over the cells; the solver works with a = ln C + α c_x − β c_ℓ
           and centred logs u = ln x − c_x, v = ln ℓ − c_ℓ, shape (k,), which keeps a nearly
           uncorrelated with α and β (ln C itself is not: x spans orders of magnitude)
  D        L_init − ln 2 (nats): the ΔL at which the predicted final loss reaches ln 2
  y        the response fitted in place of ΔL: ΔL itself (fit.response "delta_loss", the paper's
           quantity) or the loss drop below chance L_ref − L_final ("drop_below_chance", L_ref the mean
           of min(L_init,t, ln |V_cand|), trainables/information.py); the formulas above hold with y for ΔL
  e        mean L_init − ln |V_cand| over the fitted records (nats): how far the base started above
           chance; e > OVERCONFIDENCE_MARGIN flags the fit as not comparable with runs that start at chance

Why relative residuals: across a rank × length grid ΔL spans two orders of magnitude and its noise
is roughly multiplicative. Absolute residuals let the largest ΔL decide the fit and their covariance
intervals covered the true exponents only 50–60 % of the time at a nominal 95 % (synthetic 7 × 7
grid, 2 % multiplicative noise); relative residuals cover 94–96 % (1000 draws), and match the MAPE
the paper reports. R² and MAPE are still reported on ΔL itself.

Why cells: the fit's objective, its Jacobian Gram matrix and its residual sum depend on the records
only through per-cell weighted sums, so records that share (x, ℓ) (seeds, repeats; every sweep is a
grid) are collapsed exactly before the solver runs. A refit of 10 000 grid records takes ~5 ms, ~20 ms
with leave-one-length-out (bench/law_refit.py); 10 000 records that share no cell take ~85 ms.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

from trainables import metric_names as mn
from trainables.information import OVERCONFIDENCE_MARGIN

LN2 = math.log(2.0)
#: Two-sided level of every interval this module reports.
CONFIDENCE = 0.95
#: α and β are bounded to [−EXPONENT_BOUND, EXPONENT_BOUND]; real fits sit near 0.5–1.
EXPONENT_BOUND = 5.0
#: Fewer usable records than this gives status "too_few_points" (4 parameters, s² needs n − 4 ≥ 1).
MIN_POINTS = 5
CAPACITY_VARIABLES = (mn.RANK, mn.TRAINABLE_PARAMS)
#: What the law is fitted on: ΔL (the paper's response, the default) or the drop below chance.
RESPONSES = (mn.DELTA_LOSS, mn.DROP_BELOW_CHANCE)
INTERVAL_METHODS = ("covariance", "bootstrap")
STATUSES = (
    "ok", "too_few_points", "one_capacity", "one_length", "all_saturated", "invalid_input",
    "no_convergence",
)
CAPACITY_STATUSES = ("ok", "no_fit", "nothing_to_learn", "unreachable", "below_offset")
PARAMETERS = ("C", "alpha", "beta", "b")
#: Leave-one-length-out refits once per distinct ℓ; beyond this many lengths (ℓ measured per trial
#: rather than set by a grid) it would cost seconds per refit, so it is skipped and the message says so.
LOLO_MAX_LENGTHS = 64
_MAX_NFEV = 200  # solver evaluations per fit; a module constant so tests can force no_convergence
_N_DRAWS = 4000  # parameter draws behind required_capacity's interval
_DRAW_SEED = 0
_CEIL_RTOL = 1e-9  # rank = ceil(x) forgives this much round-off: x = 4 + 1e-12 is rank 4


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LawFit:
    """One fit of the law, or the reason there is none; persisted as JSON by the results actor."""

    status: str
    """"ok" or why there is no fit: one of STATUSES. Parameter fields are None unless "ok"."""
    message: str
    """One or two sentences for a human: what was fitted, what was left out, what to distrust."""
    capacity_variable: str
    """What x is: metric_names.RANK or metric_names.TRAINABLE_PARAMS."""
    n_points: int
    """Records the fit used."""
    n_excluded: int
    """Valid records left out as saturated: final loss < ln 2."""
    n_invalid: int
    """Records left out as unusable: NaN/inf in any input, ΔL <= 0, x <= 0 or ℓ <= 0."""
    C: float | None = None
    alpha: float | None = None
    beta: float | None = None
    b: float | None = None
    C_ci: tuple[float, float] | None = None
    """95 % interval of C (from the interval of ln C, so it is asymmetric and positive)."""
    alpha_ci: tuple[float, float] | None = None
    beta_ci: tuple[float, float] | None = None
    b_ci: tuple[float, float] | None = None
    interval_method: str | None = None
    """"covariance" (Jacobian, s², Student t with n − 4 dof) or "bootstrap" (case resampling)."""
    n_boot: int | None = None
    """Bootstrap refits that converged; None for covariance intervals."""
    covariance: tuple[tuple[float, ...], ...] | None = None
    """Σ over (ln C, α, β, b) from the Jacobian, whatever interval_method; None when singular."""
    dof: int | None = None
    """Residual degrees of freedom, n_points − 4."""
    r2: float | None = None
    """Coefficient of determination on ΔL (not on ln ΔL); None when ΔL does not vary."""
    mape: float | None = None
    """Mean absolute percentage error on ΔL, in percent."""
    lolo_mape: float | None = None
    """Leave-one-length-out: MAPE (percent) over all held-out records; None with < 3 lengths."""
    lolo_per_length: tuple[tuple[float, float | None], ...] | None = None
    """(ℓ, held-out MAPE in percent) per distinct ℓ; the MAPE is None where the refit was impossible."""
    x_range: tuple[float, float] | None = None
    """Smallest and largest x the fit used: predictions outside it are extrapolations."""
    ell_range: tuple[float, float] | None = None
    at_bound: tuple[str, ...] = ()
    """Parameters that ended on a bound (names from PARAMETERS): their intervals mean little."""
    response: str = mn.DELTA_LOSS
    """What was fitted as y: one of RESPONSES."""
    init_excess: float | None = None
    """Mean L_init − ln |V_cand| over the valid records (nats); None when the chance level is unknown."""
    comparable: bool | None = None
    """False when init_excess > OVERCONFIDENCE_MARGIN and y is ΔL: part of every ΔL undoes the base's
    overconfidence, so α, β are not comparable with runs that start at chance. None when unknown."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown LawFit status {self.status!r}; expected one of {STATUSES}")

    def predict(self, x: Any, ell: Any) -> Any:
        """ΔL in nats at capacity x and ℓ target tokens: a float for scalars, else an array."""
        if self.status != "ok":
            raise ValueError(f"no law to predict with: {self.status}: {self.message}")
        theta = np.array([math.log(self.C), self.alpha, self.beta, self.b])
        out = _predict(theta, np.asarray(x, dtype=float), np.asarray(ell, dtype=float))
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only: floats, ints, strings, lists, None (never NaN)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LawFit:
        """Inverse of to_dict; lists come back as tuples so that equality holds. Fields added since a
        fit was stored (response, init_excess, comparable) take their defaults."""
        return cls(**{f.name: _tupled(data[f.name]) for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class CapacityEstimate:
    """The planner's answer: the smallest capacity at which ℓ tokens are predicted fully learned."""

    status: str
    """"ok" or why there is no number: one of CAPACITY_STATUSES."""
    message: str
    capacity_variable: str
    tokens: float
    """ℓ asked about."""
    loss_init: float
    """L_init of that target in nats (≈ ln |V| for uniform random tokens)."""
    required_delta_loss: float
    """D = loss_init − ln 2: the ΔL that brings the predicted final loss to ln 2."""
    capacity: float | None = None
    """Smallest x with f(x, ℓ) = D, in units of the capacity variable."""
    capacity_ci: tuple[float, float | None] | None = None
    """95 % interval of capacity; an upper end of None means unbounded (α ≤ 0 is plausible)."""
    rank: int | None = None
    """Smallest integer LoRA rank meeting the target (ceil), when it can be known."""
    rank_pow2: int | None = None
    """The next power of two ≥ rank: the ranks sweeps and presets use."""
    rank_ci: tuple[int, int | None] | None = None
    params_per_rank: float | None = None
    extrapolated: bool = False
    """True when capacity or tokens lie outside the ranges the fit was made on."""
    interval_method: str = "normal_sampling"
    """How capacity_ci was made: θ drawn from N(θ̂, Σ) (fixed seed) and solved per draw."""

    def __post_init__(self) -> None:
        if self.status not in CAPACITY_STATUSES:
            raise ValueError(f"unknown CapacityEstimate status {self.status!r}; expected {CAPACITY_STATUSES}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CapacityEstimate:
        return cls(**{f.name: _tupled(data[f.name]) for f in dataclasses.fields(cls)})


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
    """Mean bits above chance per adapter parameter (trainables/information.py): the honest figure."""
    bits_above_chance_per_param_max: float | None = None
    certified_bits_per_param_mean: float | None = None
    """Mean certified bits (tokens with p > 0.5 × log2 |V_cand|) per adapter parameter."""
    loss_chance: float | None = None
    """ln |V_cand| of the group's data (nats per token)."""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "fit"}
        return {**out, "fit": self.fit.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupFit:
        fields = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name != "fit" and f.name in data}
        return cls(**fields, fit=LawFit.from_dict(data["fit"]))


# -- the fit -------------------------------------------------------------------------------------


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

    interval_method "covariance" (fast, for the live fit) gives θ̂ ± t(0.975, n − 4) · √diag Σ;
    "bootstrap" (for documents) refits n_boot case-resampled sets drawn with `seed` and takes the
    2.5 and 97.5 percentiles. Leave-one-length-out refits (warm-started from the full fit) predict
    each distinct ℓ from the others; skipped with fewer than 3 or more than LOLO_MAX_LENGTHS
    distinct lengths, or when leave_one_length_out is False (saves one refit per length).

    Raises ValueError only for caller errors: arrays that are not 1-D of one length, an unknown
    capacity_variable or interval_method, n_boot < 1.
    """
    _check_options(capacity_variable, interval_method, n_boot)
    if response not in RESPONSES:
        raise ValueError(f"response must be one of {RESPONSES}, not {response!r}")
    cols = _as_columns(x, ell, delta_loss, loss_final)
    invalid = _invalid_mask(*cols)
    saturated = ~invalid & (cols[3] < LN2)
    use = ~invalid & ~saturated
    counts = dict(n_points=int(use.sum()), n_excluded=int(saturated.sum()), n_invalid=int(invalid.sum()))
    records = _Records.sorted(cols[0][use], cols[1][use], cols[2][use])
    excess = _init_excess(loss_init, loss_chance, ~invalid, cols[0].size)
    problem = _degeneracy(records, len(use), **counts)
    if problem is not None:
        fit = LawFit(problem[0], problem[1], capacity_variable, **counts)
    else:
        options = dict(interval_method=interval_method, n_boot=n_boot, seed=seed, lolo=leave_one_length_out)
        fit = _fit_records(records, capacity_variable, counts, **options)
    return comparability(fit, response, excess)


def _init_excess(loss_init: Any, loss_chance: Any, valid: np.ndarray, n: int) -> float | None:
    """Mean L_init − ln |V_cand| over valid records with both known; None when none has both."""
    if loss_init is None or loss_chance is None:
        return None
    init, chance = (np.asarray(c, dtype=float) for c in (loss_init, loss_chance))
    if init.shape != (n,) or chance.shape != (n,):
        raise ValueError(f"loss_init and loss_chance need shape ({n},), got {init.shape} and {chance.shape}")
    known = valid & np.isfinite(init) & np.isfinite(chance)
    return float(np.mean(init[known] - chance[known])) if known.any() else None


def comparability(fit: LawFit, response: str, excess: float | None) -> LawFit:
    """The fit with its response, init_excess and comparable flag, and the flag in its message.

    A base that starts above chance (init_excess > OVERCONFIDENCE_MARGIN nats) spends part of every ΔL
    undoing that overconfidence, more at long ℓ and low rank where little is stored, so a ΔL fit's
    exponents are not those of a base that starts at chance (the tiny random-init models and
    SmolLM2-135M both start above it; docs/science.md §6). The drop below chance does not count that
    part, so its fit stays comparable; the flag is still reported.
    """
    comparable = None if excess is None else bool(excess <= OVERCONFIDENCE_MARGIN or response != mn.DELTA_LOSS)
    message = fit.message
    if response != mn.DELTA_LOSS:
        message = f"response {response} (the loss drop below chance, not ΔL); {message}"
    if excess is not None and excess > OVERCONFIDENCE_MARGIN:
        message += (f"; L_init exceeds the chance level ln |V_cand| by {excess:.2f} nats on average "
                    f"(> {OVERCONFIDENCE_MARGIN:g})")
        if response == mn.DELTA_LOSS:
            message += (": part of every ΔL undoes that overconfidence, so α and β are not comparable with "
                        "runs that start at chance (fit.response: drop_below_chance fits only the drop below it)")
        else:
            message += ": the drop below chance leaves that part out"
    return dataclasses.replace(fit, message=message, response=response, init_excess=excess, comparable=comparable)


def _fit_records(
    records: _Records, capacity_variable: str, counts: dict[str, int], *, interval_method: str, n_boot: int,
    seed: int, lolo: bool,
) -> LawFit:
    """The fit proper, on records already filtered, sorted and known to be fittable."""
    cells = _cells(records, np.ones_like(records.y))
    centre = (float(np.mean(np.log(cells.x))), float(np.mean(np.log(cells.ell))))
    solution = _solve(cells, _ols_start(cells, centre), centre)
    if solution is None:
        message = f"no convergence within {_MAX_NFEV} evaluations on {counts['n_points']} records"
        return LawFit("no_convergence", message, capacity_variable, **counts)
    theta, dof = solution.theta, counts["n_points"] - 4
    covariance = _covariance(solution, centre, counts["n_points"])
    if interval_method == "bootstrap":
        intervals, n_used = _bootstrap_intervals(records, theta, centre, n_boot, seed)
    else:
        intervals, n_used = _covariance_intervals(theta, covariance, dof), None
    r2, mape = _quality(records, theta)
    lolo_mape, lolo_per_length = (None, None)
    if lolo:
        lolo_mape, lolo_per_length = _leave_one_length_out(records, cells, theta, centre)
    fields = dict(
        C=math.exp(theta[0]), alpha=float(theta[1]), beta=float(theta[2]), b=float(theta[3]),
        **_interval_fields(intervals), interval_method=interval_method, n_boot=n_used,
        covariance=None if covariance is None else tuple(map(tuple, covariance.tolist())),
        dof=dof, r2=r2, mape=mape, lolo_mape=lolo_mape, lolo_per_length=lolo_per_length,
        x_range=(float(records.x[0]), float(records.x[-1])),
        ell_range=(float(cells.ell.min()), float(cells.ell.max())), at_bound=solution.at_bound,
    )
    message = _ok_message(records, cells, counts, fields, covariance is None)
    return LawFit("ok", message, capacity_variable, **counts, **fields)


def _check_options(capacity_variable: str, interval_method: str, n_boot: int) -> None:
    if capacity_variable not in CAPACITY_VARIABLES:
        raise ValueError(f"capacity_variable must be one of {CAPACITY_VARIABLES}, not {capacity_variable!r}")
    if interval_method not in INTERVAL_METHODS:
        raise ValueError(f"interval_method must be one of {INTERVAL_METHODS}, not {interval_method!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, not {n_boot}")


def _as_columns(*columns: Any) -> tuple[np.ndarray, ...]:
    """Float arrays (None becomes NaN); a shape mismatch is the caller's bug, so it raises."""
    arrays = tuple(np.asarray(c, dtype=float) for c in columns)
    if any(a.ndim != 1 for a in arrays) or len({a.size for a in arrays}) != 1:
        raise ValueError(f"fit_law needs 1-D arrays of one length, got shapes {[a.shape for a in arrays]}")
    return arrays


def _invalid_mask(x: np.ndarray, ell: np.ndarray, dl: np.ndarray, lf: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x) & np.isfinite(ell) & np.isfinite(dl) & np.isfinite(lf)
    return ~(finite & (dl > 0) & (x > 0) & (ell > 0))


def _degeneracy(
    records: _Records, n_total: int, n_points: int, n_excluded: int, n_invalid: int
) -> tuple[str, str] | None:
    """(status, message) when the usable records cannot determine four parameters, else None."""
    left_out = f"{n_excluded} saturated (final loss < ln 2) and {n_invalid} invalid of {n_total} records"
    if n_total == 0:
        return "too_few_points", "no records to fit"
    if n_invalid == n_total:
        return "invalid_input", f"every record is invalid (NaN/inf, ΔL <= 0, x <= 0 or ℓ <= 0): {n_total}"
    if n_points == 0 and n_excluded > 0:
        return "all_saturated", f"every usable record is saturated: {left_out}"
    if n_points < MIN_POINTS:
        return "too_few_points", f"{n_points} usable records, need {MIN_POINTS}; left out {left_out}"
    if np.unique(records.x).size == 1:
        return "one_capacity", f"all {n_points} usable records share one capacity x = {records.x[0]:g}"
    if np.unique(records.ell).size == 1:
        return "one_length", f"all {n_points} usable records share one length ℓ = {records.ell[0]:g}"
    if records.cell_start.size < 4:
        return "too_few_points", f"{records.cell_start.size} distinct (x, ℓ) pairs cannot fix 4 parameters"
    return None


def _ok_message(
    records: _Records, cells: _Cells, counts: dict[str, int], fields: dict[str, Any], singular: bool
) -> str:
    n_x, n_ell = np.unique(records.x).size, np.unique(cells.ell).size
    parts = [
        f"fitted {counts['n_points']} records ({n_x} capacities × {n_ell} lengths); "
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
    return "; ".join(parts)


# -- records and cells ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Records:
    """Usable records sorted by (x, ℓ, ΔL), so every sum below runs in one fixed order."""

    x: np.ndarray  # (n,)
    ell: np.ndarray  # (n,)
    y: np.ndarray  # (n,) ΔL
    cell_start: np.ndarray  # (k,) index of each cell's first record

    @classmethod
    def sorted(cls, x: np.ndarray, ell: np.ndarray, y: np.ndarray) -> _Records:
        order = np.lexsort((y, ell, x))
        x, ell, y = x[order], ell[order], y[order]
        new_cell = np.ones(x.size, dtype=bool)
        new_cell[1:] = (x[1:] != x[:-1]) | (ell[1:] != ell[:-1])
        return cls(x, ell, y, np.flatnonzero(new_cell))


@dataclass(frozen=True)
class _Cells:
    """Records collapsed per (x, ℓ): weight Σ m/ΔL² and the weighted mean ΔL reproduce the record
    level objective up to the constant `within`, which is kept for the residual variance."""

    x: np.ndarray  # (k,)
    ell: np.ndarray  # (k,)
    y_bar: np.ndarray  # (k,) Σ m/ΔL / Σ m/ΔL²: the mean ΔL under relative-residual weights
    weight: np.ndarray  # (k,) Σ m/ΔL²
    log_mean: np.ndarray  # (k,) Σ m ln ΔL / Σ m, for the OLS start
    count: np.ndarray  # (k,) Σ m: records in the cell
    y_min: np.ndarray  # (k,)
    y_max: np.ndarray  # (k,)
    within: np.ndarray  # (k,) Σ m ρ² about y_bar

    def take(self, mask: np.ndarray) -> _Cells:
        return _Cells(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))


def _cells(records: _Records, multiplicity: np.ndarray) -> _Cells:
    """Collapse records, each counted `multiplicity` times (ones, or bootstrap counts)."""
    y, m, start = records.y, multiplicity, records.cell_start
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.add.reduceat(m / y**2, start)
        count = np.add.reduceat(m, start)
        y_bar = np.add.reduceat(m / y, start) / weight
        log_mean = np.add.reduceat(m * np.log(y), start) / count
        y_bar_each = np.repeat(y_bar, np.diff(np.append(start, y.size)))
        within = np.add.reduceat(m * (1.0 - y_bar_each / y) ** 2, start)
    present = m > 0
    y_min = np.minimum.reduceat(np.where(present, y, np.inf), start)
    y_max = np.maximum.reduceat(np.where(present, y, -np.inf), start)
    cells = _Cells(records.x[start], records.ell[start], y_bar, weight, log_mean, count, y_min, y_max, within)
    return cells if present.all() else cells.take(count > 0)


def _identifiable(cells: _Cells) -> bool:
    """At least two capacities, two lengths and MIN_POINTS records."""
    return np.unique(cells.x).size > 1 and np.unique(cells.ell).size > 1 and cells.count.sum() >= MIN_POINTS


# -- solver --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Solution:
    theta: np.ndarray  # (4,) (ln C, α, β, b)
    rss: float  # Σρ² over the records, within-cell part included
    jac: np.ndarray  # (k, 4) ∂(√weight · residual)/∂(a, α, β, b) at the optimum
    at_bound: tuple[str, ...]


def _predict(theta: np.ndarray, x: np.ndarray, ell: np.ndarray) -> np.ndarray:
    return np.exp(theta[0] + theta[1] * np.log(x) - theta[2] * np.log(ell)) + theta[3]


def _internal(theta: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """(ln C, α, β, b) -> (a, α, β, b), a = ln C + α c_x − β c_ℓ."""
    return np.array([theta[0] + theta[1] * centre[0] - theta[2] * centre[1], theta[1], theta[2], theta[3]])


def _natural(p: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    return np.array([p[0] - p[1] * centre[0] + p[2] * centre[1], p[1], p[2], p[3]])


def _natural_jacobian(centre: tuple[float, float]) -> np.ndarray:
    """∂(ln C, α, β, b)/∂(a, α, β, b): the linear map that carries Σ to natural parameters."""
    out = np.eye(4)
    out[0, 1], out[0, 2] = -centre[0], centre[1]
    return out


def _bounds(cells: _Cells) -> tuple[np.ndarray, np.ndarray]:
    """Solver bounds on (a, α, β, b); see fit_law's docstring for why these."""
    y_min, y_max = float(cells.y_min.min()), float(cells.y_max.max())
    lower = np.array([-np.inf, -EXPONENT_BOUND, -EXPONENT_BOUND, -(y_max - y_min)])
    upper = np.array([np.inf, EXPONENT_BOUND, EXPONENT_BOUND, y_min])
    return lower, upper


def _ols_start(cells: _Cells, centre: tuple[float, float]) -> np.ndarray:
    """OLS of ln ΔL on [1, ln x, ln ℓ] with b = 0; on cell means weighted by counts it is exact."""
    u, v = np.log(cells.x) - centre[0], np.log(cells.ell) - centre[1]
    root = np.sqrt(cells.count)
    design = root[:, None] * np.column_stack([np.ones_like(u), u, -v])
    a, alpha, beta = np.linalg.lstsq(design, root * cells.log_mean, rcond=None)[0]
    return _natural(np.array([a, alpha, beta, 0.0]), centre)


def _solve(cells: _Cells, start: np.ndarray, centre: tuple[float, float]) -> _Solution | None:
    """Bounded trf least squares on the cells from `start` (natural θ); None if it fails."""
    lower, upper = _bounds(cells)
    u, v = np.log(cells.x) - centre[0], np.log(cells.ell) - centre[1]
    root, ones = np.sqrt(cells.weight), np.ones_like(u)

    def residuals(p: np.ndarray) -> np.ndarray:
        return root * (np.exp(p[0] + p[1] * u - p[2] * v) + p[3] - cells.y_bar)

    def jacobian(p: np.ndarray) -> np.ndarray:
        power = np.exp(p[0] + p[1] * u - p[2] * v)
        return root[:, None] * np.column_stack([power, power * u, -power * v, ones])

    p0 = np.clip(_internal(start, centre), lower, upper)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            res = optimize.least_squares(
                residuals, p0, jac=jacobian, bounds=(lower, upper), method="trf", max_nfev=_MAX_NFEV
            )
    except (ValueError, np.linalg.LinAlgError):  # non-finite residuals at the start
        return None
    if res.status <= 0 or not np.all(np.isfinite(res.x)):
        return None
    at_bound = tuple(PARAMETERS[i] for i in np.flatnonzero(res.active_mask))
    rss = float(2.0 * res.cost + cells.within.sum())
    return _Solution(_natural(res.x, centre), rss, jacobian(res.x), at_bound)


# -- uncertainty and quality ---------------------------------------------------------------------


def _covariance(solution: _Solution, centre: tuple[float, float], n: int) -> np.ndarray | None:
    """Σ = s² (JᵀJ)⁻¹ in natural parameters; None when J is numerically rank-deficient."""
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
    records: _Records, theta: np.ndarray, centre: tuple[float, float], n_boot: int, seed: int
) -> tuple[np.ndarray | None, int]:
    """Percentile intervals over case-resampled refits, each warm-started from θ̂."""
    rng, n, draws = np.random.default_rng(seed), records.y.size, []
    for _ in range(n_boot):
        multiplicity = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(float)
        cells = _cells(records, multiplicity)
        solution = _solve(cells, theta, centre) if _identifiable(cells) else None
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
    pairs[0] = (math.exp(pairs[0][0]), math.exp(pairs[0][1]))
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


# -- the inverse query ---------------------------------------------------------------------------


def required_capacity(
    fit: LawFit, tokens: float, loss_init: float, *, params_per_rank: float | None = None
) -> CapacityEstimate:
    """The smallest x at which `tokens` target tokens are predicted fully learned.

    "Fully learned" means the predicted final loss loss_init − f(x, ℓ) reaches ln 2, so
    f(x, ℓ) = D = loss_init − ln 2 and x = ((D − b) · ℓ^β / C)^(1/α). The 95 % interval comes from
    _N_DRAWS parameter vectors drawn from N(θ̂, Σ) over (ln C, α, β, b) with a fixed seed (not the
    delta method: x is strongly nonlinear in α), solved one by one; a draw with α ≤ 0 counts as an
    unbounded capacity, a draw with b ≥ D as capacity 0. Statuses: "ok"; "no_fit" (fit not ok);
    "nothing_to_learn" (loss_init ≤ ln 2); "unreachable" (α ≤ 0: more capacity does not help, or x
    overflows); "below_offset" (b ≥ D: the law predicts success at any capacity, which is outside
    what it was fitted on). The rank is ceil(x) when x is the rank, or ceil(x / params_per_rank)
    when x is trainable_params and params_per_rank is given.
    """
    _check_query(tokens, loss_init, params_per_rank)
    target = loss_init - LN2
    base = dict(capacity_variable=fit.capacity_variable, tokens=float(tokens), loss_init=float(loss_init),
                required_delta_loss=target, params_per_rank=params_per_rank)
    problem = _query_problem(fit, target)
    if problem is not None:
        return CapacityEstimate(problem[0], problem[1], **base)
    theta = np.array([math.log(fit.C), fit.alpha, fit.beta, fit.b])
    capacity = float(_solve_capacity(theta[None, :], tokens, target)[0])
    if not math.isfinite(capacity):
        return CapacityEstimate("unreachable", "the required capacity overflows: far outside the fit", **base)
    interval = _capacity_interval(fit, theta, tokens, target)
    inside = fit.x_range[0] <= capacity <= fit.x_range[1] and fit.ell_range[0] <= tokens <= fit.ell_range[1]
    extrapolated = not inside
    ranks = _rank_fields(fit.capacity_variable, capacity, interval, params_per_rank)
    message = _capacity_message(fit, capacity, interval, tokens, extrapolated)
    return CapacityEstimate("ok", message, **base, capacity=capacity, capacity_ci=interval,
                            extrapolated=extrapolated, **ranks)


def _check_query(tokens: float, loss_init: float, params_per_rank: float | None) -> None:
    if not (math.isfinite(tokens) and tokens > 0):
        raise ValueError(f"tokens must be a positive finite number, not {tokens}")
    if not math.isfinite(loss_init):
        raise ValueError(f"loss_init must be finite, not {loss_init}")
    if params_per_rank is not None and not (math.isfinite(params_per_rank) and params_per_rank > 0):
        raise ValueError(f"params_per_rank must be a positive finite number, not {params_per_rank}")


def _query_problem(fit: LawFit, target: float) -> tuple[str, str] | None:
    if fit.status != "ok":
        return "no_fit", f"no law to invert: {fit.status}: {fit.message}"
    if target <= 0:
        return "nothing_to_learn", f"loss_init is already at or below ln 2 (D = {target:.4g} nats)"
    if fit.alpha <= 0:
        return "unreachable", f"the fit has α = {fit.alpha:.3g} ≤ 0: more capacity does not raise ΔL"
    if fit.b >= target:
        return "below_offset", (f"the fitted offset b = {fit.b:.4g} nats already reaches the required ΔL "
                                f"{target:.4g}: the law says any capacity suffices, which it cannot know")
    return None


def _solve_capacity(thetas: np.ndarray, tokens: float, target: float) -> np.ndarray:
    """x solving f(x, ℓ) = D for each row of thetas (m, 4); inf where α ≤ 0, 0 where b ≥ D."""
    log_c, alpha, beta, b = thetas.T
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_x = (np.log(target - b) + beta * math.log(tokens) - log_c) / alpha
        x = np.exp(log_x)
    x = np.where(b >= target, 0.0, x)
    return np.where(alpha <= 0, np.inf, x)


def _capacity_interval(
    fit: LawFit, theta: np.ndarray, tokens: float, target: float
) -> tuple[float, float | None] | None:
    """Percentiles of x over draws θ ~ N(θ̂, Σ); an infinite upper percentile becomes None."""
    if fit.covariance is None:
        return None
    rng = np.random.default_rng(_DRAW_SEED)
    covariance = np.array(fit.covariance)
    draws = rng.multivariate_normal(theta, covariance, size=_N_DRAWS, method="eigh", check_valid="ignore")
    xs = np.sort(_solve_capacity(draws, tokens, target))
    tail = (1 - CONFIDENCE) / 2
    low, high = xs[int(math.floor(tail * _N_DRAWS))], xs[int(math.ceil((1 - tail) * _N_DRAWS)) - 1]
    return float(low), (float(high) if math.isfinite(high) else None)


def _rank_fields(
    capacity_variable: str, capacity: float, interval: tuple[float, float | None] | None,
    params_per_rank: float | None,
) -> dict[str, Any]:
    """rank, rank_pow2 and rank_ci when x is the rank or params_per_rank converts it; else none."""
    if capacity_variable == mn.RANK:
        per_rank = 1.0
    elif params_per_rank is not None:
        per_rank = params_per_rank
    else:
        return {}
    rank = _ceil_rank(capacity / per_rank)
    out: dict[str, Any] = dict(rank=rank, rank_pow2=1 << (rank - 1).bit_length())
    if interval is not None:
        high = None if interval[1] is None else _ceil_rank(interval[1] / per_rank)
        out["rank_ci"] = (_ceil_rank(interval[0] / per_rank), high)
    return out


def _ceil_rank(x: float) -> int:
    """Smallest integer rank ≥ x (forgiving _CEIL_RTOL of round-off), at least 1."""
    return max(1, math.ceil(x * (1.0 - _CEIL_RTOL)))


def _capacity_message(
    fit: LawFit, capacity: float, interval: tuple[float, float | None] | None, tokens: float,
    extrapolated: bool,
) -> str:
    text = f"{fit.capacity_variable} ≈ {capacity:.4g} learns {tokens:g} tokens to final loss ln 2"
    if interval is not None:
        high = "unbounded" if interval[1] is None else f"{interval[1]:.4g}"
        text += f" (95 % interval {interval[0]:.4g} to {high})"
    if extrapolated:
        text += f"; extrapolated beyond the fitted x {fit.x_range} and ℓ {fit.ell_range}"
    return text


# -- groups --------------------------------------------------------------------------------------


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


_GROUP_KEYS = (mn.RANK, mn.TRAINABLE_PARAMS, mn.TARGET_TOKENS, mn.DELTA_LOSS, mn.DROP_BELOW_CHANCE, mn.LOSS_FINAL,
               mn.LOSS_INIT, mn.LOSS_CHANCE, mn.BITS_PER_PARAM, mn.BITS_ABOVE_CHANCE_PER_PARAM,
               mn.CERTIFIED_BITS_PER_PARAM)


def _fit_group(group: str, rows: list[Mapping[str, Any]], capacity_variable: str, response: str) -> GroupFit:
    cols = {key: np.array([_number(row.get(key)) for row in rows]) for key in _GROUP_KEYS}
    law_inputs = (cols[capacity_variable], cols[mn.TARGET_TOKENS], cols[response], cols[mn.LOSS_FINAL])
    fit = fit_law(*law_inputs, capacity_variable=capacity_variable, response=response,
                  loss_init=cols[mn.LOSS_INIT], loss_chance=cols[mn.LOSS_CHANCE])
    # Summaries over every finished row whose inputs are finite (a trial above chance has ΔL > 0 but
    # 0 bits above chance: it belongs in the mean).
    finite = np.isfinite(cols[capacity_variable]) & np.isfinite(cols[mn.TARGET_TOKENS]) & np.isfinite(cols[mn.LOSS_FINAL])
    valid = ~_invalid_mask(cols[capacity_variable], cols[mn.TARGET_TOKENS], cols[mn.DELTA_LOSS], cols[mn.LOSS_FINAL])
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
    )


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


# -- JSON ----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, tuples and arrays to lists, NaN and ±inf to None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"cannot make {type(value).__name__} JSON-safe")


def _tupled(value: Any) -> Any:
    """Lists back to tuples, recursively, as the dataclasses hold them."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
