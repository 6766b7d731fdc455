"""Peak host memory of a trial at ℓ = 4096 on Qwen3's vocabulary: chunked loss (memlaw's default above
1024 positions) against the whole [S, V] logits at once (`loss_chunk_tokens: 0`).

The model is a random-init Qwen3 with the real vocabulary (151,936, from tests/data/hf_configs/
Qwen--Qwen3-8B) and a small body (hidden 256, 2 layers, 4 heads, 2 KV heads, intermediate 768), so
that the logits, not the blocks, dominate, as they do for long targets on the 8B model (docs/
paper_scale.md). fp32 on CPU, one sequence of ℓ random tokens after an 8-token key, paper placement
(rank 8 at layer 1, prefix cache on), one torch thread.

Each variant runs in a fresh subprocess: it builds the trial (load, adapter, prefix cache), then
resets the kernel's peak-RSS mark (`5` into /proc/self/clear_refs, Linux >= 4.0) and runs the
certificate (one teacher-forced evaluation) and `--steps` training steps. The figure is the peak RSS
of that phase (VmHWM); the RSS at its start (model, optimizer, cache) is printed too, so the
difference is what the loss path added. The process's whole-life peak (getrusage ru_maxrss, which
includes loading the weights) is printed beside it. Goal: none, a report (issue 26).

    python bench/chunked_loss_memory.py [--length 4096] [--chunk 1024] [--steps 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QWEN3_8B = ROOT / "tests" / "data" / "hf_configs" / "Qwen--Qwen3-8B" / "config.json"
BODY = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 64, "intermediate_size": 768}


def build_model(folder: Path) -> None:
    """Qwen3-8B's config with a small body, random init (seeded), saved with a byte tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from trainables.model import byte_tokenizer

    fields = {k: v for k, v in json.loads(QWEN3_8B.read_text()).items() if k not in ("architectures", "model_type", "torch_dtype")}
    config = Qwen3Config(**{**fields, **BODY})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    byte_tokenizer(config.vocab_size).save_pretrained(folder)


def rss_kib(field: str) -> int:
    """VmRSS / VmHWM of this process, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def variant(folder: str, length: int, chunk: int, steps: int) -> dict:
    """One variant, in this (fresh) process: the trial's loss phase and its peak."""
    import torch

    from trainables.config import TrialConfig
    from trainables.memorize import MemorizationTrial

    cfg = TrialConfig.from_dict({
        "model": {"name": folder}, "adapter": {"placement": "paper", "rank": 8, "layer": 1},
        "data": {"target_tokens": length, "num_sequences": 1, "prompt_tokens": 8},
        "budget": {"steps": 1000, "batch_size": 1}, "device": "cpu", "threads": 1, "loss_chunk_tokens": chunk})
    with tempfile.TemporaryDirectory() as out:
        trial = MemorizationTrial(cfg, out)
        Path("/proc/self/clear_refs").write_text("5")  # the peak from here on: the loss path, not the load
        start_kib = rss_kib("VmRSS")
        t0 = time.perf_counter()
        trial.measure_init()
        t1 = time.perf_counter()
        for _ in range(steps):
            trial.train_step()
        t2 = time.perf_counter()
        return {"chunk": chunk, "chunk_note": trial.chunk_note, "prefix_note": trial.prefix_note,
                "start_gib": start_kib / 2**20, "peak_gib": rss_kib("VmHWM") / 2**20,
                "process_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "eval_s": t1 - t0, "step_s": (t2 - t1) / steps, "positions": trial.corpus.ids.numel(),
                "torch": torch.__version__}


def run_variant(folder: Path, length: int, chunk: int, steps: int) -> dict:
    argv = [sys.executable, __file__, "--variant", str(folder), "--length", str(length), "--chunk", str(chunk),
            "--steps", str(steps)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"variant chunk={chunk} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096, help="target tokens ℓ")
    parser.add_argument("--chunk", type=int, default=1024, help="loss_chunk_tokens of the chunked variant")
    parser.add_argument("--steps", type=int, default=2, help="training steps after the evaluation")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(variant(args.variant, args.length, args.chunk, args.steps)))
        return
    from bench_result import emit

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "qwen3-vocab-small-body"
        build_model(folder)
        chunked = run_variant(folder, args.length, args.chunk, args.steps)
        whole = run_variant(folder, args.length, 0, args.steps)
    ratio = chunked["peak_gib"] / whole["peak_gib"]
    print(f"l = {args.length} ({chunked['positions']} positions), vocabulary 151936, hidden 256, 2 layers, fp32, "
          f"CPU, torch {chunked['torch']}")
    print("| loss | RSS at start GiB | peak GiB (certificate + steps) | added GiB | process peak GiB | "
          "certificate s | step s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in ((f"chunked ({args.chunk} tokens)", chunked), ("whole logits", whole)):
        print(f"| {name} | {r['start_gib']:.2f} | {r['peak_gib']:.2f} | {r['peak_gib'] - r['start_gib']:.2f} | "
              f"{r['process_peak_gib']:.2f} | {r['eval_s']:.1f} | {r['step_s']:.1f} |")
    added = (chunked["peak_gib"] - chunked["start_gib"]) / (whole["peak_gib"] - whole["start_gib"])
    print(f"peak chunked / whole: {ratio:.3f}x (memory the loss path adds: {added:.3f}x)")
    print(f"chunked: {chunked['chunk_note']}; prefix cache {chunked['prefix_note']}")
    if args.json:
        emit(f"peak memory at l = {args.length}, chunked vs whole logits", ratio, "x", "report (no goal)", None,
             memlaw=f"{chunked['peak_gib']:.2f} GiB peak (chunks of {args.chunk} tokens)",
             baseline=f"{whole['peak_gib']:.2f} GiB peak (whole [S, V] logits)",
             setup=f"Qwen3 vocabulary 151936, hidden 256, 2 layers, fp32 CPU, l = {args.length}, paper r=8, "
                   f"certificate + {args.steps} steps, RSS peak per fresh process",
             added_ratio=added, chunked=chunked, whole=whole)


if __name__ == "__main__":
    main()
