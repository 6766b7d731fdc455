"""A simulated paper-size law sweep: an oracle that answers each (r, ℓ) from a known law, and drivers
that run the adaptive design or a fixed order against it. Pure (numpy, scipy through the fit): no
Ray, no torch.

Why: no GPU has run a memlaw trial, and a law-guided design only pays on a grid as large as the
paper's (16 ranks × 13 lengths = 208 trials), where measuring it for real would cost tens of GPU-hours
per try. An oracle whose law, noise, saturation and cost are stated lets the tests and
bench/adaptive_vs_grid.py measure what the adaptive design saves against the grid, seed by seed,
and check that its intervals still cover the exponents it was built to find.

What it simulates (PAPER_LAW and Oracle's defaults; docs/science.md §5 and docs/paper_scale.md):
  the law     ΔL = C·r^α·ℓ^(−β) + b with the paper's exponents as read from its Qwen3-8B figure,
              α = 0.78, β = 0.62 (docs/science.md §5: 0.75–0.8 and 0.6–0.65, not published as
              numbers); b = 0.1 nats and L_init = 13.0 nats (chance is ln 151,936 = 11.93; the
              paper's 8B models start above it, §6) are this module's choices, and C puts the capacity
              edge L_init − f = ln 2 through the geometric centre of the paper's grid (r = √512 ≈ 22.6,
              ℓ = √(50 · 10,000) ≈ 707), so the edge crosses the grid from (4, 50) to (256, 10,000)
              and 73 of its 208 cells are saturated without noise
  noise       multiplicative: ΔL_obs = f · exp(σ·z), z standard normal, drawn from (seed, r, ℓ) alone, so
              a cell answers the same whatever order asks it, and two noise levels share their z
  saturation  L_final = L_init − ΔL_obs, floored at 0.01 nats (a loss is never below 0); a run whose
              L_final < ln 2 is saturated and the fit leaves it out (grouping.py's left_out, fit.py's cut)
  cost        trial_cost.FlopCost for Qwen3-8B on an H100 at the paper's budget (2000 steps, the
              certificate every 200, prefix cache on): bench/paper_cost.py's step times, reported as the
              trial's wall_s; the rank does not move it
Not simulated: failures, convergence (every trial has settled), a saturated run's exact loss, and the
difference between derived and measured step times.

Notation (k candidates)
  θ*        (C, α, β, b) of the true law; L₀ its L_init (nats per target token)
  σ         noise level: sd of ln ΔL_obs (0.03 and 0.10 in the benchmark: "3 %" and "10 %")
  z         standard normal, one per (seed, r, ℓ)
  c(ℓ)      seconds of a trial at ℓ (trial_cost's T(ℓ)); GPU-hours = Σ c / 3600 over the trials run
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.law import adaptive_design as ad
from orchestrator.law.design_points import Point, point_key
from orchestrator.law.fit import LN2, LawFit
from orchestrator.law.trial_cost import QWEN3_8B, CostModel, FlopCost
from search_spaces.law_grid import PAPER_FULL_LENGTHS, PAPER_FULL_RANKS
from trainables import metric_names as mn

#: A saturated run's loss is floored here: below ln 2 but never negative.
LOSS_FLOOR = 0.01


@dataclass(frozen=True)
class TrueLaw:
    """The law an oracle answers from, with the base's starting loss."""

    C: float
    alpha: float
    beta: float
    b: float
    loss_init: float

    def delta(self, r: Any, ell: Any) -> np.ndarray:
        """f(r, ℓ) = C·r^α·ℓ^(−β) + b, nats per target token."""
        return self.C * np.asarray(r, dtype=float) ** self.alpha * np.asarray(ell, dtype=float) ** -self.beta + self.b

    def edge_length(self, r: float) -> float:
        """ℓ at which f(r, ℓ) = L₀ − ln 2 (the capacity edge); shorter targets saturate."""
        return float((self.C * r**self.alpha / (self.loss_init - LN2 - self.b)) ** (1 / self.beta))


def centred_law(alpha: float, beta: float, b: float, loss_init: float, ranks: Sequence[float],
                lengths: Sequence[float]) -> TrueLaw:
    """The law with C chosen so the capacity edge passes through the grid's geometric centre."""
    r_c = math.exp((math.log(min(ranks)) + math.log(max(ranks))) / 2)
    ell_c = math.exp((math.log(min(lengths)) + math.log(max(lengths))) / 2)
    C = (loss_init - LN2 - b) / (r_c**alpha * ell_c**-beta)
    return TrueLaw(C, alpha, beta, b, loss_init)


PAPER_LAW = centred_law(0.78, 0.62, 0.1, 13.0, PAPER_FULL_RANKS, PAPER_FULL_LENGTHS)
NOISE_LEVELS = (0.03, 0.10)


