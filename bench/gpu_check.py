"""The GPU check: memlaw's trial on a random-init Qwen3-8B in bf16, measured, in one script (issue 26).

No GPU had run a memlaw trial when this was written; this is what to run first when one is lent
(one H100, under 8 minutes; `--tiny --device cpu` runs the same code in seconds, and
tests/test_gpu_check.py does so in the suite). It builds a random-init model from the Qwen3-8B config
fixture (tests/data/hf_configs/Qwen--Qwen3-8B, 8.2 B parameters) in bf16, directly on the device, and
hands it to the trials as their held base (trainables.model.BASES.hold: no 16 GB of weights written and
read back). Then:

1. Throughput, paper placement (rank 8 at layer 24 of 36), one sequence of ℓ random tokens after an
   8-token key, batch 1: ℓ = 512 and 4096, each with and without the prefix cache, and at 4096 with the
   chunked loss (memlaw's default above 1024 positions) and with the whole logits (`loss_chunk_tokens:
   0`). Per row: step time (median of the timed steps after one warm-up), tokens/s (S = ℓ + 8 positions
   a step), peak memory over the timed steps (CUDA: torch.cuda.max_memory_allocated; CPU: the process's
   peak RSS), FLOP/s achieved by bench/paper_cost.py's FLOP count of the step, and its share of the bf16
   peak, PEAK_BF16_FLOPS. The first step's loss of each row (the adapter starts at zero: the base's
   loss) must agree across the rows of one length: the prefix cache and the chunked loss are exact.
2. A short SFT trial and a short MemFT trial (ℓ = 64, 2 sequences, early stop when certified): their
   final metrics, and the certificate checked against greedy decoding on the device: every sequence's
   greedy output must reproduce its certified prefix (first greedy error >= first sub-threshold
   position; a certified sequence is reproduced exactly). A bf16 kernel that moves a certified token's
   argmax would show here.

The last stdout line is one JSON object (bench/bench_result.py): figure = the share of the bf16 peak at
ℓ = 4096 (cached, chunked), met = every check passed; the rows, trials and checks are in its details.
Exit status 0 when every check passed, 1 otherwise.

    python bench/gpu_check.py [--device auto|cpu|cuda] [--dtype bfloat16] [--tiny] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "hf_configs" / "Qwen--Qwen3-8B" / "config.json"
#: NVIDIA H100 SXM5 dense BF16 tensor-core peak, without sparsity (NVIDIA H100 Tensor Core GPU datasheet:
#: 1,979 TFLOP/s "with sparsity", half of it dense); the same figure as bench/paper_cost.py's GPUS.
PEAK_BF16_FLOPS = 989e12
PROMPT_TOKENS = 8
#: Loss agreement asked between rows of one length (nats): the same operations in bf16, in another
#: order where the cache was built over another batch or the head runs over chunks.
EXACT_TOLERANCE = {"bfloat16": 2e-2, "float16": 2e-2, "float32": 1e-4}


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: the full check on a GPU, or the tiny one for CPU and the suite."""

    lengths: tuple[int, int]  # (short, long) ℓ of the throughput rows
    chunk: int  # loss_chunk_tokens of the chunked rows (memlaw's default on the full model)
    timed_steps: tuple[int, int]  # timed steps at the short and the long length
    trial_length: int  # ℓ of the SFT and MemFT trials
    trial_sequences: int
    trial_steps: int
    eval_every: int
    trial_lr: float = 1e-2  # the paper's


FULL = Plan(lengths=(512, 4096), chunk=1024, timed_steps=(10, 5), trial_length=64, trial_sequences=2,
            trial_steps=300, eval_every=50)
#: A body small enough for seconds on a CPU; the long length stays above the chunk size, as 4096 > 1024.
TINY = Plan(lengths=(24, 160), chunk=64, timed_steps=(3, 3), trial_length=16, trial_sequences=2,
            trial_steps=200, eval_every=25, trial_lr=5e-2)
TINY_BODY = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 1024,
             "initializer_range": 0.2, "bos_token_id": 1, "eos_token_id": 2}  # init as memlaw's tiny presets


