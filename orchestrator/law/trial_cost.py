"""What one law trial costs, in GPU-seconds, at a point (r, ℓ): the denominator of the adaptive design.

Why: the trials of a law grid differ in cost by more than an order of magnitude. On Qwen3-8B a trial at
ℓ = 10,000 runs about 14× longer than one at ℓ = 500 (step time grows with the sequence, and the fixed
per-step overhead stops mattering), so a design that counts trials misjudges the GPU bill, and one
that spends the bill well must know the price of each candidate before it runs it
(orchestrator/law/adaptive_design.py scores information per second of this model). Pure numpy: no
torch, no Ray; the Tune side reads the model's config and hands the shape in.

Three models share one interface, CostModel.seconds(points) -> (k,) seconds:
  UniformCost   every trial alike: the cost-blind design (today's trial count)
  FlopCost      derived from FLOP and byte counts of the model's shape (the formulas below, which
                bench/paper_cost.py also prints for docs/paper_scale.md)
  MeasuredCost  a prior corrected by the seconds that finished trials took: at a measured ℓ the
                measurement itself, between measured lengths the prior times the ratio interpolated in
                ln ℓ, beyond them the prior times the nearest measured ratio

Notation (one trial, batch 1, frozen bf16 base, one adapter on block a of L; k candidate points)
  r, ℓ       LoRA rank, target tokens of a candidate (the rank moves the cost only through the
             adapter's 4·d·r·S FLOPs: negligible, so every model here prices ℓ alone)
  S          ℓ + prompt tokens, tokens per training step
  d, V       hidden size, vocabulary size
  N_b        parameters of one block: q and o (d·h·h_d each), k and v (d·h_kv·h_d each), the gated
             MLP (3·d·d_ff)
  F_fwd(S,n) forward FLOPs of n blocks and the LM head: n·(2·N_b·S + 2·S²·h·h_d) + 2·d·V·S
  n_fwd      blocks each forward runs: L − a with the frozen prefix cached, else L
  F_step     F_fwd(S, n_fwd) + F_fwd(S, L − a): the forward, and the backward through the blocks above
             the adapter and the head (frozen weights get no weight gradient)
  B_step     bytes a step reads: bf16 weights of n_fwd + (L − a) blocks and of the embedding and head
  t_step     max(F_step / (peak · mfu), B_step / bandwidth) + overhead            seconds
  T(ℓ)       steps · t_step + (steps / every) certificate forwards + the cached prefix once + greedy
             decoding of ℓ tokens (each token reads every weight once)            seconds per trial
  c          (k,) predicted seconds per candidate: what CostModel.seconds returns
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

#: data.prompt_tokens' default (trainables/config.py): the key before every random target.
PROMPT_TOKENS = 8


@dataclass(frozen=True)
class ModelShape:
    """A decoder's shape as its config.json gives it, with the adapter's block."""

    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    adapter_layer: int
    cached: bool = True
    """The frozen prefix below the adapter computed once per trial (trainables/prefix_cache.py)."""

    def __post_init__(self) -> None:
        sizes = {k: getattr(self, k) for k in ("hidden", "layers", "intermediate", "heads", "kv_heads", "head_dim",
                                               "vocab")}
        bad = {k: v for k, v in sizes.items() if not (isinstance(v, int) and v > 0)}
        if bad:
            raise ValueError(f"model shape sizes must be positive integers, got {bad}")
        if not 0 <= self.adapter_layer < self.layers:
            raise ValueError(f"adapter_layer must be in [0, {self.layers - 1}], got {self.adapter_layer}")

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], adapter_layer: int | None = None, cached: bool = True,
                       name: str = "") -> ModelShape:
        """From a Hugging Face config.json mapping; the adapter defaults to block ⌊2L/3⌋ (docs/science.md §4)."""
        hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
        heads = int(config.get("num_attention_heads") or 1)
        head_dim = int(config.get("head_dim") or hidden // heads)
        return cls(name or str(config.get("_name_or_path") or config.get("model_type") or "model"), hidden, layers,
                   int(config.get("intermediate_size") or 4 * hidden), heads,
                   int(config.get("num_key_value_heads") or heads), head_dim, int(config["vocab_size"]),
                   (2 * layers) // 3 if adapter_layer is None else int(adapter_layer), cached)

    @property
    def forward_layers(self) -> int:
        """Blocks each training and certificate forward runs: from the adapter up when cached."""
        return self.layers - self.adapter_layer if self.cached else self.layers

    @property
    def block_params(self) -> float:
        attention = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        return attention + 3 * self.hidden * self.intermediate

    @property
    def total_params(self) -> float:
        return self.layers * self.block_params + 2 * self.vocab * self.hidden  # untied embedding and head


@dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float
    """Dense bf16 tensor-core FLOP/s (vendor figure)."""
    bandwidth: float
    """HBM bytes/s."""
    memory_gb: float


H100 = GPU("H100 SXM", 989e12, 3.35e12, 80)
H200 = GPU("H200", 989e12, 4.8e12, 141)

#: The paper's two bases with their adapter blocks (docs/science.md §4), from their published
#: config.json (copied in tests/data/hf_configs/; tests/test_paper_oracle.py checks they agree).
QWEN3_8B = ModelShape("Qwen/Qwen3-8B", 4096, 36, 12288, 32, 8, 128, 151936, 24)
LLAMA31_8B = ModelShape("meta-llama/Llama-3.1-8B-Instruct", 4096, 32, 14336, 32, 8, 128, 128256, 18)


def forward_flops(m: ModelShape, s: int, layers: int) -> float:
    """F_fwd(S, n): `layers` blocks plus the LM head on S tokens (causal attention)."""
    attention = 2.0 * s * s * m.heads * m.head_dim
    return layers * (2.0 * m.block_params * s + attention) + 2.0 * m.hidden * m.vocab * s


def step_flops(m: ModelShape, s: int) -> float:
    return forward_flops(m, s, m.forward_layers) + forward_flops(m, s, m.layers - m.adapter_layer)


def step_seconds(m: ModelShape, s: int, gpu: GPU, mfu: float, overhead_s: float) -> float:
    """t_step: compute-bound or weight-read-bound, whichever is slower, plus the fixed overhead."""
    above = m.layers - m.adapter_layer
    weight_bytes = 2.0 * (m.forward_layers + above) * m.block_params + 2 * 2.0 * m.vocab * m.hidden
    return max(step_flops(m, s) / (gpu.peak_flops * mfu), weight_bytes / gpu.bandwidth) + overhead_s


def trial_seconds(m: ModelShape, ell: int, gpu: GPU, mfu: float, overhead_s: float, steps: int, every: int,
                  prompt_tokens: int = PROMPT_TOKENS) -> float:
    """T(ℓ): training, the certificate every `every` steps, the cached prefix once, greedy decoding of ℓ."""
    s = int(ell) + prompt_tokens
    train = steps * step_seconds(m, s, gpu, mfu, overhead_s)
    certificate = (steps // every) * (forward_flops(m, s, m.forward_layers) / (gpu.peak_flops * mfu) + overhead_s)
    if m.cached:
        certificate += forward_flops(m, s, m.adapter_layer) / (gpu.peak_flops * mfu) + overhead_s
    greedy = int(ell) * (2.0 * m.total_params / gpu.bandwidth + overhead_s)
    return train + certificate + greedy


# -- the models --------------------------------------------------------------------------------------


class CostModel(Protocol):
    def seconds(self, points: np.ndarray) -> np.ndarray:
        """(k,) predicted seconds of a trial at each of the (k, 2) points (r, ℓ)."""
        ...


def as_points(points: Any) -> np.ndarray:
    """(k, 2) float array of (r, ℓ) from any sequence of pairs."""
    out = np.asarray(points, dtype=float).reshape(-1, 2)
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError("cost points must be positive finite (r, ℓ) pairs")
    return out


@dataclass(frozen=True)
class UniformCost:
    """Every trial costs the same: information per trial, the design as it was before costs."""

    seconds_per_trial: float = 1.0

    def __post_init__(self) -> None:
        if not self.seconds_per_trial > 0:
            raise ValueError(f"seconds_per_trial must be > 0, got {self.seconds_per_trial}")

    def seconds(self, points: Any) -> np.ndarray:
        return np.full(len(as_points(points)), float(self.seconds_per_trial))


@dataclass(frozen=True)
class FlopCost:
    """T(ℓ) from the model's shape and the trial's budget (the defaults: the paper's 2000 steps, the
    certificate every 200, an H100 at 35 % of its bf16 peak where compute-bound, 15 ms per step of
    launch and Python overhead: bench/paper_cost.py's assumptions)."""

    shape: ModelShape
    gpu: GPU = H100
    mfu: float = 0.35
    overhead_s: float = 0.015
    steps: int = 2000
    eval_every: int = 200
    prompt_tokens: int = PROMPT_TOKENS
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.mfu <= 1:
            problems.append(f"mfu must be in (0, 1], got {self.mfu}")
        if self.overhead_s < 0:
            problems.append(f"overhead_s must be >= 0, got {self.overhead_s}")
        if self.steps < 1 or self.eval_every < 1 or self.prompt_tokens < 0:
            problems.append(f"steps and eval_every must be >= 1 and prompt_tokens >= 0, got {self.steps}, "
                            f"{self.eval_every}, {self.prompt_tokens}")
        if problems:
            raise ValueError("; ".join(problems))

    def trial_seconds(self, ell: float) -> float:
        key = int(round(ell))
        if key not in self._memo:
            self._memo[key] = trial_seconds(self.shape, key, self.gpu, self.mfu, self.overhead_s, self.steps,
                                            self.eval_every, self.prompt_tokens)
        return self._memo[key]

    def seconds(self, points: Any) -> np.ndarray:
        lengths, where = np.unique(as_points(points)[:, 1], return_inverse=True)
        return np.array([self.trial_seconds(ell) for ell in lengths], dtype=float)[where.reshape(-1)]


@dataclass(frozen=True)
class MeasuredCost:
    """The prior corrected by measurements: c = prior · exp(ρ(ln ℓ)), with ρ the mean log ratio
    measured / prior at each measured length, interpolated linearly in ln ℓ between them and held
    at the nearest measured length beyond them. Exact at a measured length; the prior's shape where
    nothing was measured."""

    prior: CostModel
    lengths: tuple[float, ...]
    """Measured lengths, ascending, distinct."""
    log_ratios: tuple[float, ...]
    """Mean ln(measured / prior) at each of them."""

    def seconds(self, points: Any) -> np.ndarray:
        p = as_points(points)
        ratio = np.interp(np.log(p[:, 1]), np.log(np.array(self.lengths)), np.array(self.log_ratios))
        return np.asarray(self.prior.seconds(p), dtype=float) * np.exp(ratio)


def with_measurements(prior: CostModel, points: Iterable[Any], seconds: Iterable[Any]) -> CostModel:
    """MeasuredCost from finished trials' (r, ℓ) and their measured seconds; the prior where none is usable
    (a missing, non-finite or non-positive time is skipped)."""
    pairs = [(p, float(s)) for p, s in zip(points, seconds) if s is not None and _positive(s)]
    if not pairs:
        return prior
    pts = as_points([p for p, _ in pairs])
    logs = np.log(np.array([s for _, s in pairs])) - np.log(np.asarray(prior.seconds(pts), dtype=float))
    lengths = np.unique(pts[:, 1])
    means = [float(np.mean(logs[pts[:, 1] == ell])) for ell in lengths]
    return MeasuredCost(prior, tuple(float(v) for v in lengths), tuple(means))


def _positive(v: Any) -> bool:
    try:
        return math.isfinite(float(v)) and float(v) > 0
    except (TypeError, ValueError):
        return False
