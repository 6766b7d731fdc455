"""The p > 0.5 certificate (one teacher-forced pass) against greedy decoding (ℓ passes), at ℓ = 512.

Both evaluate the same trained-from-init adapter on the same targets with memlaw's own evaluation
functions; the figure is the ratio of median times (goal: the certificate >= 10x cheaper).

    python bench/certificate_vs_greedy.py [--length 512] [--sequences 1] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("MEMLAW_CACHE", os.path.join(tempfile.gettempdir(), "memlaw-bench-cache"))

from bench_result import emit  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.memorize import MemorizationTrial, evaluate_greedy, evaluate_teacher_forced  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--sequences", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    cfg = TrialConfig.from_dict({"adapter": {"placement": "paper", "rank": 8},
                                 "data": {"target_tokens": args.length, "num_sequences": args.sequences}})
    with tempfile.TemporaryDirectory() as out:
        trial = MemorizationTrial(cfg, out)
        for _ in range(20):  # a trained, non-trivial adapter
            trial.train_step()
        evaluate_teacher_forced(trial.model, trial.corpus), evaluate_greedy(trial.model, trial.corpus)  # warm-up
        cert = median_time(lambda: evaluate_teacher_forced(trial.model, trial.corpus), args.repeats)
        greedy = median_time(lambda: evaluate_greedy(trial.model, trial.corpus), args.repeats)
    print(f"tiny-s, paper LoRA r=8, {args.sequences} x {args.length} random target tokens, 1 thread, "
          f"median of {args.repeats}")
    print("| evaluation | median s |\n|---|---|")
    print(f"| certificate (teacher forced, 1 pass) | {cert:.4f} |")
    print(f"| greedy decoding (KV cache, {args.length} steps) | {greedy:.4f} |")
    print(f"greedy / certificate = {greedy / cert:.1f}x (goal >= 10x)")
    if args.json:
        emit(f"certificate vs greedy decoding at l = {args.length}", greedy / cert, "x cheaper", ">= 10x",
             greedy / cert >= 10, memlaw=f"{1e3 * cert:.1f} ms (certificate, 1 pass)",
             baseline=f"{1e3 * greedy:.1f} ms (greedy, {args.length} steps)",
             setup=f"tiny-s, paper LoRA r=8, {args.sequences}x{args.length} tokens, median of {args.repeats}",
             certificate_s=cert, greedy_s=greedy)


if __name__ == "__main__":
    main()