@dataclass(frozen=True)
class Oracle:
    """A finished trial's final metrics at any (r, ℓ): deterministic per (seed, r, ℓ)."""

    law: TrueLaw = PAPER_LAW
    noise: float = 0.03
    seed: int = 0
    cost: CostModel = field(default_factory=lambda: FlopCost(QWEN3_8B))

    def __post_init__(self) -> None:
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def z(self, point: Point) -> float:
        r, ell = point_key(point)
        return float(np.random.default_rng([self.seed, round(r * 1000), round(ell * 1000)]).standard_normal())

    def answer(self, point: Point) -> dict[str, float]:
        """RANK, TARGET_TOKENS, DELTA_LOSS, LOSS_FINAL, LOSS_INIT and WALL_S (the cost model's seconds)."""
        r, ell = point_key(point)
        observed = float(self.law.delta(r, ell)) * math.exp(self.noise * self.z(point))
        final = max(self.law.loss_init - observed, LOSS_FLOOR)
        return {mn.RANK: r, mn.TARGET_TOKENS: ell, mn.DELTA_LOSS: self.law.loss_init - final, mn.LOSS_FINAL: final,
                mn.LOSS_INIT: self.law.loss_init, mn.WALL_S: float(self.seconds([point])[0])}

    def seconds(self, points: Iterable[Point]) -> np.ndarray:
        return np.asarray(self.cost.seconds(np.array([point_key(p) for p in points])), dtype=float)

    def observation(self, point: Point) -> dict[str, Any]:
        """The answer as adaptive_design's observation dict."""
        result = self.answer(point)
        return {"point": list(point), **{k: result.get(k) for k in ad.OBSERVATION_KEYS}}


# -- runs against the oracle ---------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedRun:
    """What one design or order did: its points in order, why it stopped, its last fit and its cost."""

    points: tuple[Point, ...]
    stopped: str
    """"tolerance" when the rule fired, else what ended it (budget, cost_budget, no_candidates, exhausted)."""
    fit: LawFit
    seconds: float

    @property
    def trials(self) -> int:
        return len(self.points)

    @property
    def gpu_hours(self) -> float:
        return self.seconds / 3600.0

    @property
    def reached(self) -> bool:
        return self.stopped == "tolerance"

    def covers(self, law: TrueLaw) -> tuple[bool, bool]:
        """Whether the final 95 % intervals of α and β contain the true exponents."""
        return tuple(self.fit.status == "ok" and getattr(self.fit, f"{p}_ci") is not None
                     and getattr(self.fit, f"{p}_ci")[0] <= getattr(law, p) <= getattr(self.fit, f"{p}_ci")[1]
                     for p in ("alpha", "beta"))


def run_design(design: ad.AdaptiveDesign, oracle: Oracle, concurrent: int = 1, max_steps: int = 100_000
               ) -> SimulatedRun:
    """Drive the design as Tune would: propose until it waits or finishes, then complete the oldest."""
    state = ad.AdaptiveState()
    running: list[tuple[str, Point]] = []
    proposed: list[Point] = []
    for _ in range(max_steps):
        decision = design.next(state, max_pending=concurrent)
        if decision.action == "finish":
            state.finished = state.finished or decision.reason
            if not running:
                break
        elif decision.action == "propose":
            trial_id = f"t{len(proposed):05d}"
            state.propose(trial_id, decision.point)
            running.append((trial_id, decision.point))
            proposed.append(decision.point)
            continue
        if not running:
            break
        trial_id, point = running.pop(0)
        state.complete(trial_id, oracle.answer(point))
    else:
        raise RuntimeError("the design never finished")
    return SimulatedRun(tuple(proposed), state.finished or "no_candidates", design.fit(state),
                        float(oracle.seconds(proposed).sum()) if proposed else 0.0)


def run_order(design: ad.AdaptiveDesign, oracle: Oracle, order: Sequence[Point]) -> SimulatedRun:
    """A fixed order of points (the grid's, a random one) under the design's stopping rule: the run
    stops at the first prefix whose fit meets the tolerances, else runs every point."""
    observations: list[dict[str, Any]] = []
    fit = ad.fit_observations([])
    for n, point in enumerate(order, start=1):
        observations.append(oracle.observation(point))
        fit = ad.fit_observations(observations)
        if fit.status == "ok" and design.stopping_status(fit, n)["reason"] == "tolerance":
            return SimulatedRun(tuple(order[:n]), "tolerance", fit, float(oracle.seconds(order[:n]).sum()))
    return SimulatedRun(tuple(order), "exhausted", fit, float(oracle.seconds(order).sum()) if order else 0.0)


def grid_fit(oracle: Oracle, points: Sequence[Point]) -> LawFit:
    """The full grid's fit (the design's own fit: covariance intervals, in the rank)."""
    return ad.fit_observations([oracle.observation(p) for p in points])
