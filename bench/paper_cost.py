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
changes the cost by the adapter's FLOPs only, so each length costs 10 identical trials. The formulas
live in orchestrator/law/trial_cost.py, where the adaptive design prices its candidates by them.

The document also prices the paper's own 16 × 13 grid (search space law_grid_paper_full) and gives what
the cost-aware adaptive design is expected to spend on each grid: the distribution that
bench/adaptive_vs_grid.py measured on its paper-size oracle, read from --adaptive (the JSON of
bench/run_all.py, docs/benchmarks.json, or the bench's own --json line saved to a file). Hand-written
blocks of the existing document between "<!-- BEGIN" and "<!-- END" lines are kept, at the end.

    python bench/paper_cost.py [--mfu 0.35] [--overhead-ms 15] [--adaptive docs/benchmarks.json]
                               [--out docs/paper_scale.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable without an install

from orchestrator.law import trial_cost  # noqa: E402  the formulas (the adaptive design prices trials by them)

HF_CONFIGS = ROOT / "tests" / "data" / "hf_configs"
PROMPT_TOKENS = 8  # data.prompt_tokens default
STEPS, CERT_EVERY = 2000, 200
RANKS = 10  # 1..512
LOGIT_BYTES = 4  # the loss upcasts logits to fp32
A10G_GB = 24.0  # cluster.yaml's gpu.spot.* nodes (g5: NVIDIA A10G)


@dataclass(frozen=True)
class Model(trial_cost.ModelShape):
    """A paper model's shape (orchestrator/law/trial_cost.py, the cost model's one place) and the
    example sweep that runs it."""

    sweep_file: str = ""


GPU = trial_cost.GPU
GPUS = (trial_cost.H100, trial_cost.H200)


def load_model(folder: str, adapter_layer: int, sweep_file: str, cached: bool = True) -> Model:
    c = json.loads((HF_CONFIGS / folder / "config.json").read_text())
    shape = Model.from_hf_config(c, adapter_layer, cached, name=folder.replace("--", "/"))
    return replace(shape, sweep_file=sweep_file)


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
    return trial_cost.forward_flops(m, s, layers)


def step_flops(m: Model, s: int) -> float:
    return trial_cost.step_flops(m, s)


def step_seconds(m: Model, s: int, gpu: GPU, mfu: float, overhead_s: float) -> float:
    return trial_cost.step_seconds(m, s, gpu, mfu, overhead_s)


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
    """Training, the certificate every `every` steps, the cached prefix once, greedy decoding of ℓ tokens."""
    return trial_cost.trial_seconds(m, ell, gpu, mfu, overhead_s, steps, every, PROMPT_TOKENS) / 3600.0


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


def full_grid_section(mfu: float, overhead_s: float, cached: bool) -> tuple[list[str], float]:
    """The paper's own 16 × 13 Qwen3-8B grid, per length; returns its lines and its H100 GPU-hours."""
    from search_spaces.law_grid import PAPER_FULL_LENGTHS, PAPER_FULL_RANKS

    m = load_model(*MODELS[0], cached=cached)
    ranks, lengths = PAPER_FULL_RANKS, PAPER_FULL_LENGTHS
    lines = ["## The paper's own grid: 16 ranks × 13 lengths (`space: law_grid_paper_full`)", "",
             "The official repository's Qwen3-8B long-context SFT sweep on random tokens (docs/long_context_benchmark.md "
             "of github.com/zjunlp/ParametricMemoryLaw): ranks " + ", ".join(map(str, ranks)) + " × lengths "
             + ", ".join(map(str, lengths)) + f" = {len(ranks) * len(lengths)} trials, priced as above ({m.name}).",
             "", "| ℓ | " + " | ".join(f"{g.name} s / step" for g in GPUS) + " | "
             + " | ".join(f"{g.name} GPU-h per length ({len(ranks)} ranks)" for g in GPUS) + " |",
             "|---|" + "---|" * (2 * len(GPUS))]
    totals = {g.name: 0.0 for g in GPUS}
    for ell in lengths:
        hours = [len(ranks) * trial_hours(m, ell, g, mfu, overhead_s, STEPS, CERT_EVERY) for g in GPUS]
        for g, h in zip(GPUS, hours):
            totals[g.name] += h
        lines.append(f"| {ell} | " + " | ".join(f"{step_seconds(m, ell + PROMPT_TOKENS, g, mfu, overhead_s):.3f}"
                                              for g in GPUS) + " | " + " | ".join(f"{h:.2f}" for h in hours) + " |")
    lines += ["", "**The full grid: " + ", ".join(f"{totals[g.name]:.1f} GPU-hours on {g.name}" for g in GPUS)
              + ".**", ""]
    return lines, totals[GPUS[0].name]


ADAPTIVE_GRIDS = (("paper", "the paper's 16 × 13 (Qwen3-8B)"), ("qwen_example", "`examples/paper_qwen3_8b.yaml`"),
                  ("llama_example", "`examples/paper_llama31_8b.yaml`"))


def load_adaptive(path: Path) -> tuple[dict, str] | None:
    """The paper-size results of bench/adaptive_vs_grid.py and the command that made them, or None."""
    try:
        text = path.read_text()
        data = json.loads(text if path.suffix == ".json" else text.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
    if "outcomes" in data:  # bench/run_all.py's JSON
        outcome = next((o for o in data["outcomes"] if o.get("script") == "adaptive_vs_grid.py"), None)
        if outcome is None:
            return None
        data, command = outcome.get("result", {}), outcome.get("command", "python bench/adaptive_vs_grid.py")
    else:
        command = "python bench/adaptive_vs_grid.py --json"
    paper = data.get("details", {}).get("paper")
    return (paper, command) if paper else None


def adaptive_section(found: tuple[dict, str] | None) -> list[str]:
    """What the cost-aware adaptive design is expected to spend on each grid, from the benchmark."""
    lines = ["## What a cost-aware adaptive sweep is expected to cost", ""]
    if found is None:
        return lines + ["No benchmark results found: run `python bench/adaptive_vs_grid.py --json` (or "
                        "`bench/run_all.py`) and regenerate with `--adaptive`.", ""]
    paper, command = found
    run, _, note = command.partition(" (")
    lines += [
        f"Simulated, not measured: `{run}`{f' ({note}' if note else ''} runs the adaptive design (`search: {{kind: adaptive}}`, "
        "orchestrator/law/adaptive_design.py) against orchestrator/law/paper_oracle.py, a sweep that answers each "
        "(r, ℓ) from the paper's exponents (α 0.78, β 0.62, with the capacity edge through the middle of the "
        "grid), multiplicative noise, saturation below ln 2 and the H100 trial times above. Per oracle seed the "
        "full grid is fitted first, and the design stops once both 95 % interval widths are at most k times the "
        "grid's own (k = 1.25 and 1): the GPU-hours it spent are a distribution over seeds, given as the median "
        "and the 10th-90th percentiles. \"1 at once\" proposes after each result; \"16 at once\" keeps 16 trials "
        "running, as the examples' `max_concurrency: 16` does. docs/science.md §8 has the design and what the "
        "simulation leaves out (derived step times, every trial settled, no failures).", "",
        "| sweep | noise | grid: trials, H100 GPU-h | grid's widths α / β (median) | adaptive at 1.25× widths: "
        "GPU-h, median [q10, q90] | ratio | trials | at 1×: GPU-h, median [q10, q90] | ratio | reached 1× |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for key, label in ADAPTIVE_GRIDS:
        for noise, summary in (paper.get(key) or {}).items():
            g = summary["grid"]
            for arm in [a for a in summary.get("arms", ["adaptive"]) if a in ("adaptive", "adaptive x16")]:
                loose, tight = summary[f"1.25|{arm}"], summary[f"1|{arm}"]
                at_once = "16 at once" if arm.endswith("x16") else "1 at once"
                lines.append(
                    f"| {label}, {at_once} | {float(noise):.0%} | {g['trials']}, {g['gpu_h']:.1f} | "
                    f"{g['alpha_width_q'][2]:.3f} / {g['beta_width_q'][2]:.3f} | "
                    f"{loose['gpu_h_q'][2]:.1f} [{loose['gpu_h_q'][0]:.1f}, {loose['gpu_h_q'][4]:.1f}] | "
                    f"{loose['gpu_h_ratio_q'][2]:.2f}x | {loose['trials_q'][2]:.0f} | "
                    f"{tight['gpu_h_q'][2]:.1f} [{tight['gpu_h_q'][0]:.1f}, {tight['gpu_h_q'][4]:.1f}] | "
                    f"{tight['gpu_h_ratio_q'][2]:.2f}x | {tight['reached']}/{tight['seeds']} |")
    lines += ["", "To run a grid adaptively, keep its space and set the search: `search: {kind: adaptive, alpha_tol: "
              "0.05, beta_tol: 0.05, cost_budget_hours: 8}` stops when both widths are met or when the trials' "
              "GPU-hours (measured where finished, FLOP-derived where running) would pass 8. The widths a full grid "
              "reaches depend on the noise, as the table shows; choose the tolerances you need, not the grid's. With 16 "
              "trials at once each proposal is chosen before the 15 others report (16 points are a fifth of an "
              "80-point grid), and a rule met while others still run pays for them too, so on the example grids it saves far less than "
              "one at a time; lower `max_concurrency` where GPU-hours matter more than wall time. The design's "
              "intervals cover the true exponents less often than the full grid's on the small grids (optional "
              "stopping; docs/science.md §8, docs/benchmarks.md).", ""]
    return lines


def keep_hand_written(old: str) -> list[str]:
    """Blocks of the existing document between "<!-- BEGIN" and "<!-- END" lines, verbatim."""
    blocks, block = [], None
    for line in old.splitlines():
        if line.startswith("<!-- BEGIN"):
            block = [line]
        elif block is not None:
            block.append(line)
            if line.startswith("<!-- END"):
                blocks += [*block, ""]
                block = None
    return blocks


def render(mfu: float, overhead_ms: float, cached: bool = True, adaptive: tuple[dict, str] | None = None,
           kept: list[str] | None = None) -> str:
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
        *full_grid_section(mfu, overhead_ms / 1e3, cached)[0],
        *adaptive_section(adaptive),
        *(kept or []),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=0.35, help="model FLOP utilisation where compute-bound")
    parser.add_argument("--overhead-ms", type=float, default=15.0, help="fixed cost per step and per decoded token")
    parser.add_argument("--no-prefix-cache", action="store_true",
                        help="price every forward through all blocks (a trial with prefix_cache: false)")
    parser.add_argument("--adaptive", default=str(ROOT / "docs" / "benchmarks.json"),
                        help="bench/adaptive_vs_grid.py's results: bench/run_all.py's JSON or the bench's --json line")
    parser.add_argument("--out", default=str(ROOT / "docs" / "paper_scale.md"))
    args = parser.parse_args()
    out = Path(args.out)
    kept = keep_hand_written(out.read_text()) if out.is_file() else []
    text = render(args.mfu, args.overhead_ms, cached=not args.no_prefix_cache,
                  adaptive=load_adaptive(Path(args.adaptive)), kept=kept)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