# -- the model -----------------------------------------------------------------------------------
def model_config(tiny: bool):
    """Qwen3-8B's config (the fixture), or the same family with TINY_BODY."""
    from transformers import Qwen3Config

    fields = {k: v for k, v in json.loads(FIXTURE.read_text()).items()
              if k not in ("architectures", "model_type", "torch_dtype")}
    return Qwen3Config(**{**fields, **(TINY_BODY if tiny else {})})


def build_base(folder: Path, config: Any, dtype: str, device: torch.device) -> int:
    """A seeded random-init model built on `device` in `dtype`, held for trials of `folder` (which gets
    the config and tokenizer only). Returns its parameter count."""
    from transformers import AutoModelForCausalLM

    from trainables.config import ModelConfig
    from trainables.model import BASES, byte_tokenizer

    tokenizer = byte_tokenizer(config.vocab_size)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    BASES.hold(ModelConfig(name=str(folder)), dtype, device, model, tokenizer)
    return sum(p.numel() for p in model.parameters())


def flop_model(config: Any, cached: bool):
    """bench/paper_cost.py's model of a step's FLOPs for this config (adapter at the default layer)."""
    from paper_cost import Model

    from trainables.model import default_paper_layer

    return Model("Qwen3 (random init)", config.hidden_size, config.num_hidden_layers, config.intermediate_size,
                 config.num_attention_heads, config.num_key_value_heads, config.head_dim, config.vocab_size,
                 default_paper_layer(config.num_hidden_layers), cached=cached)


# -- measuring -----------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory from a reset on: CUDA's allocator on a GPU, the process's peak RSS on a CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "max_memory_allocated" if device.type == "cuda" else "peak RSS"

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset(self) -> None:
        self.sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # Linux >= 4.0: reset the peak-RSS mark; elsewhere the figure is the process's whole-life peak
            Path("/proc/self/clear_refs").write_text("5")
            self.kind = "peak RSS (VmHWM, reset)"
        except OSError:
            self.kind = "peak RSS (ru_maxrss, whole process)"

    def gib(self) -> float:
        self.sync()
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**30
        status = Path("/proc/self/status")
        if status.is_file():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
        scale = 2**30 if platform.system() == "Darwin" else 2**20  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def trial_config(folder: Path, args: argparse.Namespace, **over: Any):
    from trainables.config import TrialConfig

    base = {"model": {"name": str(folder)}, "adapter": {"placement": "paper", "rank": 8},
            "data": {"target_tokens": 64, "num_sequences": 1, "prompt_tokens": PROMPT_TOKENS},
            "budget": {"steps": 100000, "batch_size": 1}, "device": args.device, "dtype": args.dtype,
            "threads": args.threads}
    for key, value in over.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return TrialConfig.from_dict(base)


def throughput_row(folder: Path, args: argparse.Namespace, plan: Plan, config: Any, length: int, cached: bool,
                   chunk: int, steps: int) -> dict[str, Any]:
    """One configuration: a trial built, one warm-up step, `steps` timed steps."""
    from paper_cost import step_flops

    from trainables.memorize import MemorizationTrial

    cfg = trial_config(folder, args, data={"target_tokens": length}, prefix_cache=cached, loss_chunk_tokens=chunk)
    peak = PeakMemory(torch.device(args.resolved_device))
    with tempfile.TemporaryDirectory() as out:
        trial = MemorizationTrial(cfg, out)
        notes = {"prefix_cache": trial.prefix_note, "chunked_loss": trial.chunk_note}
        first_loss = trial.train_step()  # warm-up; the adapter is still zero: the base's loss
        peak.reset()
        times = []
        for _ in range(steps):
            peak.sync()
            start = time.perf_counter()
            trial.train_step()
            peak.sync()
            times.append(time.perf_counter() - start)
        peak_gib = peak.gib()
        del trial
    release(args.resolved_device)
    step_s = statistics.median(times)
    s = length + PROMPT_TOKENS
    flops = step_flops(flop_model(config, cached), s)
    return {"length": length, "positions": s, "prefix_cache": cached, "loss_chunk_tokens": chunk,
            "chunked": notes["chunked_loss"].startswith("on") and s > chunk, **{f"{k}_note": v for k, v in notes.items()},
            "step_s": step_s, "tokens_per_s": s / step_s, "peak_gib": peak_gib, "memory": peak.kind,
            "step_tflop": flops / 1e12, "flops_per_s": flops / step_s, "peak_fraction": flops / step_s / PEAK_BF16_FLOPS,
            "first_loss": first_loss, "timed_steps": steps}


