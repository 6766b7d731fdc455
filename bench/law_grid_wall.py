"""The tiny-model CPU law grid (examples/law_grid_cpu.yaml: tiny-s, paper placement, 4 ranks x 4
lengths, 2 slots; --steps 100 by default, half the example's 200, to fit a shared machine) before and
after issue 18: every forward through the whole model and a base load per
trial (`prefix_cache: false`, MEMLAW_BASES_PER_WORKER=0) vs the frozen prefix cached and the base held
per worker (the defaults). Each sweep runs in its own subprocess (its own local Ray), one after the
other. A report, no goal: tiny-s has 2 layers, so the cache skips the embedding and layer 0 only.

    python bench/law_grid_wall.py [--steps 100] [--json]
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


def one_grid(steps: int, before: bool) -> dict:
    from orchestrator.config.sweep import SweepConfig

    with tempfile.TemporaryDirectory() as storage:
        sweep = SweepConfig.from_dict({
            "name": "law-grid-cpu", "space": "law_grid_cpu", "storage_path": storage, "max_concurrency": 2,
            "resources": {"cpu": 1},
            "trial": {"model": {"name": "tiny-s"}, "adapter": {"placement": "paper", "rank": 1},
                      "data": {"kind": "random", "target_tokens": 128}, "budget": {"preset": "cpu", "steps": steps},
                      "method": {"name": "sft"}, "eval": {"every": 50}, "prefix_cache": not before},
        })
        grid, _, wall = timed_sweep(sweep)
    done = [r.metrics for r in grid if r.metrics]
    return {"trials": len(done), "failed": len(grid.errors), "wall_s": wall,
            "trial_time_s": sum(m["time_total_s"] for m in done)}


def run_child(before: bool, steps: int) -> dict:
    env = {**os.environ, "MEMLAW_BASES_PER_WORKER": "0" if before else "1"}
    argv = [sys.executable, __file__, "--child", "--steps", str(steps)] + (["--before"] if before else [])
    return child_result(argv, env, f"{'before' if before else 'after'} grid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_grid(args.steps, args.before)), flush=True)
        return
    before, after = run_child(True, args.steps), run_child(False, args.steps)
    ratio = after["wall_s"] / before["wall_s"]
    print(f"\nlaw_grid_cpu: 16 trials tiny-s, paper placement, {args.steps} steps, 2 slots")
    print("| grid | wall s | trials ok / failed | trial time s |\n|---|---|---|---|")
    for name, r in (("before (uncached, load per trial)", before), ("after (prefix cache, base held)", after)):
        print(f"| {name} | {r['wall_s']:.1f} | {r['trials']} / {r['failed']} | {r['trial_time_s']:.1f} |")
    print(f"after / before wall = {ratio:.2f}x (report, no goal)")
    if args.json:
        emit("tiny CPU law grid wall, after vs before issue 18", ratio, "x", "report", None,
             memlaw=f"{after['wall_s']:.1f} s wall (prefix cache, base held)",
             baseline=f"{before['wall_s']:.1f} s wall (uncached, load per trial)",
             setup=f"law_grid_cpu 16 trials tiny-s, {args.steps} steps, 2 slots", before=before, after=after)


if __name__ == "__main__":
    main()
