"""The Parametric Memory Law ΔL = C · x^α · ℓ^(−β) + b: the model, its records, its solver, LawFit.

The base of orchestrator.law: what a fit is (LawFit; GroupFit for one group of records), which
records a fit uses and which it leaves out, and the bounded least-squares solve that finds θ̂. The
rest of the law builds on this module, one way, and it imports none of them:
  uncertainty.py  fit_law, the entry point: this module's filter and point fit, plus Σ, the
                  intervals (covariance or bootstrap), R², MAPE and leave-one-length-out, since
                  every LawFit carries them
  capacity.py     required_capacity: the inverse query, "what rank do I need for ℓ tokens"
  grouping.py     fit_groups: one fit per group of rows, summarised in a GroupFit
Names with a leading underscore are shared with those modules, not with the rest of memlaw.

Pure math (numpy, scipy, the metric-name constants): the results actor, the CLI and the documents
call it, and it knows nothing about Ray, Tune or torch, so it can be tested and rerun offline on
exported records.

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
  c_x, c_ℓ means of ln x and ln ℓ over the cells; the solver works with a = ln C + α c_x − β c_ℓ
           and centred logs u = ln x − c_x, v = ln ℓ − c_ℓ, shape (k,), which keeps a nearly
           uncorrelated with α and β (ln C itself is not: x spans orders of magnitude)
  y        the response fitted in place of ΔL: ΔL itself (fit.response "delta_loss", the paper's
           quantity) or the loss drop below chance L_ref − L_final ("drop_below_chance", L_ref the mean
           of min(L_init,t, ln |V_cand|), trainables/information.py); the formulas above hold with y for ΔL
  e        mean L_init − ln |V_cand| over the fitted records (nats): how far the base started above
           chance; e > OVERCONFIDENCE_MARGIN flags the fit as not comparable with runs that start at chance
  (Σ, the covariance of θ, and s² are uncertainty.py's; D = L_init − ln 2 is capacity.py's)

Why relative residuals: across a rank × length grid ΔL spans two orders of magnitude and its noise
is roughly multiplicative. Absolute residuals let the largest ΔL decide the fit and their covariance
intervals covered the true exponents only 50–60 % of the time at a nominal 95 % (synthetic 7 × 7
grid, 2 % multiplicative noise); relative residuals cover 94–96 % (1000 draws), and match the MAPE
the paper reports. R² and MAPE are still reported on ΔL itself.

Why a cell is one observation: records that share (x, ℓ) (seeds, repeats) are replicates of one design
point, not new information about the law's shape. Each cell enters the fit once, as its mean ΔL ȳ_c
(Σ 1/ΔL over Σ 1/ΔL²) with one relative residual; s², the dof (k − 4) and the bootstrap (which resamples
cells) all count cells, so doubling every record, or adding replicates that vary only the init, leaves
the intervals where they were. On a balanced grid the point estimate equals the record-level one. The
replicates' spread is the pure error of the lack-of-fit test (identifiability.py). Refit times:
bench/law_refit.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from trainables import metric_names as mn
from trainables.information import OVERCONFIDENCE_MARGIN

LN2 = math.log(2.0)
#: Two-sided level of every interval the law reports (LawFit's, CapacityEstimate's).
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
PARAMETERS = ("C", "alpha", "beta", "b")
_MAX_NFEV = 200  # solver evaluations per fit; a module constant so tests can force no_convergence


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
    """Residual degrees of freedom, n_cells − 4: replicates inside a cell are not new cells."""
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
    n_cells: int | None = None
    """Distinct (x, ℓ) cells the fit used: its observations (n_points counts their records)."""
    lack_of_fit_p: float | None = None
    """p of the F test of the cells' residuals against the replicates' pure error (identifiability.py);
    None without replicates that differ."""
    alpha_profile_ci: tuple[float, float] | None = None
    """Profile-likelihood 95 % interval of α (C, β and b refitted at each α); a bound of ±EXPONENT_BOUND
    means the profile never rose enough on that side: the interval is open there."""
    beta_profile_ci: tuple[float, float] | None = None
    alpha_over_b: tuple[float, float] | None = None
    """Smallest and largest α̂ when b is held at values across its own interval (identifiability.py)."""
    beta_over_b: tuple[float, float] | None = None
    identified: bool | None = None
    """False when α or β moves over b's interval by more than the width of its own interval: the offset
    trades against the exponents and the cells do not pin them down. None when not computed."""

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


# -- which records a fit uses; comparability -----------------------------------------------------


def _usable_records(
    x: Any, ell: Any, delta_loss: Any, loss_final: Any, loss_init: Any, loss_chance: Any
) -> tuple[_Records, dict[str, int], float | None, tuple[str, str] | None]:
    """fit_law's filter: the usable records sorted, the counts (n_points, n_excluded, n_invalid),
    init_excess, and (status, message) when the records cannot determine four parameters."""
    cols = _as_columns(x, ell, delta_loss, loss_final)
    invalid = _invalid_mask(*cols)
    saturated = ~invalid & (cols[3] < LN2)
    use = ~invalid & ~saturated
    counts = dict(n_points=int(use.sum()), n_excluded=int(saturated.sum()), n_invalid=int(invalid.sum()))
    records = _Records.sorted(cols[0][use], cols[1][use], cols[2][use])
    excess = _init_excess(loss_init, loss_chance, ~invalid, cols[0].size)
    return records, counts, excess, _degeneracy(records, len(use), **counts)


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
    if records.cell_start.size < MIN_POINTS:
        return "too_few_points", (f"{records.cell_start.size} distinct (x, ℓ) cells, need {MIN_POINTS}: replicates "
                                  f"of a cell are not new cells, and 4 parameters need a residual to judge them by")
    return None


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


def _observations(cells: _Cells, multiplicity: np.ndarray | None = None) -> _Cells:
    """The cells as the fit's observations: each cell once (or `multiplicity` times, for the cell
    bootstrap), weight m/ȳ², no within-cell term (module docstring, "Why cells")."""
    m = np.ones_like(cells.y_bar) if multiplicity is None else multiplicity
    out = dataclasses.replace(cells, weight=m / cells.y_bar**2, count=m, within=np.zeros_like(m))
    return out if (m > 0).all() else out.take(m > 0)


def _identifiable(cells: _Cells) -> bool:
    """At least two capacities, two lengths and four distinct cells for four parameters."""
    return np.unique(cells.x).size > 1 and np.unique(cells.ell).size > 1 and cells.x.size >= 4


# -- solver --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Solution:
    theta: np.ndarray  # (4,) (ln C, α, β, b)
    rss: float  # Σ weight · residual² over the observations (cells; within-cell part included if any)
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


def _point_fit(records: _Records) -> tuple[_Cells, tuple[float, float], _Solution | None]:
    """θ̂ on records known to be fittable: their cells (as observations), the centre (c_x, c_ℓ) and the
    solution from the OLS start (None when the solver does not converge)."""
    cells = _observations(_cells(records, np.ones_like(records.y)))
    centre = (float(np.mean(np.log(cells.x))), float(np.mean(np.log(cells.ell))))
    return cells, centre, _solve(cells, _ols_start(cells, centre), centre)


def _no_convergence(capacity_variable: str, counts: dict[str, int]) -> LawFit:
    message = f"no convergence within {_MAX_NFEV} evaluations on {counts['n_points']} records"
    return LawFit("no_convergence", message, capacity_variable, **counts)


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
