"""ZeRO-3 per-rank training memory with 2 ranks, against the same trial unsharded (goal <= 0.6x).

Both sides build memlaw's own trial on the same model and adapter and take one training step
(so AdamW's state exists), then count the bytes of the tensors each process holds for training:
model weights (under ZeRO-3 a rank's share of every weight, frozen base included), fp32 master
weights (ZeRO keeps a partition of the trainable ones), and optimizer state
(`trainables.zero.rank_memory`). Counting tensors, not RSS, keeps the figure free of the
allocator's and the interpreters' noise; the RSS of each process is printed beside it.

The ranks are 2 local processes over gloo (DeepSpeed on the CPU); a sweep starts them through Ray
Train instead, which changes nothing in what they hold.

Run from the repository root:  python bench/zero_memory.py [--model tiny-l] [--rank 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_result import emit  # noqa: E402

GOAL = 0.6
WORLD = 2


def trial_config(model: str, rank: int):
    from trainables.config import TrialConfig

    return TrialConfig.from_dict({
        "model": {"name": model}, "adapter": {"placement": "paper", "rank": rank},
        "data": {"kind": "random", "target_tokens": 64, "num_sequences": 2},
        "budget": {"preset": "cpu", "steps": 10}, "eval": {"every": 10}})


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def rank_main(rank: int, port: int, model: str, lora_rank: int, out: str) -> None:
    """One ZeRO-3 rank: build the sharded trial, step once, write what this rank holds."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), DS_ACCELERATOR="cpu")
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    from trainables.zero import zero_trial
    from trainables.zero_config import ZeroConfig

    with tempfile.TemporaryDirectory() as tmp:
        trial = zero_trial(trial_config(model, lora_rank), ZeroConfig(stage=3, workers_per_trial=WORLD), tmp, rank)
        trial.train_step()
        held = {**trial.memory_footprint(), "rss_mib": _rss_mib()}
    Path(out, f"rank{rank}.json").write_text(json.dumps(held))
    dist.barrier()
    dist.destroy_process_group()


def unsharded(model: str, lora_rank: int) -> dict:
    """The same trial in one process, one step."""
    from trainables.memorize import MemorizationTrial
    from trainables.zero import rank_memory

    with tempfile.TemporaryDirectory() as tmp:
        trial = MemorizationTrial(trial_config(model, lora_rank), tmp)
        trial.train_step()
        return {**rank_memory(trial.model, trial.backend.optimizer), "rss_mib": _rss_mib()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def total(held: dict) -> int:
    return held["weights"] + held["master_weights"] + held["optimizer_state"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-l", help="a tiny preset (tiny-l: 8 layers, d=512, vocab 4096)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (paper placement)")
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    import torch.multiprocessing as mp

    base = unsharded(args.model, args.rank)
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_main, args=(_free_port(), args.model, args.rank, out), nprocs=WORLD, join=True)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(WORLD)]
    mib = 2**20
    print(f"{args.model}, paper placement r={args.rank}, fp32, after one step; MiB of tensors held")
    print(f"{'':>12} {'weights':>9} {'master':>9} {'optimizer':>9} {'total':>9} {'ratio':>7} {'RSS':>8}")
    rows = [("unsharded", base)] + [(f"ZeRO-3 r{r}", held) for r, held in enumerate(ranks)]
    for name, held in rows:
        print(f"{name:>12} {held['weights'] / mib:9.2f} {held['master_weights'] / mib:9.3f} "
              f"{held['optimizer_state'] / mib:9.3f} {total(held) / mib:9.2f} {total(held) / total(base):7.3f} "
              f"{held['rss_mib']:8.0f}")
    worst = max(total(held) for held in ranks) / total(base)
    print(f"largest rank / unsharded: {worst:.3f} (goal <= {GOAL})")
    if args.json:
        emit("ZeRO-3 per-rank training memory, 2 ranks", worst, "x unsharded", f"<= {GOAL}", worst <= GOAL,
             memlaw=f"{max(total(h) for h in ranks) / mib:.2f} MiB on the largest rank",
             baseline=f"{total(base) / mib:.2f} MiB in one process",
             per_rank=ranks, unsharded=base, model=args.model, lora_rank=args.rank)


if __name__ == "__main__":
    main()
