"""Steps to certified recall: MemFT-OT against SFT at the same rank, lr and data.

Each method trains until every target token has p > 0.5 (checked every `--every` steps) or the
budget runs out; the figure is the ratio of steps (goal: MemFT <= 0.7x SFT). Several seeds.

    python bench/memft_vs_sft.py [--rank 8] [--seeds 3] [--max-steps 300] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("MEMLAW_CACHE", os.path.join(tempfile.gettempdir(), "memlaw-bench-cache"))

from bench_result import emit  # noqa: E402
from trainables import metric_names as K  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.memorize import train  # noqa: E402


def steps_to_certified(method: str, seed: int, args) -> int | None:
    cfg = TrialConfig.from_dict({
        "adapter": {"placement": "peft", "rank": args.rank}, "seed": seed,
        "data": {"target_tokens": args.length, "num_sequences": args.sequences},
        "budget": {"preset": "cpu", "steps": args.max_steps, "schedule": args.schedule},
        "method": {"name": method}, "eval": {"every": args.every, "early_stop_certified": True},
    })
    with tempfile.TemporaryDirectory() as out:
        return train(cfg, out)[K.STEPS_TO_CERTIFIED]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--schedule", default="linear", choices=["linear", "constant", "cosine"])
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    rows = {"sft": [], "memft": []}
    for seed in range(args.seeds):
        for method in rows:
            rows[method].append(steps_to_certified(method, seed, args))
    print(f"tiny-s, PEFT LoRA r={args.rank} on q/k/v/o, {args.sequences} x {args.length} random tokens, lr 1e-2 "
          f"{args.schedule}, clip 1.0, certificate every {args.every} steps, budget {args.max_steps} steps")
    print("| method | steps to certified, per seed | median |\n|---|---|---|")
    medians = {}
    for method, values in rows.items():
        finite = [v if v is not None else args.max_steps + args.every for v in values]
        medians[method] = statistics.median(finite)
        shown = ", ".join(str(v) if v is not None else f">{args.max_steps}" for v in values)
        print(f"| {method} | {shown} | {medians[method]:g} |")
    ratio = medians["memft"] / medians["sft"]
    print(f"MemFT-OT / SFT = {ratio:.2f} (goal <= 0.7)")
    if args.json:
        emit("steps to certified recall, MemFT-OT vs SFT", ratio, "x", "<= 0.7x", ratio <= 0.7,
             memlaw=f"{medians['memft']:g} steps (MemFT-OT, median)", baseline=f"{medians['sft']:g} steps (SFT, median)",
             setup=f"tiny-s, PEFT r={args.rank}, {args.sequences}x{args.length} tokens, lr 1e-2 {args.schedule}, "
                   f"{args.seeds} seeds, budget {args.max_steps} (a run that never certifies counts as budget + "
                   f"{args.every})",
             per_seed=rows)


if __name__ == "__main__":
    main()
