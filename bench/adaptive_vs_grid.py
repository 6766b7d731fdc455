"""Adaptive law search vs the full grid: a paper-size oracle in GPU-hours, and a replay of real measurements.

Row 1, the paper-size oracle (bench/adaptive_paper.py on orchestrator/law/paper_oracle.py): the
paper's own grid (16 ranks x 13 lengths = 208 trials) and the two 10 x 8 example sweeps, answered
from the paper's exponents (alpha 0.78, beta 0.62) with 3 % and 10 % multiplicative noise, saturation
below ln 2 and FLOP-derived H100 trial times, over --seeds oracle seeds. Per seed it prints nothing;
per grid and noise level the distribution over seeds (quantiles) of the GPU-hours and trials the
cost-aware adaptive design needs to reach 1.25x and 1x the full grid's interval widths, with how
often its intervals cover the true exponents, beside the same design scoring per trial, the same
with 16 trials at once, and a random order of the grid under the same stopping rule. The figure is
the median GPU-hour ratio on the paper's grid at 1.25x (the larger of the two noise levels'); goal
<= 0.25x with every seed reaching the rule and coverage no worse than the grid's.

Row 2, the CPU replay. The oracle is a finished CPU law grid: every (rank, ℓ) it measured answers a proposal with that
trial's own final metrics, so the adaptive search sees exactly the numbers a live run would have
seen (one measurement per point; the first trial by id when a point was run more than once).

  1. Fit the full grid (orchestrator.law.uncertainty.fit_law in the rank, covariance intervals): its α and β
     95 % interval widths are the target.
  2. Run AdaptiveLawSearcher over the same points with alpha_tol, beta_tol = those widths and a
     budget of the grid's size, answering each proposal from the oracle (sequentially, and with two
     trials at once as the CPU sweep runs them).
  3. Print: trials the grid needed vs trials the adaptive search needed to reach the same widths
     (goal: at most 0.5×), and the distance between the two fits' α and β with whether each lies
     inside the other fit's interval (it must). For scale, also the trials a random order of the
     grid needs under the same stopping rule (median of RANDOM_ORDERS seeded orders).
  4. The same counts for tolerances looser than the grid's widths by a factor k (TOLERANCE_FACTORS),
     with the grid run in its own trial order (Tune's, by trial id) under the same stopping rule.

Why step 4: no subset of the grid has more information about (α, β) than the whole grid (its JᵀJ
is smaller in the PSD order) and a subset's t quantile is larger (fewer dof), so at k = 1 a subset
reaches the grid's widths only where its residual variance happens to come out smaller than the
whole grid's. With the noise level known, even an oracle design needs every point at k = 1. The
k > 1 rows measure what an adaptive sweep is for: meeting a tolerance chosen before the run.

The replayed trials report their measured wall_s, so the searcher prices them as the paper-size
oracle's do; its figure stays trials to the grid's widths, with the measured seconds beside it.

Usage (repository root):
  python bench/adaptive_vs_grid.py --experiment memlaw-runs/law-grid-cpu   # reuse a finished grid
  python bench/adaptive_vs_grid.py            # runs `memlaw sweep examples/law_grid_cpu.yaml` into a
                                              # temporary folder first (about 2 minutes on 2 cores)
  python bench/adaptive_vs_grid.py --seeds 5 --grids paper --no-replay     # a quick look
Add --json to end with one JSON result line (bench/run_all.py), whose details.rows carry the replay
as a second table row. Figures only; no pass/fail exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable without an install

import adaptive_paper  # noqa: E402
from bench_result import emit  # noqa: E402
from orchestrator.law import adaptive_design as ad  # noqa: E402
from orchestrator.law import design_points  # noqa: E402
from orchestrator.law import paper_oracle as po  # noqa: E402
from orchestrator.tune.adaptive_search import AdaptiveLawSearcher  # noqa: E402
from orchestrator.experiment.export import load_experiment  # noqa: E402
from trainables import metric_names as mn  # noqa: E402

REPLAY_TITLE = "adaptive law search vs full grid, CPU replay of a real grid (trials to its widths)"

GOAL_RATIO = 0.5
RANDOM_ORDERS = 20
TOLERANCE_FACTORS = (1.0, 1.25, 1.5, 2.0)
SWEEP_FILE = ROOT / "examples" / "law_grid_cpu.yaml"


def run_grid(storage: Path) -> Path:
    """`memlaw sweep examples/law_grid_cpu.yaml` into `storage`; returns the experiment folder."""
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "sweep", str(SWEEP_FILE), "--storage", str(storage)]
    print(f"running the CPU law grid (about 2 min): {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return storage / "law-grid-cpu"


def load_oracle(experiment: str) -> dict[tuple, dict]:
    """(rank, ℓ) -> the final metrics of the first finished trial (by id) at that point, in trial id
    order (the order Tune ran the grid)."""
    oracle: dict[tuple, dict] = {}
    for record in load_experiment(experiment):
        if not record.ok:
            continue
        cfg = record.config
        point = (cfg["adapter"]["rank"], cfg["data"]["target_tokens"])
        oracle.setdefault(point, dict(record.metrics))
    return oracle


def widths(fit) -> tuple[float, float]:
    return fit.alpha_ci[1] - fit.alpha_ci[0], fit.beta_ci[1] - fit.beta_ci[0]


def replay(candidates: design_points.Candidates, settings: ad.Settings, oracle: dict, max_concurrent: int):
    """Drive the searcher as Tune would; returns (searcher, points proposed in order)."""
    searcher = AdaptiveLawSearcher(candidates, settings, max_concurrent)
    running: list[tuple[str, tuple]] = []
    proposed: list[tuple] = []
    finished = False
    while True:
        if not finished:
            trial_id = f"t{len(proposed):04d}"
            config = searcher.suggest(trial_id)
            if config == AdaptiveLawSearcher.FINISHED:
                finished = True
            elif config is not None:
                point = (config[design_points.RANK_AXIS], config[design_points.LENGTH_AXIS])
                running.append((trial_id, point))
                proposed.append(point)
                continue
        if not running:
            return searcher, proposed
        trial_id, point = running.pop(0)
        searcher.on_trial_complete(trial_id, oracle[point])


def order_trials(candidates: design_points.Candidates, settings: ad.Settings, oracle: dict, order: list[tuple]) -> int:
    """Trials a fixed order of the grid's points needs before the same stopping rule fires."""
    design = ad.AdaptiveDesign(candidates, settings)
    observations = []
    for n, point in enumerate(order, start=1):
        observations.append({"point": list(point), **{k: oracle[point].get(k) for k in ad.OBSERVATION_KEYS}})
        fit = ad.fit_observations(observations)
        if fit.status == "ok" and design.stopping_status(fit, n)["reason"] == "tolerance":
            return n
    return len(order)


