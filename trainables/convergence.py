"""Whether ΔL had settled when the budget ran out: ΔL at half the budget, and the ratio to it.

The law is about the ΔL an adapter reaches, not the ΔL it passes through. A cell read while its loss
is still falling gives a ΔL set by the budget; low ranks and long targets are the slowest, so a fit on
such cells bends α and β toward the budget, not toward memory. Every trial therefore carries the
figure that says so, and the law counts the cells that were still rising (orchestrator/law/grouping.py).

Notation (docs/science.md §5)
    T           budget steps (budget.steps)
    h           the step of the last evaluation at or before T/2 (None when there was none)
    ΔL(s)       L_init − L_final at the evaluation of step s (nats per target token)
    ratio       ΔL(T) / ΔL(h): 1 when nothing moved in the second half; None when h is None or
                ΔL(h) ≤ 0 (a loss that has not fallen gives no ratio)
    RISING      ratio > RISING_RATIO (1.05): ΔL grew by more than 5 % over the second half of the
                budget; the trial's ΔL is "ΔL at T steps", not a plateau
    ladder      ΔL at budgets T_1 < T_2 < ... of one cell; recommend_budget returns the smallest T_i
                with ΔL(T_{i+1}) / ΔL(T_i) ≤ RISING_RATIO (the budget that the next rung no longer moves)

Pure Python: the training loop observes each evaluation and keeps the track in its checkpoints, so a
resumed trial reports what an uninterrupted one does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainables import metric_names as K

#: A ratio above this says ΔL was still rising when the budget ran out.
RISING_RATIO = 1.05


@dataclass
class ConvergenceTrack:
    """ΔL at the last evaluation at or before half the budget."""

    half_step: int | None = None
    half_delta: float | None = None

    def observe(self, step: int, delta: float, budget_steps: int) -> dict[str, Any]:
        """Note an evaluation; return its convergence metrics (ratio of this ΔL to the half-budget one)."""
        if 2 * step <= budget_steps:
            self.half_step, self.half_delta = step, delta
        return {K.DELTA_LOSS_HALF: self.half_delta, K.DELTA_LOSS_HALF_STEP: self.half_step,
                K.CONVERGENCE_RATIO: ratio(delta, self.half_delta)}

    def to_dict(self) -> dict[str, Any]:
        return {"half_step": self.half_step, "half_delta": self.half_delta}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ConvergenceTrack:
        """A checkpoint written before the track existed has none: the ratio stays unknown."""
        return cls(**d) if d else cls()


def ratio(final: float | None, half: float | None) -> float | None:
    """ΔL(T) / ΔL(h); None without a positive, finite ΔL(h)."""
    if final is None or half is None or not (math.isfinite(final) and math.isfinite(half)) or half <= 0:
        return None
    return final / half


def still_rising(value: float | None) -> bool | None:
    """True when the ratio exceeds RISING_RATIO; None when it is unknown."""
    return None if value is None else value > RISING_RATIO


def recommend_budget(ladder: Mapping[int, float]) -> int | None:
    """The smallest budget T whose next rung moves ΔL by at most RISING_RATIO; None if none settles."""
    steps = sorted(ladder)
    for low, high in zip(steps, steps[1:]):
        step_ratio = ratio(ladder[high], ladder[low])
        if step_ratio is not None and step_ratio <= RISING_RATIO:
            return low
    return None