def release(device: str) -> None:
    """Drop a finished trial's tensors before the next one (the held base is restored and reused)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# -- trials and the certificate ------------------------------------------------------------------
TRIAL_KEYS = ("steps", "loss_init", "loss_final", "delta_loss", "frac_p_gt_half", "first_subthreshold_pos",
              "tf_token_acc", "frac_sequences_certified", "greedy_token_acc", "greedy_exact_match",
              "first_greedy_error_pos", "steps_to_certified", "wall_s")


def short_trial(folder: Path, args: argparse.Namespace, plan: Plan, method: str) -> dict[str, Any]:
    """A whole trial (trainables.memorize.train): its final metrics and per-sequence rows."""
    from trainables.memorize import train

    cfg = trial_config(folder, args, data={"target_tokens": plan.trial_length, "num_sequences": plan.trial_sequences},
                       budget={"steps": plan.trial_steps, "batch_size": None, "lr": plan.trial_lr},
                       method={"name": method},
                       eval={"every": plan.eval_every, "early_stop_certified": True})
    with tempfile.TemporaryDirectory() as out:
        result = train(cfg, out)
    release(args.resolved_device)
    return {"method": method, **{k: result[k] for k in TRIAL_KEYS}, "per_sequence": result["per_sequence"]}


def certificate_check(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Greedy decoding reproduces every certified prefix: per sequence, first greedy error >= first
    sub-threshold position (a fully certified sequence is then greedy-exact). `covered`: target
    positions the certificate vouched for (0: the check had nothing to bite on)."""
    rows = [r for t in trials for r in t["per_sequence"]]
    violations = [r for r in rows if r["first_greedy_error_pos"] < r["first_subthreshold_pos"]
                  or (r["certified"] and not r["greedy_exact"])]
    covered = sum(r["first_subthreshold_pos"] for r in rows)
    return {"passed": not violations, "violations": len(violations), "sequences": len(rows),
            "covered_positions": covered, "vacuous": covered == 0}


def exactness_check(rows: list[dict[str, Any]], dtype: str) -> dict[str, Any]:
    """The first step's loss (the base's) agrees across the rows of each length: cache and chunks exact."""
    gaps = {}
    for length in sorted({r["length"] for r in rows}):
        losses = [r["first_loss"] for r in rows if r["length"] == length]
        gaps[str(length)] = max(losses) - min(losses)
    tolerance = EXACT_TOLERANCE[dtype]
    return {"passed": all(g <= tolerance for g in gaps.values()), "gap_nats": gaps, "tolerance": tolerance}


# -- the run -------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    from trainables.memorize import quiet_libraries
    from trainables.model import BASES, resolve_device

    quiet_libraries()
    plan = TINY if args.tiny else FULL
    device = resolve_device(args.device)
    args.resolved_device = str(device)
    config = model_config(args.tiny)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ("qwen3-tiny-random" if args.tiny else "qwen3-8b-random")
        start = time.perf_counter()
        params = build_base(folder, config, args.dtype, device)
        build_s = time.perf_counter() - start
        short, long = plan.lengths
        configs = [(short, True, plan.chunk), (short, False, plan.chunk), (long, True, plan.chunk),
                   (long, False, plan.chunk), (long, True, 0)]
        rows = []
        for length, cached, chunk in configs:
            steps = plan.timed_steps[0 if length == short else 1]
            rows.append(throughput_row(folder, args, plan, config, length, cached, chunk, steps))
            print(row_line(rows[-1]), flush=True)
        trials = [short_trial(folder, args, plan, method) for method in ("sft", "memft")]
        BASES.release()
    checks = {"certificate_vs_greedy": certificate_check(trials), "prefix_cache_and_chunks_exact":
              exactness_check(rows, args.dtype)}
    return {"device": device_description(device), "dtype": args.dtype, "tiny": args.tiny, "plan": asdict(plan),
            "model": {"source": str(FIXTURE.relative_to(ROOT)), "parameters": params, "build_s": build_s,
                      "vocab": config.vocab_size, "hidden": config.hidden_size, "layers": config.num_hidden_layers},
            "peak_bf16_flops": PEAK_BF16_FLOPS, "rows": rows, "trials": trials, "checks": checks,
            "torch": torch.__version__}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def row_line(r: dict[str, Any]) -> str:
    loss = "chunked" if r["chunked"] else "whole logits"
    return (f"| {r['length']} | {'on' if r['prefix_cache'] else 'off'} | {loss} | {r['step_s'] * 1e3:.1f} | "
            f"{r['tokens_per_s']:.0f} | {r['peak_gib']:.2f} | {r['step_tflop']:.2f} | "
            f"{r['flops_per_s'] / 1e12:.2f} | {r['peak_fraction']:.1%} | {r['first_loss']:.4f} |")


