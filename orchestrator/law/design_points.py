"""The points an adaptive sweep may run, and the space-filling design it starts with. Pure numpy.

Notation (k candidates)
  r, ℓ     LoRA rank and target tokens of a grid point (the grid's `adapter.rank` and
           `data.target_tokens` axes); every other grid axis must hold a single value
  P        candidate points (r, ℓ), shape (k, 2), sorted by (r, ℓ): the tie-break order
  u, v     (ln r − min ln r) / span, (ln ℓ − min ln ℓ) / span: log coordinates scaled to [0, 1],
           shape (k,), where distances for the space-filling design are measured

Initial design: n0 points (default 6) chosen greedily by maximin distance in (u, v), once from
every candidate as the first point; the design with the largest smallest pairwise distance wins
(then the largest mean nearest-neighbour distance, then a seeded order). While the slots left only
just suffice, a point must add a new rank or length, so the design always covers at least 2
ranks and 3 lengths and the 4-parameter fit is identifiable.

The law-guided proposals that follow the initial design are orchestrator/law/adaptive_design.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RANK_AXIS = "adapter.rank"
LENGTH_AXIS = "data.target_tokens"
#: Each axis needs this many distinct values for the law's four parameters to be identifiable.
MIN_RANKS, MIN_LENGTHS = 2, 3

Point = tuple[Any, Any]  # (rank, ℓ) as the grid spells them (ints for our grids)


# -- candidates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    """The points an adaptive sweep may run: ranks × lengths, other grid axes fixed."""

    points: tuple[Point, ...]
    """(r, ℓ) pairs sorted by (r, ℓ): the order that breaks ties."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Grid axes other than rank and length, each with its single value: part of every proposal."""

    def __post_init__(self) -> None:
        ranks = {p[0] for p in self.points}
        lengths = {p[1] for p in self.points}
        bad = [p for p in self.points if not (_positive(p[0]) and _positive(p[1]))]
        if bad:
            raise ValueError(f"ranks and lengths must be positive finite numbers, got {bad[:3]}")
        if len(ranks) < MIN_RANKS or len(lengths) < MIN_LENGTHS:
            raise ValueError(f"an adaptive sweep needs at least {MIN_RANKS} ranks and {MIN_LENGTHS} lengths to fit "
                             f"the law's 4 parameters, got ranks {sorted(ranks)} and lengths {sorted(lengths)}")
        lookup = {point_key(p): i for i, p in enumerate(self.points)}
        if len(lookup) != len(self.points):
            raise ValueError("candidate points repeat")
        object.__setattr__(self, "_lookup", lookup)  # point -> index, built once

    @property
    def coords(self) -> np.ndarray:
        """(k, 2) log coordinates (u, v) scaled to [0, 1]."""
        logs = np.log(np.array(self.points, dtype=float))
        low, span = logs.min(axis=0), np.ptp(logs, axis=0)
        return (logs - low) / np.where(span > 0, span, 1.0)

    def index(self, point: Point) -> int | None:
        """Position of a point in `points`, or None when it is not a candidate."""
        return self._lookup.get(point_key(point))

    def config(self, point: Point) -> dict[str, Any]:
        """The flat dotted trial values of a point, as a grid search would set them."""
        return {RANK_AXIS: point[0], LENGTH_AXIS: point[1], **self.fixed}


def candidates_from_values(ranks: Iterable[Any], lengths: Iterable[Any], fixed: Mapping[str, Any] | None = None
                           ) -> Candidates:
    """Every (r, ℓ) of the product ranks × lengths (duplicates dropped)."""
    points = sorted({(r, ell) for r in ranks for ell in lengths}, key=lambda p: (float(p[0]), float(p[1])))
    return Candidates(tuple(points), dict(fixed or {}))


