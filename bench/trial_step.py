"""Trial-loop throughput: memlaw's training step against a minimal hand-written torch+peft loop.

Both train the same LoRA on the same tiny model and the same batch of random-token targets, one
torch thread, AdamW + linear decay + grad clip. The hand loop is what a user would otherwise write:
`model(input_ids, attention_mask, labels).loss.backward()`. Runs alternate in rounds so that
machine noise hits both; the figure is the ratio of median step times (goal: memlaw >= 0.95x).

    python bench/trial_step.py [--steps 40] [--rounds 5] [--json]
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
from trainables.config import TrialConfig  # noqa: E402
from trainables.memorize import MemorizationTrial  # noqa: E402

GOAL = 0.95

CONFIG = {"adapter": {"placement": "peft", "rank": 16}, "data": {"target_tokens": 64, "num_sequences": 32},
          "budget": {"steps": 100000}, "threads": 1}


def memlaw_steps(trial: MemorizationTrial, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        trial.train_step()
    return (time.perf_counter() - start) / n


def hand_loop(trial: MemorizationTrial):
    """A plain torch+peft loop over the same model, batch and optimizer settings."""
    from transformers import get_scheduler

    model = trial.model
    batch = trial.corpus.batch(list(range(trial.data.num_sequences)))
    labels = batch.ids.clone()
    pos = torch.arange(labels.shape[1]).unsqueeze(0)
    labels[pos < batch.prompt_lens.unsqueeze(1)] = -100
    labels[batch.attn == 0] = -100
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=100000)

    def steps(n: int) -> float:
        model.train()
        start = time.perf_counter()
        for _ in range(n):
            loss = model(input_ids=batch.ids, attention_mask=batch.attn, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
        return (time.perf_counter() - start) / n

    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    cfg = TrialConfig.from_dict(CONFIG)
    with tempfile.TemporaryDirectory() as out:
        trial = MemorizationTrial(cfg, out)
        trial.measure_init()
        hand = hand_loop(trial)
        memlaw_steps(trial, 5), hand(5)  # warm-up
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(memlaw_steps(trial, args.steps))
            theirs.append(hand(args.steps))
    m, h = statistics.median(ours), statistics.median(theirs)
    print(f"model tiny-s, LoRA r=16 on q/k/v/o, 32 x 64 random tokens, 1 thread, {args.rounds} rounds x {args.steps} steps")
    print("| loop | median s/step | steps/s |\n|---|---|---|")
    print(f"| memlaw train_step | {m:.4f} | {1 / m:.1f} |")
    print(f"| hand-written torch+peft | {h:.4f} | {1 / h:.1f} |")
    print(f"throughput ratio memlaw/hand = {h / m:.3f} (goal >= {GOAL})")
    if args.json:
        emit("trial loop throughput vs hand-written torch+peft", h / m, "x", f">= {GOAL}x", h / m >= GOAL,
             memlaw=f"{1 / m:.1f} steps/s", baseline=f"{1 / h:.1f} steps/s (hand loop)",
             setup=f"tiny-s, PEFT r=16 q/k/v/o, 32x64 tokens, 1 thread, {args.rounds}x{args.steps} steps",
             memlaw_s_per_step=m, hand_s_per_step=h)


if __name__ == "__main__":
    main()