def report(result: dict[str, Any]) -> str:
    m = result["model"]
    lines = [f"device: {result['device']}; dtype {result['dtype']}; torch {result['torch']}",
             f"model: random-init Qwen3 from {m['source']}{' (tiny body)' if result['tiny'] else ''}: "
             f"{m['parameters']:,} parameters, vocabulary {m['vocab']}, d = {m['hidden']}, "
             f"{m['layers']} layers, built in {m['build_s']:.1f} s",
             f"peak reference: {result['peak_bf16_flops'] / 1e12:.0f} TFLOP/s (H100 SXM dense bf16)", "",
             "| ℓ | prefix cache | loss | step ms | tokens/s | peak GiB | TFLOP/step | TFLOP/s | of bf16 peak | "
             "first loss |", "|---|---|---|---|---|---|---|---|---|---|",
             *(row_line(r) for r in result["rows"]), f"(peak memory: {result['rows'][0]['memory']})", "",
             "| method | steps | L_init | L_final | ΔL | p > 0.5 share | certified seqs | greedy exact | "
             "first sub-threshold | first greedy error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in result["trials"]:
        lines.append(f"| {t['method']} | {t['steps']} | {t['loss_init']:.3f} | {t['loss_final']:.3f} | "
                     f"{t['delta_loss']:.3f} | {t['frac_p_gt_half']:.3f} | {t['frac_sequences_certified']:.2f} | "
                     f"{t['greedy_exact_match']:.2f} | {t['first_subthreshold_pos']:.1f} | "
                     f"{t['first_greedy_error_pos']:.1f} |")
    cert, exact = result["checks"]["certificate_vs_greedy"], result["checks"]["prefix_cache_and_chunks_exact"]
    lines += ["", f"certificate vs greedy on {result['device']}: {'PASSED' if cert['passed'] else 'FAILED'} "
                  f"({cert['violations']} violations in {cert['sequences']} sequences; the certificate covered "
                  f"{cert['covered_positions']} positions{', so the check had nothing to bite on' if cert['vacuous'] else ''})",
              f"prefix cache and chunked loss exact: {'PASSED' if exact['passed'] else 'FAILED'} (first-step loss "
              f"gap per length {exact['gap_nats']} nats, tolerance {exact['tolerance']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--tiny", action="store_true", help="a tiny body and lengths: seconds on a CPU")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # paper_cost, bench_result
    from bench_result import emit

    start = time.perf_counter()
    result = run(args)
    result["wall_s"] = time.perf_counter() - start
    print(report(result))
    print(f"wall {result['wall_s']:.0f} s")
    passed = all(c["passed"] for c in result["checks"].values())
    long_row = next(r for r in result["rows"] if r["length"] == max(r["length"] for r in result["rows"])
                    and r["prefix_cache"] and r["chunked"])
    if args.json:
        emit("GPU check: paper-placement trial on random-init Qwen3-8B", long_row["peak_fraction"], "x of bf16 peak",
             "report; every check passes", passed, memlaw=f"{long_row['tokens_per_s']:.0f} tokens/s at l = "
             f"{long_row['length']} (cached, chunked), {long_row['peak_gib']:.1f} GiB peak",
             baseline=f"{PEAK_BF16_FLOPS / 1e12:.0f} TFLOP/s H100 SXM dense bf16", setup=result["device"], **result)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
