"""GPU-hours of the paper-scale sweeps (examples/paper_*.yaml), derived from FLOP and byte counts.

No GPU was available where this was written, so nothing here is measured: every figure follows from the
model shapes (their published config.json, copied in tests/data/hf_configs/), the sweep files, and the
hardware assumptions below. Rerun it with measured step times once a GPU run exists (--mfu, --overhead-ms).

Per training step (batch 1, S = ℓ + prompt tokens, frozen bf16 base, adapter on layer a of L):
  forward          F_fwd = 2·N_layers·S + attention + 2·d·V·S (LM head), with N_layers the transformer
                   block parameters and causal attention 2·S²·(heads·head_dim) per layer
  backward         only what the adapter's gradient needs: activation gradients through the head and the
                   L − a blocks above the adapter (≈ their forward FLOPs once more); frozen weights get no
                   weight gradient and the blocks below the adapter get no backward at all. The adapter's
                   own FLOPs (4·d·r·S) are negligible.
  bound            the common 6·N·S rule (full backward) is listed as an upper bound
  time             max(FLOPs / (peak · MFU), bytes / bandwidth) + launch overhead, where bytes = the
                   bf16 weights read once in the forward and once more for the blocks above the adapter
Per trial: 2000 steps + the certificate (one forward) every 200 steps + greedy decoding of ℓ tokens at
the end (memory-bound: each token reads every weight once). Per sweep: 10 ranks × 8 lengths; the rank
changes the cost by the adapter's FLOPs only, so each length costs 10 identical trials.

    python bench/paper_cost.py [--mfu 0.35] [--overhead-ms 15] [--out docs/paper_scale.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable without an install

HF_CONFIGS = ROOT / "tests" / "data" / "hf_configs"
PROMPT_TOKENS = 8  # data.prompt_tokens default
STEPS, CERT_EVERY = 2000, 200
RANKS = 10  # 1..512
LOGIT_BYTES = 4  # the loss upcasts logits to fp32
A10G_GB = 24.0  # cluster.yaml's gpu.spot.* nodes (g5: NVIDIA A10G)


@dataclass(frozen=True)
class Model:
    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    adapter_layer: int
    sweep_file: str
    cached: bool = True  # the frozen prefix cached (trainables/prefix_cache.py): forwards start at the adapter

    @property
    def forward_layers(self) -> int:
        """Blocks each training / certificate forward runs: those from the adapter up when cached."""
        return self.layers - self.adapter_layer if self.cached else self.layers

    @property
    def block_params(self) -> float:
        """Parameters of one transformer block: attention (q, o full; k, v grouped) and the gated MLP."""
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        return attn + 3 * self.hidden * self.intermediate

    @property
    def total_params(self) -> float:
        return self.layers * self.block_params + 2 * self.vocab * self.hidden  # untied embedding and head


@dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float  # dense bf16 tensor-core FLOP/s
    bandwidth: float  # HBM bytes/s
    memory_gb: float


GPUS = (GPU("H100 SXM", 989e12, 3.35e12, 80), GPU("H200", 989e12, 4.8e12, 141))


def load_model(folder: str, adapter_layer: int, sweep_file: str, cached: bool = True) -> Model:
    c = json.loads((HF_CONFIGS / folder / "config.json").read_text())
    return Model(folder.replace("--", "/"), c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"],
                 c["num_attention_heads"], c["num_key_value_heads"],
                 c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"], c["vocab_size"],
                 adapter_layer, sweep_file, cached)


MODELS = (
    ("Qwen--Qwen3-8B", 24, "examples/paper_qwen3_8b.yaml"),
    ("meta-llama--Llama-3.1-8B-Instruct", 18, "examples/paper_llama31_8b.yaml"),
)


def sweep_axes(sweep_file: str) -> tuple[tuple[int, ...], tuple[int, ...], int, int]:
    """Ranks, lengths, steps and certificate cadence, read from the sweep file itself."""
    # Not load_sweep: its validation reads the model's config from the hub; the grid and budget need no model.
    import yaml

    from search_spaces import get
    from trainables.config import BUDGET_PRESETS

    data = yaml.safe_load((ROOT / sweep_file).read_text())
    grid = get(data["space"]).with_axes(data.get("space_overrides") or {})
    budget = {**BUDGET_PRESETS.get(data["trial"]["budget"].get("preset"), {}), **data["trial"]["budget"]}
    return (tuple(grid.axes["adapter.rank"]), tuple(grid.axes["data.target_tokens"]), budget["steps"],
            data["trial"]["eval"]["every"])


def forward_flops(m: Model, s: int, layers: int) -> float:
    """Forward FLOPs of `layers` blocks plus the LM head on S tokens (causal attention)."""
    attention = 2.0 * s * s * m.heads * m.head_dim
    return layers * (2.0 * m.block_params * s + attention) + 2.0 * m.hidden * m.vocab * s


def step_flops(m: Model, s: int) -> float:
    above = m.layers - m.adapter_layer
    return forward_flops(m, s, m.forward_layers) + forward_flops(m, s, above)


def step_seconds(m: Model, s: int, gpu: GPU, mfu: float, overhead_s: float) -> float:
    above = m.layers - m.adapter_layer
    weight_bytes = 2.0 * (m.forward_layers + above) * m.block_params + 2 * 2.0 * m.vocab * m.hidden
    return max(step_flops(m, s) / (gpu.peak_flops * mfu), weight_bytes / gpu.bandwidth) + overhead_s


def memory_gb(m: Model, s: int) -> float:
    """Weights (bf16) + saved activations of the blocks above the adapter (34·S·d bytes each, flash
    attention: no S² term; Korthikanti et al. 2022) + fp32 logits and their gradient."""
    above = m.layers - m.adapter_layer
    weights = 2.0 * m.total_params
    activations = above * 34.0 * s * m.hidden
    logits = 2 * LOGIT_BYTES * s * m.vocab
    cache = 2.0 * s * m.hidden if m.cached else 0.0  # bf16 hidden states entering the adapter's layer
    return (weights + activations + logits + cache) / 1e9


def trial_hours(m: Model, ell: int, gpu: GPU, mfu: float, overhead_s: float, steps: int, every: int) -> float:
    s = ell + PROMPT_TOKENS
    train = steps * step_seconds(m, s, gpu, mfu, overhead_s)
    certificate = (steps // every) * (forward_flops(m, s, m.forward_layers) / (gpu.peak_flops * mfu) + overhead_s)
    if m.cached:  # the prefix, once per trial (the hidden states entering the adapter's layer)
        certificate += forward_flops(m, s, m.adapter_layer) / (gpu.peak_flops * mfu) + overhead_s
    greedy = ell * (2.0 * m.total_params / gpu.bandwidth + overhead_s)  # one weight read per token
    return (train + certificate + greedy) / 3600.0


def model_section(m: Model, mfu: float, overhead_s: float) -> tuple[list[str], dict[str, float]]:
    ranks, lengths, steps, every = sweep_axes(m.sweep_file)
    lines = [f"## {m.name} (`{m.sweep_file}`)", "",
             f"d = {m.hidden}, {m.layers} layers, vocabulary {m.vocab}, {m.total_params / 1e9:.2f} B parameters; "
             f"adapter on layer {m.adapter_layer}, so the backward pass runs through {m.layers - m.adapter_layer} "
             f"blocks and the head. Grid: {len(ranks)} ranks × {len(lengths)} lengths = {len(ranks) * len(lengths)} "
             f"trials of {steps} steps.", "",
             "| ℓ | TFLOP / step | 6·N·S bound | memory GB | " + " | ".join(f"{g.name} s / step" for g in GPUS)
             + " | " + " | ".join(f"{g.name} GPU-h per length ({len(ranks)} ranks)" for g in GPUS) + " |",
             "|---|---|---|---|" + "---|" * (2 * len(GPUS))]
    totals = {g.name: 0.0 for g in GPUS}
    for ell in lengths:
        s = ell + PROMPT_TOKENS
        per_gpu = [step_seconds(m, s, g, mfu, overhead_s) for g in GPUS]
        hours = [len(ranks) * trial_hours(m, ell, g, mfu, overhead_s, steps, every) for g in GPUS]
        for g, h in zip(GPUS, hours):
            totals[g.name] += h
        lines.append(f"| {ell} | {step_flops(m, s) / 1e12:.2f} | {6 * m.total_params * s / 1e12:.2f} | "
                     f"{memory_gb(m, s):.0f} | " + " | ".join(f"{t:.3f}" for t in per_gpu) + " | "
                     + " | ".join(f"{h:.1f}" for h in hours) + " |")
    too_big = [ell for ell in lengths if memory_gb(m, ell + PROMPT_TOKENS) > A10G_GB]
    lines += ["", f"Lengths over {A10G_GB:g} GB (cluster.yaml's A10G nodes): "
              + (", ".join(str(ell) for ell in too_big) + ": run them on 80 GB-class GPUs (p5/H100) or with "
                 "activation checkpointing." if too_big else "none.")]
    lines += ["", "**Per sweep: " + ", ".join(f"{totals[g.name]:.0f} GPU-hours on {g.name}" for g in GPUS)
              + ".**", ""]
    return lines, totals


def render(mfu: float, overhead_ms: float, cached: bool = True) -> str:
    models = [load_model(*spec, cached=cached) for spec in MODELS]
    sections, totals = [], {}
    for m in models:
        lines, t = model_section(m, mfu, overhead_ms / 1e3)
        sections += lines
        totals[m.name] = t
    gpus = "; ".join(f"{g.name}: {g.peak_flops / 1e12:.0f} TFLOP/s dense bf16, {g.bandwidth / 1e12:.2f} TB/s, "
                     f"{g.memory_gb:.0f} GB" for g in GPUS)
    both = {g.name: sum(t[g.name] for t in totals.values()) for g in GPUS}
    other = [load_model(*spec, cached=not cached) for spec in MODELS]
    both_other = {g.name: sum(model_section(m, mfu, overhead_ms / 1e3)[1][g.name] for m in other) for g in GPUS}
    return "\n".join([
        "# The paper-scale sweeps: cost estimate",
        "",
        f"Generated by `python bench/paper_cost.py --mfu {mfu} --overhead-ms {overhead_ms:g}"
        f"{'' if cached else ' --no-prefix-cache'}`. **Derived, not "
        "measured**: no GPU was available to the session that wrote this, so the step times below come from FLOP "
        "and byte counts under the stated assumptions. Replace the assumptions with measured step times (one "
        "trial per length on one GPU is enough) before booking a cluster.",
        "",
        "Assumptions:",
        f"- hardware: {gpus} (vendor peak figures);",
        f"- model FLOP utilisation {mfu:.0%} of peak where compute-bound (batch 1: long ℓ only); below that, a step "
        "cannot be faster than reading the bf16 weights it uses from HBM;",
        f"- {overhead_ms:g} ms of kernel-launch and Python overhead per step and per decoded token (eager PyTorch, "
        "no CUDA graphs);",
        ("- the frozen prefix cached (memlaw's default for paper placement, trainables/prefix_cache.py): each "
         "training and certificate forward runs only the blocks from the adapter's layer up and the head; the "
         "blocks below run once per trial. Measured on CPU (SmolLM2-135M, layer 20 of 30; docs/benchmarks.md, "
         "bench/prefix_cache_step.py); `--no-prefix-cache` prices every forward through all blocks. PEFT "
         "placement (LoRA on every layer) gains nothing from the cache: its first adapted layer is layer 0;" if cached else "- every forward through all blocks (`--no-prefix-cache`);"),
        f"- S = ℓ + {PROMPT_TOKENS} prompt tokens; {STEPS} steps, batch 1; the certificate every {CERT_EVERY} steps; "
        "greedy decoding of ℓ tokens once at the end; the formulas are in the script's docstring;",
        "- memory: bf16 weights + saved activations of the blocks above the adapter (34·S·d bytes per block, "
        "flash attention) + fp32 logits and their gradient. Lengths whose estimate exceeds a GPU's memory need "
        "activation checkpointing or a larger GPU; each model's section names the lengths that do not fit the "
        f"{A10G_GB:g} GB A10G of cluster.yaml's g5 GPU nodes.",
        "",
        *sections,
        "## Both sweeps",
        "",
        "Together: " + ", ".join(f"{both[g.name]:.0f} GPU-hours on {g.name}" for g in GPUS) + ". Trials are "
        "independent: with k GPUs the wall time is about the total divided by k, bounded below by the longest "
        "trial (ℓ = 10k).",
        "",
        f"{'Without' if cached else 'With'} the frozen-prefix cache (`prefix_cache: {str(not cached).lower()}`) the "
        "same count gives " + ", ".join(f"{both_other[g.name]:.0f} GPU-hours on {g.name}" for g in GPUS) + ". The "
        "base model is loaded once per Ray worker and reused by its next trials (trainables/model.py BASES), so "
        "the 80 trials of a sweep on k GPUs pay about k loads of the 16 GB of bf16 weights instead of 80; that "
        "time is not in the figures above. No GPU was lent to the session that made these changes (issue 18): "
        "the GPU check it asks for (a random-init model of Qwen3-8B's config in bf16, paper placement, ℓ = 512 "
        "and 4096, tokens/s and peak memory with and without the cache, achieved FLOP/s against the bf16 peak) "
        "has not been run; the CPU measurements behind the cache and the base reuse are in docs/benchmarks.md "
        "(bench/prefix_cache_step.py, bench/sweep_base_reuse.py).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=0.35, help="model FLOP utilisation where compute-bound")
    parser.add_argument("--overhead-ms", type=float, default=15.0, help="fixed cost per step and per decoded token")
    parser.add_argument("--no-prefix-cache", action="store_true",
                        help="price every forward through all blocks (a trial with prefix_cache: false)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "paper_scale.md"))
    args = parser.parse_args()
    text = render(args.mfu, args.overhead_ms, cached=not args.no_prefix_cache)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
