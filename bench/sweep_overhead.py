"""Sweep overhead: wall time of a memlaw sweep divided by the ideal (total trial time ÷ slots).

Runs ~200 short real trials (tiny-xs, a few steps each) through `memlaw`'s own sweep path — the
Tune wiring, actor reuse, the results-actor callback and the law refit — on a local Ray with 2
slots. Trial time is Tune's `time_total_s` of each trial (model load, training, evaluation).
Goal: at most 1.10 (Ray's own benchmark reports 1.14).

    python bench/sweep_overhead.py [--trials 200] [--slots 2] [--json]
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("MEMLAW_CACHE", os.path.join(tempfile.gettempdir(), "memlaw-bench-cache"))

from bench_result import emit  # noqa: E402
from orchestrator.config.sweep import SweepConfig  # noqa: E402
from sweep_timing import timed_sweep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    seeds = max(1, args.trials // 8)
    with tempfile.TemporaryDirectory() as storage:
        sweep = SweepConfig.from_dict({
            "name": "overhead", "space": "law_grid_smoke", "storage_path": storage,
            "max_concurrency": args.slots, "resources": {"cpu": 1},
            "space_overrides": {"adapter.rank": [1, 2, 3, 4], "data.target_tokens": [16, 24],
                                "seed": list(range(seeds))},
            "trial": {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper"},
                      "budget": {"preset": "cpu", "steps": args.steps}, "eval": {"every": args.steps}},
        })
        grid, ray_up, wall = timed_sweep(sweep)
    n = len(grid)
    trial_time = sum(r.metrics["time_total_s"] for r in grid if r.metrics)
    ideal = trial_time / args.slots
    print(f"\n{n} trials ({len(grid.errors)} failed), {args.slots} slots, tiny-xs, {args.steps} steps each")
    print("| figure | value |\n|---|---|")
    print(f"| sweep wall time (incl. Ray start) | {wall:.1f} s |")
    print(f"| total trial time | {trial_time:.1f} s |")
    print(f"| ideal (trial time / slots) | {ideal:.1f} s |")
    print(f"| mean trial time | {trial_time / max(n, 1):.2f} s |")
    print(f"| Ray start (embedded local cluster) | {ray_up:.1f} s |")
    print(f"sweep wall / ideal = {wall / ideal:.3f} (goal <= 1.10); without Ray's start-up "
          f"{(wall - ray_up) / ideal:.3f}")
    if args.json:
        emit("sweep wall time vs ideal", wall / ideal, "x", "<= 1.10x", wall / ideal <= 1.10,
             memlaw=f"{wall:.1f} s wall ({n} trials, Ray start included)",
             baseline=f"{ideal:.1f} s ideal (trial time / {args.slots} slots)",
             setup=f"{n} trials ({len(grid.errors)} failed), tiny-xs, {args.steps} steps each, {args.slots} slots",
             wall_s=wall, ideal_s=ideal, ray_start_s=ray_up, ratio_without_ray_start=(wall - ray_up) / ideal)


if __name__ == "__main__":
    main()
