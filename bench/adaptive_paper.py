"""The paper-size half of bench/adaptive_vs_grid.py: the adaptive design against the full grid on the
simulated sweep of orchestrator/law/paper_oracle.py, over many oracle seeds, in GPU-hours.

Per grid, noise level σ and seed s (Oracle(noise=σ, seed=s): every arm sees the same measurement
at a cell):
  1. fit the full grid: its α and β 95 % interval widths are the target, its intervals' coverage of
     the true exponents the reference;
  2. for each tolerance factor k (1.25 and 1): the stopping rule "α and β widths ≤ k × the grid's"
     (and the design's own min_dof), run by
       adaptive          the cost-aware design (information per GPU-second), one trial at a time
       adaptive, blind   the same design scoring information per trial (the design before costs)
       adaptive x16      the cost-aware design with 16 trials at once (the examples' max_concurrency)
       random order      a seeded permutation of the grid, stopped by the same rule
     and record the trials, the GPU-hours (trial_cost's derived H100 times), whether the rule was
     reached and whether the final intervals cover the true α and β;
  3. summarise each arm by the distribution over seeds (quantiles), not one number.
For scale, per grid and k, what the same greedy (gain per GPU-second, from the same initial design)
costs when it knows the true law and the noise: no estimated s², so no luck in when it stops. The
design cannot expect to beat it by much; it is a reference, not a bound (greedy is not optimal).

This module only computes and prints; adaptive_vs_grid.py owns the command line and the JSON line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import special

from orchestrator.law import adaptive_design as ad
from orchestrator.law import design_points
from orchestrator.law import paper_oracle as po
from orchestrator.law.fit import LN2
from orchestrator.law.trial_cost import LLAMA31_8B, QWEN3_8B, FlopCost
from search_spaces.law_grid import PAPER_FULL_LENGTHS, PAPER_FULL_RANKS, PAPER_LENGTHS, PAPER_RANKS

TOLERANCE_FACTORS = (1.25, 1.0)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
CONCURRENT = 16  # examples/paper_*.yaml max_concurrency
GOAL_RATIO = 0.25
HEADLINE_GRID, HEADLINE_K, HEADLINE_ARM = "paper", 1.25, "adaptive"


ARMS = ("adaptive", "adaptive, blind", f"adaptive x{CONCURRENT}", "random order")


@dataclass(frozen=True)
class Grid:
    key: str
    label: str
    ranks: tuple[int, ...]
    lengths: tuple[int, ...]
    cost: FlopCost
    arms: tuple[str, ...] = ARMS
    """The example sweeps run the cost-aware design alone, one and 16 at once: docs/paper_scale.md needs
    its expected cost, and the comparisons between arms are the paper grid's."""


GRIDS = (
    Grid("paper", "the paper's grid 16x13, Qwen3-8B (search_spaces law_grid_paper_full)", PAPER_FULL_RANKS,
         PAPER_FULL_LENGTHS, FlopCost(QWEN3_8B)),
    Grid("qwen_example", "examples/paper_qwen3_8b.yaml 10x8, Qwen3-8B (law_grid_paper)", PAPER_RANKS, PAPER_LENGTHS,
         FlopCost(QWEN3_8B), ("adaptive", f"adaptive x{CONCURRENT}")),
    Grid("llama_example", "examples/paper_llama31_8b.yaml 10x8, Llama-3.1-8B (law_grid_paper)", PAPER_RANKS,
         PAPER_LENGTHS, FlopCost(LLAMA31_8B), ("adaptive", f"adaptive x{CONCURRENT}")),
)


