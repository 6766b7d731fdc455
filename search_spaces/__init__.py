"""Named search spaces for sweeps: law grids (rank × length × data × model) and Optuna MemFT spaces.

A sweep file names a space (`space: law_grid_cpu`); `get(name)` returns it. Every space speaks in
dotted TrialConfig fields (`adapter.rank`, `method.mix`), so `check(space)` can validate
its values against TrialConfig before anything runs.
"""

from __future__ import annotations

from search_spaces.law_grid import GRIDS, GridSpace
from search_spaces.memft import OPTUNA_SPACES, OptunaSpace

SPACES: dict[str, GridSpace | OptunaSpace] = {**GRIDS, **OPTUNA_SPACES}


def get(name: str) -> GridSpace | OptunaSpace:
    if name not in SPACES:
        raise KeyError(f"unknown search space {name!r} (allowed: {', '.join(sorted(SPACES))})")
    return SPACES[name]