def inside(value: float, interval) -> bool:
    return interval[0] <= value <= interval[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", help="a finished law grid's experiment folder (default: run one)")
    parser.add_argument("--initial-points", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=40, help="paper-size oracle seeds per grid and noise level")
    parser.add_argument("--noise", type=float, action="append", help="noise level(s) (default 0.03 and 0.10)")
    parser.add_argument("--grids", nargs="+", default=[g.key for g in adaptive_paper.GRIDS],
                        choices=[g.key for g in adaptive_paper.GRIDS], help="paper-size grids to run")
    parser.add_argument("--no-replay", action="store_true", help="skip the CPU replay (row 2)")
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    noises = tuple(args.noise or po.NOISE_LEVELS)
    paper = adaptive_paper.run_all(args.seeds, noises, args.initial_points, tuple(args.grids))
    replay = None if args.no_replay else replay_row(args.experiment, args.initial_points)
    if not args.json:
        return
    rows = [replay] if replay else []
    if adaptive_paper.HEADLINE_GRID not in paper:
        emit("adaptive law search vs full grid, paper-size oracle", None, "x", "-", None, memlaw="-",
             baseline="-", reason="the paper's grid was not run (--grids)", paper=paper, rows=rows)
        return
    top = adaptive_paper.headline(paper)
    q, grid = top["row"]["gpu_h_q"], top["grid"]
    emit("adaptive law search vs full grid, paper-size oracle (GPU-hours to 1.25x the grid's widths)",
         top["figure"], "x", f"<= {adaptive_paper.GOAL_RATIO}x, every seed reaching the rule, coverage no worse than "
                             "the grid's", top["met"],
         memlaw=f"{q[2]:.2f} GPU-h median [q10 {q[0]:.2f}, q90 {q[4]:.2f}] (cost-aware adaptive, "
                f"{args.seeds} seeds, noise {top['noise']:.0%}; covers alpha {top['row']['covers_alpha']}/"
                f"{top['row']['seeds']}, beta {top['row']['covers_beta']}/{top['row']['seeds']})",
         baseline=f"{grid['gpu_h']:.2f} GPU-h (full 16x13 grid, H100, derived; covers alpha {grid['covers_alpha']}/"
                  f"{grid['seeds']}, beta {grid['covers_beta']}/{grid['seeds']})",
         setup=f"paper_oracle: alpha 0.78, beta 0.62, noise {', '.join(f'{n:.0%}' for n in noises)}, {args.seeds} "
               f"seeds, FLOP-derived H100 trial times; median ratio per noise level "
               + ", ".join(f"{float(n):.0%}: {m:.3f}x" for n, m in top["medians"].items())
               + f"; the same greedy knowing the law and the noise: {top['informed']['ratio']:.3f}x",
         medians=top["medians"], coverage_ok=top["coverage_ok"], all_reached=top["all_reached"],
         **({"reason": top["reason"]} if top["reason"] else {}), paper=paper, rows=rows)


def replay_row(experiment: str | None, initial_points: int) -> dict | None:
    """Row 2: the CPU replay on a finished grid, printed; its table row (bench/run_all.py's extra rows)."""
    with tempfile.TemporaryDirectory(prefix="memlaw-adaptive-bench-") as tmp:
        experiment = experiment or str(run_grid(Path(tmp)))
        oracle = load_oracle(experiment)
    points = tuple(sorted(oracle, key=lambda p: (float(p[0]), float(p[1]))))
    candidates = design_points.Candidates(points)
    observations = [{"point": list(p), **{k: oracle[p].get(k) for k in ad.OBSERVATION_KEYS}} for p in points]
    grid_fit = ad.fit_observations(observations)
    print(f"\nCPU replay: {experiment}")
    if grid_fit.status != "ok":
        print(f"the grid has no fit: {grid_fit.status}: {grid_fit.message}")
        return {"title": REPLAY_TITLE, "memlaw": "-", "baseline": f"{len(points)} trials (grid, no fit)",
                "figure": None, "unit": "x", "goal": f"<= {GOAL_RATIO}x", "met": False,
                "reason": f"{grid_fit.status}: {grid_fit.message}"}
    alpha_w, beta_w = widths(grid_fit)
    settings = ad.Settings(alpha_tol=alpha_w, beta_tol=beta_w, max_trials=len(points), initial_points=initial_points)
    n_ranks, n_lengths = len({p[0] for p in points}), len({p[1] for p in points})
    loss_init = np.mean([oracle[p][mn.LOSS_INIT] for p in points])
    grid_s = sum(float(oracle[p].get(mn.WALL_S) or 0.0) for p in points)
    print(f"grid            {len(points)} points ({n_ranks} ranks x {n_lengths} lengths), "
          f"{grid_fit.n_excluded} saturated, mean L_init {loss_init:.3f} nats, {grid_s:.0f} s of measured trial time")
    print(f"grid fit        alpha {grid_fit.alpha:.4f} [{grid_fit.alpha_ci[0]:.4f}, {grid_fit.alpha_ci[1]:.4f}] "
          f"width {alpha_w:.4f};  beta {grid_fit.beta:.4f} [{grid_fit.beta_ci[0]:.4f}, {grid_fit.beta_ci[1]:.4f}] "
          f"width {beta_w:.4f};  dof {grid_fit.dof}")
    print(f"stopping rule   alpha width <= {alpha_w:.4f}, beta width <= {beta_w:.4f}, dof >= {settings.min_dof}, "
          f"{settings.initial_points} initial points, budget {len(points)}")
    adaptive = {c: report_adaptive(candidates, settings, oracle, grid_fit, c, len(points), grid_s) for c in (1, 2)}
    random_trials = random_orders(candidates, settings, oracle)
    print(f"\nrandom order of the grid, same stopping rule: median {np.median(random_trials):.1f} trials "
          f"(min {min(random_trials)}, max {max(random_trials)}, {RANDOM_ORDERS} orders)")
    loose_rows = looser_tolerances(candidates, settings, oracle, alpha_w, beta_w)
    ratio = adaptive[1][0] / len(points)
    return {"title": REPLAY_TITLE, "memlaw": f"{adaptive[1][0]} trials, {adaptive[1][1]:.0f} s measured (adaptive, "
                                            f"1 at once)",
            "baseline": f"{len(points)} trials, {grid_s:.0f} s (full grid)", "figure": ratio, "unit": "x",
            "goal": f"<= {GOAL_RATIO}x", "met": ratio <= GOAL_RATIO, "adaptive_2_at_once": adaptive[2][0],
            "reason": f"at the grid's own widths (k = 1) no subset of a grid carries more information than the whole "
                      f"grid (this bench's docstring), and this one has {len(points)} points, {grid_fit.n_excluded} "
                      "of them saturated: a law-guided design pays on the paper-size grid (row above)",
            "seconds_ratio": adaptive[1][1] / grid_s if grid_s else None,
            "random_order_median": float(np.median(random_trials)), "looser_tolerances": loose_rows,
            "experiment": experiment}


def report_adaptive(candidates: design_points.Candidates, settings: ad.Settings, oracle: dict, grid_fit, concurrent: int,
                    n_grid: int, grid_s: float) -> tuple[int, float]:
    """Replay the adaptive search with `concurrent` trials at once; print how it compares; its trials and
    measured seconds."""
    alpha_w, beta_w = settings.alpha_tol, settings.beta_tol
    searcher, proposed = replay(candidates, settings, oracle, concurrent)
    fit, status = searcher.fit(), searcher.status()
    reached = searcher.state.finished == "tolerance"
    n = len(proposed)
    seconds = sum(float(oracle[p].get(mn.WALL_S) or 0.0) for p in proposed)
    print(f"\nadaptive, {concurrent} at once: {n} trials, stopped by {searcher.state.finished}"
          f" ({'reached' if reached else 'did NOT reach'} the grid's widths)")
    print(f"  trials        grid {n_grid}  adaptive {n}  ratio {n / n_grid:.2f}  (goal <= {GOAL_RATIO});  measured "
          f"seconds grid {grid_s:.0f}  adaptive {seconds:.0f}  ratio {seconds / grid_s if grid_s else float('nan'):.2f}")
    print(f"  order         {' '.join(f'{r}x{ell}' for r, ell in proposed)}")
    print(f"  widths        alpha {status['alpha_width']:.4f} (tol {alpha_w:.4f}, ratio {status['alpha_ratio']:.2f})"
          f"  beta {status['beta_width']:.4f} (tol {beta_w:.4f}, ratio {status['beta_ratio']:.2f})  "
          f"dof {fit.dof}  saturated {fit.n_excluded}")
    print(f"  alpha         adaptive {fit.alpha:.4f} [{fit.alpha_ci[0]:.4f}, {fit.alpha_ci[1]:.4f}]  "
          f"|diff| {abs(fit.alpha - grid_fit.alpha):.4f}  grid's in adaptive's interval "
          f"{inside(grid_fit.alpha, fit.alpha_ci)}, adaptive's in grid's {inside(fit.alpha, grid_fit.alpha_ci)}")
    print(f"  beta          adaptive {fit.beta:.4f} [{fit.beta_ci[0]:.4f}, {fit.beta_ci[1]:.4f}]  "
          f"|diff| {abs(fit.beta - grid_fit.beta):.4f}  grid's in adaptive's interval "
          f"{inside(grid_fit.beta, fit.beta_ci)}, adaptive's in grid's {inside(fit.beta, grid_fit.beta_ci)}")
    return n, seconds


def looser_tolerances(candidates: design_points.Candidates, settings: ad.Settings, oracle: dict, alpha_w: float,
                      beta_w: float) -> dict:
    """Trials to meet k x the grid's widths, per order (grid, adaptive x1/x2, random median)."""
    print("\ntrials to meet tolerances k x the grid's widths (same rule; 'grid order' is Tune's trial order)")
    loose_rows = {}
    print(f"  {'k':>5} {'alpha_tol':>9} {'beta_tol':>9} {'grid order':>10} {'adaptive x1':>11} {'adaptive x2':>11} "
          f"{'random median':>13}")
    for k in TOLERANCE_FACTORS:
        loose = dataclasses.replace(settings, alpha_tol=k * alpha_w, beta_tol=k * beta_w)
        grid_order = order_trials(candidates, loose, oracle, list(oracle))
        adaptive_counts = [len(replay(candidates, loose, oracle, c)[1]) for c in (1, 2)]
        median = np.median(random_orders(candidates, loose, oracle))
        loose_rows[f"{k:g}"] = {"grid_order": grid_order, "adaptive_1": adaptive_counts[0],
                                "adaptive_2": adaptive_counts[1], "random_median": float(median)}
        print(f"  {k:>5.2f} {k * alpha_w:>9.4f} {k * beta_w:>9.4f} {grid_order:>10d} {adaptive_counts[0]:>11d} "
              f"{adaptive_counts[1]:>11d} {median:>13.1f}")
    return loose_rows


def random_orders(candidates: design_points.Candidates, settings: ad.Settings, oracle: dict) -> list[int]:
    points = list(candidates.points)
    return [order_trials(candidates, settings, oracle,
                         [points[i] for i in np.random.default_rng(seed).permutation(len(points))])
            for seed in range(RANDOM_ORDERS)]


if __name__ == "__main__":
    main()