def run_seed(grid: Grid, noise: float, seed: int, initial_points: int) -> dict:
    """Every arm at every k on one oracle seed: {"grid": {...}, (k, arm): {...}}."""
    oracle = po.Oracle(noise=noise, seed=seed, cost=grid.cost)
    candidates = design_points.candidates_from_values(grid.ranks, grid.lengths)
    points = list(candidates.points)
    full = po.SimulatedRun(tuple(points), "grid", po.grid_fit(oracle, points), float(oracle.seconds(points).sum()))
    out = {"grid": _row(full, full, oracle)}
    if full.fit.status != "ok" or full.fit.alpha_ci is None:
        return out
    widths = (full.fit.alpha_ci[1] - full.fit.alpha_ci[0], full.fit.beta_ci[1] - full.fit.beta_ci[0])
    out["widths"] = widths
    order = [points[i] for i in np.random.default_rng([seed, 7919]).permutation(len(points))]
    for k in TOLERANCE_FACTORS:
        settings = ad.Settings(alpha_tol=k * widths[0], beta_tol=k * widths[1], initial_points=initial_points)
        blind = dataclasses.replace(settings, cost_aware=False)
        runs = {"adaptive": lambda: po.run_design(ad.AdaptiveDesign(candidates, settings, grid.cost), oracle),
                "adaptive, blind": lambda: po.run_design(ad.AdaptiveDesign(candidates, blind, grid.cost), oracle),
                f"adaptive x{CONCURRENT}": lambda: po.run_design(ad.AdaptiveDesign(candidates, settings, grid.cost),
                                                                 oracle, concurrent=CONCURRENT),
                "random order": lambda: po.run_order(ad.AdaptiveDesign(candidates, settings), oracle, order)}
        for arm in grid.arms:
            out[(k, arm)] = _row(runs[arm](), full, oracle)
    return out


def informed_greedy(grid: Grid, k: float, initial_points: int) -> dict:
    """The greedy per GPU-second on the true law's Jacobian with σ known, from the design's initial points,
    until its predicted widths (t quantile at its dof, as the fit's) are at most k × the full grid's. σ
    cancels from the comparison, so one run per grid and k serves every noise level."""
    law, candidates = po.PAPER_LAW, design_points.candidates_from_values(grid.ranks, grid.lengths)
    points = np.array([design_points.point_key(p) for p in candidates.points])
    useful = law.loss_init - law.delta(points[:, 0], points[:, 1]) >= LN2
    rows = ad.jacobian_rows(np.array([np.log(law.C), law.alpha, law.beta, law.b]), points)
    cost = np.asarray(grid.cost.seconds(points), dtype=float)

    def widths(chosen: list[int]) -> np.ndarray:
        used = [i for i in chosen if useful[i]]
        gram = rows[used].T @ rows[used]
        return 2 * special.stdtrit(len(used) - 4, 0.975) * np.sqrt(np.diag(np.linalg.inv(gram)))[1:3]

    target = k * widths(list(np.flatnonzero(useful)))
    chosen = [candidates.index(p) for p in design_points.initial_design(candidates, initial_points)]
    while sum(useful[chosen]) < 8 or np.any(widths(chosen) > target):
        gram = sum((np.outer(rows[i], rows[i]) for i in chosen if useful[i]), np.zeros((4, 4))) + 1e-9 * np.eye(4)
        before = np.trace(np.linalg.inv(gram)[1:3, 1:3])
        left = [i for i in np.flatnonzero(useful) if i not in chosen]
        if not left:
            break
        gains = [(before - np.trace(np.linalg.inv(gram + np.outer(rows[i], rows[i]))[1:3, 1:3])) / cost[i] for i in left]
        chosen.append(left[int(np.argmax(gains))])
    return {"trials": len(chosen), "ratio": float(cost[chosen].sum() / cost.sum()),
            "unsaturated_cost_share": float(cost[useful].sum() / cost.sum())}


def _row(run: po.SimulatedRun, full: po.SimulatedRun, oracle: po.Oracle) -> dict:
    alpha, beta = run.covers(oracle.law)
    return {"trials": run.trials, "gpu_h": run.gpu_hours, "ratio": run.seconds / full.seconds,
            "trial_ratio": run.trials / full.trials, "reached": run.reached, "alpha": alpha, "beta": beta,
            "saturated": run.fit.n_excluded}


