"""Law-guided adaptive sweeps: propose each next (rank, ℓ) where the law's fit is least certain.

Pure (numpy, scipy through orchestrator.law.uncertainty): no Ray, no Tune. orchestrator/tune/adaptive_search.py wraps
it as a Ray Tune Searcher; the tests and bench/adaptive_vs_grid.py drive it directly.

Notation (k candidates, m observations)
  r, ℓ     LoRA rank and target tokens of a grid point (the grid's `adapter.rank` and
           `data.target_tokens` axes); every other grid axis must hold a single value
  P        candidate points (r, ℓ), shape (k, 2), sorted by (r, ℓ): the tie-break order
  u, v     log coordinates of P scaled to [0, 1] (design_points.py), where distances are measured
  θ        (ln C, α, β, b), shape (4,), the parametrization of LawFit.covariance (fit.py)
  Σ        covariance of θ̂, shape (4, 4), s² (JᵀJ)⁻¹ with J = ∂ρ/∂θ over the fitted records
  s²       Σρ² / (n − 4), the fit's residual variance of the relative residual ρ = (f − ΔL) / ΔL
  f̂(r, ℓ)  C r^α ℓ^(−β) + b at θ̂: the predicted ΔL (nats per target token)
  j        ∂ρ/∂θ at a candidate, shape (4,): (P̂, P̂ ln r, −P̂ ln ℓ, 1) / f̂ with P̂ = f̂ − b, the
           observed ΔL of the not-yet-run point replaced by its prediction
  L₀       mean L_init over the observations (nats per target token)
  c        (k,) predicted seconds of a trial at each candidate (trial_cost.py: a FLOP prior corrected by
           the wall_s that finished trials measured); 1 per trial without a cost model

Initial design: n0 space-filling points (orchestrator/law/design_points.py).

Acquisition (after every initial point has a result, and while the fit's status is "ok" with a
covariance): adding a run at a candidate adds the row j to J, so by Sherman–Morrison

    Σ' = Σ − Σ j jᵀ Σ / (s² + jᵀ Σ j),

and the candidate's gain is the drop of var(α) + var(β), ((Σj)_α² + (Σj)_β²) / (s² + jᵀΣj). Its score
is gain / c: information per GPU-second (cost_aware, the default; per trial with cost_aware off or
no cost model). Why per second: the stopping rule asks for a variance, and the bill is in seconds,
so the greedy step that buys the most variance per second is the greedy solution of the budgeted
design "reach the widths at the least cost" (Khuller, Moss & Naor's cost-benefit greedy for budgeted
coverage; here the gains shrink as points are added, which is what makes greedy reasonable, though
variance reduction is not exactly submodular). With trials of equal cost it is the old score. The
observed ΔL never enters Σ', so points already proposed but still running are folded into Σ the
same way before scoring (several proposals can be out at once without all landing on one point).
Candidates already run or running are out, and so are those predicted saturated, L₀ − f̂ < ln 2
(the fit would drop them), and those predicted hopeless, f̂ < hopeless_share · L₀ (default 2 %).
The largest score wins; scores within 1e-9 (relative) of it tie and the first in P's order wins.
Without an "ok" fit the searcher falls back to space filling: the untried candidate farthest (in
u, v) from every point tried so far, skipping points that a run observed saturated dominates
(rank at least as large and ℓ at most as long: ΔL grows with r and falls with ℓ). Neither the
initial design nor the space filling looks at c: before a fit there is no information to weigh
against it (on the paper-size oracle, paper_oracle.py, the initial six took 2 % of the grid's GPU-hours).

Stopping: when the 95 % intervals of α and β (LawFit.alpha_ci, beta_ci) are both no wider than
their tolerances (neither exponent on a bound, and the fit has at least min_dof residual degrees
of freedom: s² from 1-3 dof is too noisy, and on the synthetic law below stopping at dof 1-2 left
half the runs with an interval missing a true exponent), when max_trials proposals have been made,
when the trials' cost would pass cost_budget seconds (measured where finished, predicted where
running or failed; a candidate that would take the spend past it is not admissible), or when no
admissible candidate remains and nothing is running. When the tolerances are met while
trials still run, no new point is proposed and the rule is judged again once they report, so the
final fit, which includes them, is the one that meets it.

State (AdaptiveState): proposals still running, observations, failures and the proposal count;
to_dict/from_dict make it plain JSON, so a searcher restored from it makes the same next proposals.
A failed trial's point may be proposed once more; after a second failure it is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.law.design_points import Candidates, Point, initial_design, point_key
from orchestrator.law.fit import LN2, MIN_POINTS, LawFit
from orchestrator.law.trial_cost import CostModel, UniformCost, with_measurements
from orchestrator.law.uncertainty import fit_law
from trainables import metric_names as mn

#: A failed point is proposed at most this many times in all (the first try and one retry).
MAX_TRIES = 2
_TIE_RTOL = 1e-9
STOP_REASONS = ("tolerance", "budget", "cost_budget", "no_candidates")
OBSERVATION_KEYS = (mn.RANK, mn.TARGET_TOKENS, mn.DELTA_LOSS, mn.LOSS_FINAL, mn.LOSS_INIT, mn.WALL_S)


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    alpha_tol: float = 0.05
    """Stop once the 95 % interval of α is at most this wide."""
    beta_tol: float = 0.05
    """... and that of β too."""
    max_trials: int = 0
    """Proposals in all, retries included; 0 means one per candidate."""
    initial_points: int = 6
    """Size of the space-filling design run before any adaptive proposal."""
    seed: int = 0
    """Breaks ties in the initial design."""
    hopeless_share: float = 0.02
    """A candidate with predicted ΔL below this share of L₀ is not worth a trial."""
    min_dof: int = 4
    """The tolerance rule waits for a fit with at least this many residual degrees of freedom."""
    cost_budget: float = 0.0
    """Seconds of trials in all (the cost model's unit: GPU-seconds with one GPU a trial); 0: no limit."""
    cost_aware: bool = True
    """Score information per second of the cost model (True) or per trial (False)."""

    def __post_init__(self) -> None:
        problems = []
        if not (self.alpha_tol > 0 and self.beta_tol > 0):
            problems.append(f"tolerances must be > 0, got alpha_tol {self.alpha_tol}, beta_tol {self.beta_tol}")
        if self.max_trials < 0:
            problems.append(f"max_trials must be >= 0, got {self.max_trials}")
        if self.initial_points < MIN_POINTS:
            problems.append(f"initial_points must be >= {MIN_POINTS} (the fit needs them), got {self.initial_points}")
        if self.min_dof < 1:
            problems.append(f"min_dof must be >= 1, got {self.min_dof}")
        if not 0 <= self.hopeless_share < 1:
            problems.append(f"hopeless_share must be in [0, 1), got {self.hopeless_share}")
        if not (math.isfinite(self.cost_budget) and self.cost_budget >= 0):
            problems.append(f"cost_budget must be a finite number >= 0, got {self.cost_budget}")
        if problems:
            raise ValueError("; ".join(problems))


# -- the state -----------------------------------------------------------------------------------


@dataclass
class AdaptiveState:
    """What a run has done so far; mutated by propose/complete/fail; plain JSON via to_dict."""

    pending: dict[str, Point] = field(default_factory=dict)
    """trial id -> point, for proposals without a result yet (insertion order kept)."""
    observations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """trial id -> {"point": [r, ℓ], rank, target_tokens, delta_loss, loss_final, loss_init, wall_s} (None
    for a missing or non-finite metric)."""
    failures: list[Point] = field(default_factory=list)
    """The point of every failed trial, one entry per failure."""
    n_proposed: int = 0
    """Proposals made, retries included: what max_trials counts."""
    finished: str | None = None
    """The stop reason once the run has stopped (one of STOP_REASONS), else None."""

    def propose(self, trial_id: str, point: Point) -> None:
        self.pending[trial_id] = tuple(point)
        self.n_proposed += 1

    def complete(self, trial_id: str, result: Mapping[str, Any] | None, error: bool = False) -> bool:
        """Record a finished trial (True) or its failure (False); a repeat of a known trial is ignored."""
        if trial_id in self.observations:
            return True
        point = self.pending.pop(trial_id, None)
        usable = not error and result is not None and _finite(result.get(mn.DELTA_LOSS))
        if not usable:
            if point is not None:
                self.failures.append(point)
            return False
        if point is None:  # not proposed by this state (say, delivered again after a restore)
            if not (_finite(result.get(mn.RANK)) and _finite(result.get(mn.TARGET_TOKENS))):
                return False
            point = (result[mn.RANK], result[mn.TARGET_TOKENS])
        self.observations[trial_id] = {"point": list(point),
                                       **{k: _number_or_none(result.get(k)) for k in OBSERVATION_KEYS}}
        return True

    def observed_points(self) -> list[Point]:
        return [tuple(o["point"]) for o in self.observations.values()]

    def tries(self, point: Point) -> int:
        """Times the point was proposed and has not come back with a result: failures and running."""
        key = point_key(point)
        return sum(point_key(p) == key for p in self.failures) + sum(point_key(p) == key for p in self.pending.values())

    def to_dict(self) -> dict[str, Any]:
        return {"pending": {t: list(p) for t, p in self.pending.items()},
                "observations": {t: dict(o) for t, o in self.observations.items()},
                "failures": [list(p) for p in self.failures], "n_proposed": self.n_proposed,
                "finished": self.finished}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptiveState:
        return cls(pending={str(t): tuple(p) for t, p in data["pending"].items()},
                   observations={str(t): dict(o) for t, o in data["observations"].items()},
                   failures=[tuple(p) for p in data["failures"]], n_proposed=int(data["n_proposed"]),
                   finished=data.get("finished"))


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _number_or_none(v: Any) -> float | None:
    return float(v) if _finite(v) else None


# -- the fit and the acquisition -----------------------------------------------------------------


def fit_observations(observations: Iterable[Mapping[str, Any]]) -> LawFit:
    """The law in the rank, by fit_law with covariance intervals, from observation dicts."""
    obs = list(observations)
    cols = [np.array([np.nan if o.get(k) is None else float(o[k]) for o in obs], dtype=float)
            for k in (mn.RANK, mn.TARGET_TOKENS, mn.DELTA_LOSS, mn.LOSS_FINAL)]
    return fit_law(*cols, capacity_variable=mn.RANK, leave_one_length_out=False, identify=False)


def theta_of(fit: LawFit) -> np.ndarray:
    """θ̂ = (ln C, α, β, b) of an "ok" fit."""
    return np.array([math.log(fit.C), fit.alpha, fit.beta, fit.b])


def residual_variance(fit: LawFit, observations: Iterable[Mapping[str, Any]]) -> float:
    """s² = Σρ² / (n − 4) over the records the fit used (valid, not saturated), as uncertainty.py defines it."""
    obs = [o for o in observations if _usable(o)]
    if len(obs) != fit.n_points or fit.dof is None or fit.dof < 1:
        raise ValueError(f"the observations ({len(obs)} usable) are not the fit's {fit.n_points} records")
    x = np.array([o[mn.RANK] for o in obs], dtype=float)
    ell = np.array([o[mn.TARGET_TOKENS] for o in obs], dtype=float)
    y = np.array([o[mn.DELTA_LOSS] for o in obs], dtype=float)
    rho = (np.asarray(fit.predict(x, ell)) - y) / y
    return float(np.sum(rho**2) / fit.dof)


def _usable(o: Mapping[str, Any]) -> bool:
    """fit_law's filter: finite inputs, ΔL, x, ℓ > 0, final loss not below ln 2."""
    values = [o.get(k) for k in (mn.RANK, mn.TARGET_TOKENS, mn.DELTA_LOSS, mn.LOSS_FINAL)]
    if not all(_finite(v) for v in values):
        return False
    x, ell, dl, lf = (float(v) for v in values)
    return x > 0 and ell > 0 and dl > 0 and lf >= LN2


def jacobian_rows(theta: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(m, 4) rows j = ∂ρ/∂θ at points (m, 2) of (r, ℓ), with ΔL replaced by its prediction f̂."""
    ln_r, ln_ell = np.log(points[:, 0]), np.log(points[:, 1])
    power = np.exp(theta[0] + theta[1] * ln_r - theta[2] * ln_ell)
    f = power + theta[3]
    return np.column_stack([power, power * ln_r, -power * ln_ell, np.ones_like(power)]) / f[:, None]


def add_point(covariance: np.ndarray, j: np.ndarray, s2: float) -> np.ndarray:
    """Σ' = Σ − Σ j jᵀ Σ / (s² + jᵀ Σ j): the covariance once a run at row j is added."""
    sj = covariance @ j
    denominator = s2 + float(j @ sj)
    if not denominator > 0:
        return covariance
    return covariance - np.outer(sj, sj) / denominator


def variance_reduction(covariance: np.ndarray, rows: np.ndarray, s2: float) -> np.ndarray:
    """(m,) drop of var(α) + var(β) from adding each row of rows (m, 4) on its own."""
    sj = rows @ covariance  # Σ symmetric: row i is (Σ j_i)ᵀ
    denominator = s2 + np.einsum("ij,ij->i", rows, sj)
    gain = sj[:, 1] ** 2 + sj[:, 2] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, gain / denominator, 0.0)


@dataclass(frozen=True)
class Scores:
    """The acquisition over every candidate, for choosing and for reports."""

    points: tuple[Point, ...]
    predicted: np.ndarray
    """(k,) f̂, the predicted ΔL (nats)."""
    score: np.ndarray
    """(k,) drop of var(α) + var(β), per second of c when costs are given; NaN where not admissible."""
    reason: tuple[str, ...]
    """Per candidate: "ok", "tried", "saturated" (L₀ − f̂ < ln 2) or "hopeless" (f̂ < share · L₀)."""
    gain: np.ndarray | None = None
    """(k,) the drop of var(α) + var(β) itself (NaN where not admissible)."""

    def best(self) -> int | None:
        admissible = np.flatnonzero(np.isfinite(self.score))
        if admissible.size == 0:
            return None
        top = self.score[admissible].max()
        return int(next(i for i in admissible if self.score[i] >= top - _TIE_RTOL * abs(top)))


def score_candidates(
    fit: LawFit, s2: float, candidates: Candidates, untried: np.ndarray, running: Sequence[Point],
    loss_init: float | None, hopeless_share: float, costs: np.ndarray | None = None,
) -> Scores:
    """Score untried candidates (mask (k,)) with Σ updated for the running points; the gain per unit of
    costs (k,) when given; see the module docstring."""
    theta = theta_of(fit)
    covariance = np.array(fit.covariance, dtype=float)
    for point in sorted(running, key=point_key):
        covariance = add_point(covariance, jacobian_rows(theta, np.array([point_key(point)]))[0], s2)
    points = np.array([point_key(p) for p in candidates.points])
    predicted = np.asarray(fit.predict(points[:, 0], points[:, 1]), dtype=float)
    reason = np.where(untried, "ok", "tried").astype(object)
    if loss_init is not None:
        reason[untried & (loss_init - predicted < LN2)] = "saturated"
        reason[untried & (predicted < hopeless_share * loss_init)] = "hopeless"
    reason[untried & ~(predicted > 0)] = "hopeless"
    ok = reason == "ok"
    gain = np.full(len(points), np.nan)
    if ok.any():
        gain[ok] = variance_reduction(covariance, jacobian_rows(theta, points[ok]), s2)
    score = gain if costs is None else gain / np.asarray(costs, dtype=float)
    return Scores(candidates.points, predicted, score, tuple(reason), gain)


# -- decisions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    action: str
    """"propose", "wait" (results are needed first) or "finish"."""
    point: Point | None = None
    phase: str | None = None
    """For proposals: "initial", "adaptive" or "space_filling"."""
    reason: str | None = None
    """For "finish": one of STOP_REASONS; for "wait": why."""
    score: float | None = None


class AdaptiveDesign:
    """The policy: the initial design, the acquisition and the stopping rule over fixed candidates."""

    def __init__(self, candidates: Candidates, settings: Settings | None = None, cost: CostModel | None = None):
        self.candidates = candidates
        self.settings = settings or Settings()
        self.budget = self.settings.max_trials or len(candidates.points)
        self.initial = initial_design(candidates, self.settings.initial_points, self.settings.seed)
        self.prior = cost or UniformCost()
        """The cost before any trial has measured one (trial_cost.py); UniformCost counts trials."""
        self._fit_cache: tuple[tuple[str, ...], LawFit] | None = None
        self._cost_cache: tuple[tuple[str, ...], CostModel, np.ndarray] | None = None

    # -- the fit ---------------------------------------------------------------------------------
    def fit(self, state: AdaptiveState) -> LawFit:
        """The fit to the state's observations (cached on their trial ids)."""
        key = tuple(sorted(state.observations))
        if self._fit_cache is None or self._fit_cache[0] != key:
            self._fit_cache = (key, fit_observations(state.observations.values()))
        return self._fit_cache[1]

    # -- the cost --------------------------------------------------------------------------------
    def cost_model(self, state: AdaptiveState) -> tuple[CostModel, np.ndarray]:
        """The prior corrected by the finished trials' wall_s, and its (k,) seconds per candidate."""
        key = tuple(sorted(state.observations))
        if self._cost_cache is None or self._cost_cache[0] != key:
            obs = list(state.observations.values())
            model = with_measurements(self.prior, [o["point"] for o in obs], [o.get(mn.WALL_S) for o in obs])
            self._cost_cache = (key, model, np.asarray(model.seconds([point_key(p) for p in self.candidates.points]),
                                                       dtype=float))
        return self._cost_cache[1], self._cost_cache[2]

    def spent(self, state: AdaptiveState) -> float:
        """Seconds of every proposal so far: measured where a trial reported wall_s, else predicted."""
        model, _ = self.cost_model(state)
        measured = [o.get(mn.WALL_S) for o in state.observations.values()]
        guessed = [o["point"] for o, m in zip(state.observations.values(), measured) if m is None or m <= 0]
        guessed += [*state.pending.values(), *state.failures]
        known = sum(m for m in measured if m is not None and m > 0)
        return float(known + (model.seconds([point_key(p) for p in guessed]).sum() if guessed else 0.0))

    @staticmethod
    def loss_init(state: AdaptiveState) -> float | None:
        values = [o[mn.LOSS_INIT] for o in state.observations.values() if o.get(mn.LOSS_INIT) is not None]
        return float(np.mean(values)) if values else None

    # -- the next step ---------------------------------------------------------------------------
    def next(self, state: AdaptiveState, max_pending: int | None = None) -> Decision:
        """What to do now. Never proposes a point that ran, runs, or failed MAX_TRIES times."""
        if state.finished is not None:
            return Decision("finish", reason=state.finished)
        if state.n_proposed >= self.budget:
            return Decision("finish", reason="budget")
        if max_pending is not None and len(state.pending) >= max_pending:
            return Decision("wait", reason="concurrency limit")
        _, costs = self.cost_model(state)
        spent = self.spent(state)
        untried = self._untried(state)
        if self.settings.cost_budget > 0:  # a candidate that would take the spend past the budget is out
            untried &= spent + costs <= self.settings.cost_budget * (1 + 1e-12)
        for point in self.initial:
            index = self.candidates.index(point)
            if untried[index]:
                return Decision("propose", point, "initial")
        initial_keys = {point_key(p) for p in self.initial}
        if any(point_key(p) in initial_keys for p in state.pending.values()):
            return Decision("wait", reason="the initial design has not all come back")
        fit = self.fit(state)
        if fit.status == "ok" and fit.covariance is not None:
            status = self.stopping_status(fit, state.n_proposed, cost_spent=spent)
            if status["fired"] and state.pending:  # let the running trials confirm it: the final fit has them
                return Decision("wait", reason=f"{status['reason']} met; waiting for running trials")
            if status["fired"]:
                return Decision("finish", reason=status["reason"])
            scores = score_candidates(fit, residual_variance(fit, state.observations.values()), self.candidates,
                                      untried, list(state.pending.values()), self.loss_init(state),
                                      self.settings.hopeless_share, costs if self.settings.cost_aware else None)
            best = scores.best()
            if best is not None:
                return Decision("propose", self.candidates.points[best], "adaptive", score=float(scores.score[best]))
        else:
            best = self._space_filling(state, untried)
            if best is not None:
                return Decision("propose", self.candidates.points[best], "space_filling")
        if state.pending:
            return Decision("wait", reason="no admissible candidate until running trials report")
        over = self.settings.cost_budget > 0 and bool((self._untried(state) & ~untried).any())
        return Decision("finish", reason="cost_budget" if over else "no_candidates")

    def _untried(self, state: AdaptiveState) -> np.ndarray:
        """(k,) True where a candidate has no result, is not running and may still be tried."""
        out = np.ones(len(self.candidates.points), dtype=bool)
        for point in [*state.observed_points(), *state.pending.values()]:
            index = self.candidates.index(point)
            if index is not None:
                out[index] = False
        for point in state.failures:
            index = self.candidates.index(point)
            if index is not None and state.tries(point) >= MAX_TRIES:
                out[index] = False
        return out

    def _space_filling(self, state: AdaptiveState, untried: np.ndarray) -> int | None:
        """The untried candidate farthest from every tried point, skipping dominated-saturated ones."""
        coords = self.candidates.coords
        saturated = [point_key(o["point"]) for o in state.observations.values()
                     if o.get(mn.LOSS_FINAL) is not None and o[mn.LOSS_FINAL] < LN2]
        pool = [i for i in np.flatnonzero(untried)
                if not any(point_key(self.candidates.points[i])[0] >= r and point_key(self.candidates.points[i])[1] <= ell
                           for r, ell in saturated)]
        if not pool:
            return None
        tried = [self.candidates.index(p) for p in [*state.observed_points(), *state.pending.values(),
                                                     *state.failures]]
        tried = [i for i in tried if i is not None]
        if not tried:
            return int(pool[0])
        gap = np.sqrt(((coords[pool][:, None, :] - coords[tried][None, :, :]) ** 2).sum(-1)).min(axis=1)
        return int(pool[int(np.flatnonzero(gap >= gap.max() - 1e-12)[0])])

    # -- stopping --------------------------------------------------------------------------------
    def stopping_status(self, fit: LawFit, n_done: int, admissible: int | None = None,
                        cost_spent: float | None = None) -> dict[str, Any]:
        """Whether the stopping rule fires after n_done proposals, why, and how far each width is.

        Keys: fired (bool), reason (one of STOP_REASONS or None), fit_status, n_done, max_trials,
        alpha_width, beta_width (95 % interval widths, None without intervals), alpha_tol, beta_tol,
        alpha_excess, beta_excess (width − tolerance: ≤ 0 means met), alpha_ratio, beta_ratio
        (width / tolerance), exponents_at_bound (α or β on a solver bound: the widths then do not count).
        `admissible`, when given, is the number of candidates still worth a trial (0 fires no_candidates).
        cost_spent, cost_budget: seconds spent (when given) and the budget (0: none); cost_budget fires once
        the spend has reached it.
        """
        s = self.settings
        widths = {name: _width(getattr(fit, f"{name}_ci")) if fit.status == "ok" else None
                  for name in ("alpha", "beta")}
        at_bound = [p for p in ("alpha", "beta") if p in (fit.at_bound or ())]
        out: dict[str, Any] = {"fit_status": fit.status, "n_done": int(n_done), "max_trials": self.budget,
                               "exponents_at_bound": at_bound, "dof": fit.dof, "min_dof": s.min_dof,
                               "cost_spent": cost_spent, "cost_budget": s.cost_budget}
        met = not at_bound and (fit.dof or 0) >= s.min_dof
        for name, tol in (("alpha", s.alpha_tol), ("beta", s.beta_tol)):
            width = widths[name]
            out[f"{name}_width"], out[f"{name}_tol"] = width, tol
            out[f"{name}_excess"] = None if width is None else width - tol
            out[f"{name}_ratio"] = None if width is None else width / tol
            met = met and width is not None and width <= tol
        over = s.cost_budget > 0 and cost_spent is not None and cost_spent >= s.cost_budget
        reason = "tolerance" if met else "budget" if n_done >= self.budget else "cost_budget" if over else (
            "no_candidates" if admissible == 0 else None)
        out["fired"], out["reason"] = reason is not None, reason
        return out


def _width(interval: Sequence[float] | None) -> float | None:
    if interval is None:
        return None
    width = float(interval[1]) - float(interval[0])
    return width if math.isfinite(width) else None
