"""How long a full refit of the law takes: the results actor refits on every finished trial.

Goal: under 50 ms for 10 000 records, leave-one-length-out included. Records come from a known law
(C = 2, α = 0.75, β = 0.62, b = 0.05) with 2 % multiplicative noise and arrive shuffled, as the
actor sees them. Two layouts:
  grid      7 ranks × 10 lengths, repeated seeds: what sweeps produce (the fit collapses the
            records to 70 cells, exactly);
  distinct  x drawn continuously in [1, 64], the same 10 lengths: no two records share a cell, the
            worst case for the solver.

Run from the repository root:  python bench/law_refit.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

from orchestrator import law  # noqa: E402

GOAL_MS = 50.0
TRUE = dict(C=2.0, alpha=0.75, beta=0.62, b=0.05)
RANKS = 2.0 ** np.arange(7)  # 1 .. 64
LENGTHS = 64.0 * 2.0 ** np.arange(10)  # 64 .. 32768
REPEATS = 15


def records(n: int, layout: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(x, ℓ, ΔL, final loss), shuffled; final loss 3.0 keeps every record unsaturated."""
    rng = np.random.default_rng(seed)
    if layout == "grid":
        x, ell = rng.choice(RANKS, n), rng.choice(LENGTHS, n)
    else:
        x = np.exp(rng.uniform(0.0, np.log(64.0), n))
        ell = rng.choice(LENGTHS, n)
    clean = TRUE["C"] * x ** TRUE["alpha"] * ell ** -TRUE["beta"] + TRUE["b"]
    delta = clean * np.exp(0.02 * rng.standard_normal(n))
    return x, ell, delta, np.full(n, 3.0)


def median_ms(columns: tuple[np.ndarray, ...], lolo: bool) -> tuple[float, law.LawFit]:
    times, fit = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        fit = law.fit_law(*columns, leave_one_length_out=lolo)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), fit


def main() -> None:
    print(f"law refit, median of {REPEATS} runs (goal: < {GOAL_MS:.0f} ms at 10 000 records, with LOLO)")
    header = ("layout", "records", "no LOLO ms", "LOLO ms", "alpha", "beta", "LOLO MAPE %", "goal")
    print("{:<9} {:>8} {:>11} {:>9} {:>7} {:>7} {:>12}  {}".format(*header))
    for layout in ("grid", "distinct"):
        for n in (1_000, 10_000):
            columns = records(n, layout)
            bare, _ = median_ms(columns, lolo=False)
            full, fit = median_ms(columns, lolo=True)
            verdict = ("met" if full < GOAL_MS else "MISSED") if n == 10_000 else ""
            print(f"{layout:<9} {n:>8} {bare:>11.1f} {full:>9.1f} {fit.alpha:>7.4f} {fit.beta:>7.4f} "
                  f"{fit.lolo_mape:>12.3f}  {verdict}")


if __name__ == "__main__":
    main()