def quantiles(values: list[float]) -> list[float]:
    return [float(v) for v in np.quantile(np.array(values, dtype=float), QUANTILES)] if values else []


def summarise(rows: list[dict], grid_rows: list[dict]) -> dict:
    """One arm over seeds: quantiles of the GPU-hour and trial ratios, reached and coverage counts."""
    n = len(rows)
    return {"seeds": n, "reached": sum(r["reached"] for r in rows),
            "gpu_h_ratio_q": quantiles([r["ratio"] for r in rows]),
            "gpu_h_q": quantiles([r["gpu_h"] for r in rows]),
            "trials_q": quantiles([r["trials"] for r in rows]),
            "covers_alpha": sum(r["alpha"] for r in rows), "covers_beta": sum(r["beta"] for r in rows),
            "covers_both": sum(r["alpha"] and r["beta"] for r in rows),
            "grid_covers_alpha": sum(r["alpha"] for r in grid_rows), "grid_covers_beta": sum(r["beta"] for r in grid_rows),
            "grid_covers_both": sum(r["alpha"] and r["beta"] for r in grid_rows)}


def run_grid(grid: Grid, noise: float, seeds: int, initial_points: int) -> dict:
    """Every seed on one grid and noise level, printed as it goes; returns the summary per (k, arm)."""
    per_seed = [run_seed(grid, noise, s, initial_points) for s in range(seeds)]
    grid_rows = [r["grid"] for r in per_seed]
    fitted = [r for r in per_seed if "widths" in r]
    summary = {"grid": {"trials": grid_rows[0]["trials"], "gpu_h": grid_rows[0]["gpu_h"], "seeds": seeds,
                        "fitted_seeds": len(fitted), "covers_alpha": sum(r["alpha"] for r in grid_rows),
                        "covers_beta": sum(r["beta"] for r in grid_rows),
                        "saturated_q": quantiles([r["saturated"] for r in grid_rows]),
                        "alpha_width_q": quantiles([r["widths"][0] for r in fitted]),
                        "beta_width_q": quantiles([r["widths"][1] for r in fitted])}, "arms": list(grid.arms),
               "informed": {f"{k:g}": informed_greedy(grid, k, initial_points) for k in TOLERANCE_FACTORS}}
    for k in TOLERANCE_FACTORS:
        for arm in grid.arms:
            summary[f"{k:g}|{arm}"] = summarise([r[(k, arm)] for r in fitted], [r["grid"] for r in fitted])
    print_grid(grid, noise, summary)
    return summary


def print_grid(grid: Grid, noise: float, summary: dict) -> None:
    g = summary["grid"]
    print(f"\n{grid.label}, noise {noise:.0%}: grid {g['trials']} trials, {g['gpu_h']:.2f} GPU-h (derived, H100); "
          f"saturated cells per seed (median) {g['saturated_q'][2]:.0f}; grid's interval widths (median) alpha "
          f"{g['alpha_width_q'][2]:.4f}, beta {g['beta_width_q'][2]:.4f}, covering alpha "
          f"{g['covers_alpha']}/{g['seeds']}, beta {g['covers_beta']}/{g['seeds']}")
    print("  knowing the law and the noise, the same greedy needs " + "; ".join(
        f"at k = {k}: {v['trials']} trials, {v['ratio']:.3f}x the grid's GPU-h" for k, v in summary["informed"].items()))
    qs = " ".join(f"q{int(q * 100):02d}" for q in QUANTILES)
    print(f"  {'k':>4} {'arm':<17} {'reached':>8}  GPU-h / grid ({qs})      trials ({qs})   "
          f"covers a / b / both (grid's)")
    for k in TOLERANCE_FACTORS:
        for arm in summary["arms"]:
            s = summary[f"{k:g}|{arm}"]
            ratio = " ".join(f"{v:.2f}" for v in s["gpu_h_ratio_q"])
            trials = " ".join(f"{v:3.0f}" for v in s["trials_q"])
            print(f"  {k:>4.2f} {arm:<17} {s['reached']:>3}/{s['seeds']:<4}  {ratio}   {trials}   "
                  f"{s['covers_alpha']}/{s['covers_beta']}/{s['covers_both']} of {s['seeds']} "
                  f"({s['grid_covers_alpha']}/{s['grid_covers_beta']}/{s['grid_covers_both']})")