def candidates_from_grid(grid: Any) -> Candidates:
    """The rank × length product of a GridSpace; ValueError naming what is wrong otherwise.

    Axes other than `adapter.rank` and `data.target_tokens` must hold exactly one value (that value
    is fixed in every proposal): the law fitted here has no third variable.
    """
    axes = grid.axes
    missing = [a for a in (RANK_AXIS, LENGTH_AXIS) if a not in axes]
    if missing:
        raise ValueError(f"an adaptive sweep needs grid axes {RANK_AXIS} and {LENGTH_AXIS}; missing {missing}")
    several = {k: list(v) for k, v in axes.items() if k not in (RANK_AXIS, LENGTH_AXIS) and len(v) != 1}
    if several:
        raise ValueError(f"an adaptive sweep varies only {RANK_AXIS} and {LENGTH_AXIS}; fix these axes to one "
                         f"value each: {several}")
    fixed = {k: v[0] for k, v in axes.items() if k not in (RANK_AXIS, LENGTH_AXIS)}
    return candidates_from_values(axes[RANK_AXIS], axes[LENGTH_AXIS], fixed)


def _positive(v: Any) -> bool:
    try:
        return math.isfinite(float(v)) and float(v) > 0
    except (TypeError, ValueError):
        return False


def point_key(point: Sequence[Any]) -> tuple[float, float]:
    return float(point[0]), float(point[1])


# -- the initial design --------------------------------------------------------------------------


#: initial_design's answers by (points, n0, seed): it tries every candidate as the first point, which takes
#: a second on the paper's 208-point grid, and a benchmark builds a design per seed.
_INITIAL: dict[tuple, tuple[int, ...]] = {}
_INITIAL_KEPT = 32


def initial_design(candidates: Candidates, n0: int, seed: int = 0) -> list[Point]:
    """n0 candidates (all, if fewer) spread over (u, v) by maximin; see the module docstring."""
    key = (tuple(point_key(p) for p in candidates.points), n0, seed)
    if key not in _INITIAL:
        if len(_INITIAL) >= _INITIAL_KEPT:
            _INITIAL.pop(next(iter(_INITIAL)))
        _INITIAL[key] = tuple(_initial_indices(candidates, n0, seed))
    return [candidates.points[i] for i in _INITIAL[key]]


def _initial_indices(candidates: Candidates, n0: int, seed: int) -> list[int]:
    coords, k = candidates.coords, len(candidates.points)
    n0 = min(n0, k)
    priority = np.random.default_rng(seed).permutation(k)  # rank of each index in the tie-break order
    order = np.argsort(priority)
    dist = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(axis=-1))
    best, best_key = None, None
    for start in order:
        chosen = _greedy_maximin(candidates, dist, int(start), n0, priority)
        sub = dist[np.ix_(chosen, chosen)] + np.diag(np.full(len(chosen), np.inf))
        nearest = sub.min(axis=1)
        key = (round(float(nearest.min()), 12), round(float(nearest.mean()), 12))
        if best_key is None or key > best_key:
            best, best_key = chosen, key
    return best


def _greedy_maximin(candidates: Candidates, dist: np.ndarray, start: int, n0: int, priority: np.ndarray
                    ) -> list[int]:
    chosen = [start]
    while len(chosen) < n0:
        pool = [i for i in range(len(candidates.points)) if i not in chosen]
        need = _coverage_need(candidates, chosen)
        if n0 - len(chosen) <= need:  # the slots left only just suffice: each must add coverage
            pool = [i for i in pool if _coverage_need(candidates, chosen + [i]) < need]
        gap = dist[np.ix_(pool, chosen)].min(axis=1)
        top = gap.max()
        ties = [i for i, g in zip(pool, gap) if g >= top - 1e-12]
        chosen.append(min(ties, key=lambda i: priority[i]))
    return chosen


def _coverage_need(candidates: Candidates, chosen: Sequence[int]) -> int:
    """Points still needed to reach MIN_RANKS ranks and MIN_LENGTHS lengths."""
    points = [candidates.points[i] for i in chosen]
    ranks, lengths = {point_key(p)[0] for p in points}, {point_key(p)[1] for p in points}
    return max(MIN_RANKS - len(ranks), MIN_LENGTHS - len(lengths), 0)
