"""Capacity planning: the smallest capacity at which the law predicts ℓ tokens fully learned.

required_capacity inverts a LawFit for `memlaw plan` and docs/reproduction.md: "what rank (or how
many adapter parameters) does memorising ℓ tokens need?" Its answer is a CapacityEstimate. It
imports fit.py only (LawFit, ln 2, the interval level CONFIDENCE): the interval samples θ from the
fit's stored covariance Σ (uncertainty.py), so it needs neither the records nor a refit.

Notation (fit.py's x, ℓ, θ = (ln C, α, β, b), f(x, ℓ) = C · x^α · ℓ^(−β) + b; uncertainty.py's Σ)
  L_init   the target's initial loss (nats per target token; ≈ ln |V| for uniform random tokens)
  D        L_init − ln 2 (nats): the ΔL at which the predicted final loss L_init − f reaches ln 2
  x*       ((D − b) · ℓ^β / C)^(1/α): the capacity with f(x*, ℓ) = D, in units of x; its 95 %
           interval comes from _N_DRAWS draws θ ~ N(θ̂, Σ) (fixed seed), each solved for x*
  rank     ⌈x*⌉ when x is the rank, ⌈x* / params_per_rank⌉ when x is N_eff (params_per_rank the
           trainable parameters per unit of rank); rank_pow2 is the next power of two ≥ rank
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.law.fit import CONFIDENCE, LN2, LawFit, _plain, _tupled
from trainables import metric_names as mn

CAPACITY_STATUSES = ("ok", "no_fit", "nothing_to_learn", "unreachable", "below_offset")
_N_DRAWS = 4000  # parameter draws behind required_capacity's interval
_DRAW_SEED = 0
_CEIL_RTOL = 1e-9  # rank = ceil(x) forgives this much round-off: x = 4 + 1e-12 is rank 4


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