def run_all(seeds: int, noises: tuple[float, ...], initial_points: int, grids: tuple[str, ...]) -> dict:
    """Every grid and noise level; returns {grid key: {noise: summary}} and prints as it goes."""
    law = po.PAPER_LAW
    print(f"paper-size oracle (orchestrator/law/paper_oracle.py): dL = {law.C:.2f} r^{law.alpha} l^-{law.beta} "
          f"+ {law.b}, L_init {law.loss_init}, multiplicative noise {', '.join(f'{n:.0%}' for n in noises)}, "
          f"{seeds} seeds; trial cost: FLOP-derived H100 times (bench/paper_cost.py), 2000 steps, prefix cache on; "
          f"{initial_points} initial points")
    return {g.key: {f"{noise:g}": run_grid(g, noise, seeds, initial_points) for noise in noises}
            for g in GRIDS if g.key in grids}


def headline(results: dict) -> dict:
    """The goal's figure: the largest median GPU-hour ratio of the cost-aware design on the paper's grid
    at 1.25x the grid's widths over the noise levels, and whether coverage is no worse than the grid's."""
    per_noise = results[HEADLINE_GRID]
    rows = {noise: summary[f"{HEADLINE_K:g}|{HEADLINE_ARM}"] for noise, summary in per_noise.items()}
    medians = {noise: s["gpu_h_ratio_q"][2] for noise, s in rows.items()}
    worst = max(medians, key=medians.get)
    coverage_ok = all(s["covers_alpha"] >= s["grid_covers_alpha"] and s["covers_beta"] >= s["grid_covers_beta"]
                      for s in rows.values())
    reached = all(s["reached"] == s["seeds"] for s in rows.values())
    informed = per_noise[worst]["informed"][f"{HEADLINE_K:g}"]
    out = {"figure": medians[worst], "noise": float(worst), "medians": medians, "coverage_ok": coverage_ok,
           "informed": informed, "all_reached": reached, "row": rows[worst], "grid": per_noise[worst]["grid"],
           "met": medians[worst] <= GOAL_RATIO and coverage_ok and reached}
    out["reason"] = None if out["met"] else _why(out, rows)
    return out


def _why(top: dict, rows: dict) -> str:
    """What kept the headline from its goal, in the run's own figures."""
    informed, parts = top["informed"], []
    if top["figure"] > GOAL_RATIO:
        parts.append(f"the median is {top['figure']:.3f}x at {top['noise']:.0%} noise. At 1.25x the grid's widths a "
                     f"design needs about 1/1.25^2 = 64 % of the grid's information, all of it in the unsaturated "
                     f"cells, which hold {informed['unsaturated_cost_share']:.0%} of the grid's GPU-hours; the same "
                     f"greedy knowing the law and the noise needs {informed['ratio']:.3f}x, and the design's median "
                     "sits there (below it on seeds whose estimated s^2 comes out small)")
    for noise, s in rows.items():
        if s["covers_alpha"] < s["grid_covers_alpha"] or s["covers_beta"] < s["grid_covers_beta"]:
            parts.append(f"at {float(noise):.0%} noise its intervals covered alpha {s['covers_alpha']}/{s['seeds']} "
                         f"and beta {s['covers_beta']}/{s['seeds']}, the grid's {s['grid_covers_alpha']} and "
                         f"{s['grid_covers_beta']}: a rule that stops at the first width under the tolerance favours a "
                         "small s^2 (optional stopping, docs/science.md section 8)")
    if not top["all_reached"]:
        parts.append("some seeds never reached the rule")
    return "; ".join(parts)
