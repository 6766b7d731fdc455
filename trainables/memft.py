"""MemFT: per-token loss weights that move the training budget to tokens not yet learned.

Notation (docs/science.md §3)
    B, T      batch rows and padded target length; all tensors below are [B, T]
    L_t       per-token cross-entropy of target token t (nats); p_t = exp(-L_t)
    mask      True on real target tokens (False on padding)
    m         threshold margin >= 0: a token is learned only when p_t > 0.5 + m,
              i.e. when L_t < τ with τ = -ln(0.5 + m)  (τ = ln 2 at m = 0)
    S, A      sub-threshold set {L_t >= τ} and learned set {L_t < τ}, both within mask
    ρ         budget ratio: share of the total weight given to S; A gets 1 - ρ
    w_t       weight of token t; the loss is Σ w_t L_t / Σ w_t, with no gradient through w

Special cases: ρ = 1 is MemFT-OT (only sub-threshold tokens train); ρ = |S|/T gives every token
1/T, which is plain fine-tuning (SFT). When one of S and A is empty the other takes all the weight;
when S is empty and the caller asked to skip, the step's update is skipped instead.

The sliding-window variant (MemFT-SW, one long sample) weights token t by
σ(κ(L_t - ln 2)) times a position factor around the anchor a (the first teacher-forced argmax
error): 1 before a, exp(-(t - a)/decay) inside [a, a + W), `beyond` after, with W = window · e and
e growing while the anchor stalls. All functions here are pure torch and run without gradients;
which method uses which of them, and with which knobs, is the table in trainables/methods.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from trainables.methods import MethodConfig

LN2 = math.log(2.0)
SW_MIN_TOTAL = 1e-5  # below this total weight, MemFT-SW falls back to the plain mean


def learned_threshold(margin: float) -> float:
    """τ: a token is learned when its loss is below τ = -ln(0.5 + margin)."""
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"threshold_margin must be in [0, 0.5), got {margin}")
    return -math.log(0.5 + margin)


def mean_weights(mask: torch.Tensor) -> torch.Tensor:
    """Plain fine-tuning: every real target token weighs 1/T."""
    m = mask.to(torch.float32)
    return m / m.sum().clamp_min(1.0)


@torch.no_grad()
def budget_weights(losses: torch.Tensor, mask: torch.Tensor, margin: float, ratio: float) -> torch.Tensor:
    """Weights with share ρ on the sub-threshold set S and 1 - ρ on the learned set A (sum to 1)."""
    tau = learned_threshold(margin)
    sub = mask & (losses >= tau)
    learned = mask & ~sub
    n_sub, n_learned = int(sub.sum()), int(learned.sum())
    if n_sub == 0 or n_learned == 0:
        return mean_weights(mask)
    w_sub = ratio / n_sub
    w_learned = (1.0 - ratio) / n_learned
    return sub.to(torch.float32) * w_sub + learned.to(torch.float32) * w_learned


def any_subthreshold(losses: torch.Tensor, mask: torch.Tensor, margin: float) -> bool:
    return bool((mask & (losses >= learned_threshold(margin))).any())


def first_false(flags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, the first masked position where `flags` is False; the row's length if none. [B]"""
    bad = mask & ~flags
    lengths = mask.sum(dim=1)
    t = torch.arange(flags.shape[1], device=flags.device).expand_as(flags)
    big = torch.full_like(t, flags.shape[1] + 1)
    first = torch.where(bad, t, big).min(dim=1).values
    return torch.where(first > flags.shape[1], lengths, first)


@dataclass
class WindowState:
    """MemFT-SW's memory across steps, per sequence id: the last anchor, stall count, expansion."""

    anchor: dict[int, int] = field(default_factory=dict)
    stall: dict[int, int] = field(default_factory=dict)
    expansion: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"anchor": self.anchor, "stall": self.stall, "expansion": self.expansion}

    @classmethod
    def from_dict(cls, d: dict) -> WindowState:
        def keyed(m):
            return {int(k): v for k, v in m.items()}

        return cls(keyed(d["anchor"]), keyed(d["stall"]), keyed(d["expansion"]))

    def update(self, seq: int, anchor: int | None, growth: float, max_expansion: float, patience: int) -> float:
        """Record this step's anchor for `seq` and return the window expansion e to use now."""
        if anchor is None or self.anchor.get(seq) != anchor:
            self.anchor[seq] = -1 if anchor is None else anchor
            self.stall[seq] = 0
            self.expansion[seq] = 1.0
            return 1.0
        self.stall[seq] = self.stall.get(seq, 0) + 1
        if self.stall[seq] >= patience:
            self.expansion[seq] = min(self.expansion.get(seq, 1.0) + growth, max_expansion)
            self.stall[seq] = 0
        return self.expansion.get(seq, 1.0)


_DEFAULT = MethodConfig()  # the sw_* defaults live in MethodConfig only


@dataclass(frozen=True)
class WindowKnobs:
    """MemFT-SW's knobs, named as in the notation above; MethodConfig's `sw_<name>` fields."""

    kappa: float = _DEFAULT.sw_kappa
    window: int = _DEFAULT.sw_window
    decay: float = _DEFAULT.sw_decay
    beyond: float = _DEFAULT.sw_beyond
    growth: float = _DEFAULT.sw_growth
    max_expansion: float = _DEFAULT.sw_max_expansion
    patience: int = _DEFAULT.sw_patience

    @classmethod
    def of(cls, method: MethodConfig) -> WindowKnobs:
        """The knobs a trial's method section sets."""
        return cls(**{f.name: getattr(method, f"sw_{f.name}") for f in fields(cls)})


def position_factor(length: int, anchor: int, width: float, decay: float, beyond: float) -> torch.Tensor:
    """1 before the anchor, exp(-(t - a)/decay) inside [a, a + width), `beyond` after. [length]"""
    t = torch.arange(length, dtype=torch.float32)
    inside = torch.exp(-(t - anchor) / decay)
    factor = torch.where(t < anchor, torch.ones_like(t), inside)
    return torch.where(t >= anchor + width, torch.full_like(t, beyond), factor)


@torch.no_grad()
def sliding_window_weights(losses: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor,
                           seq_ids: list[int], state: WindowState, knobs: WindowKnobs) -> torch.Tensor:
    """MemFT-SW weights, normalized to sum 1; plain mean if the raw total is below 1e-5."""
    base = torch.sigmoid(knobs.kappa * (losses.float() - LN2)) * mask
    anchors = first_false(correct, mask)
    lengths = mask.sum(dim=1)
    weights = base.clone()
    for row, seq in enumerate(seq_ids):
        a = int(anchors[row])
        has_error = a < int(lengths[row])
        e = state.update(seq, a if has_error else None, knobs.growth, knobs.max_expansion, knobs.patience)
        if has_error:
            factor = position_factor(losses.shape[1], a, knobs.window * e, knobs.decay, knobs.beyond)
            weights[row] = base[row] * factor.to(base.device)
    total = weights.sum()
    if float(total) < SW_MIN_TOTAL:
        return mean_weights(mask)
    return weights / total


def curriculum_size(step: int, total_steps: int, stages: int, n: int) -> int:
    """Sequences active at `step`: a growing prefix, 1/stages, 2/stages, ... of the data (>= 1)."""
    stage = min(stages - 1, (step * stages) // total_steps)
    return max(1, math.ceil(n * (stage + 1) / stages))


def curriculum_stage_start(step: int, total_steps: int, stages: int) -> int:
    """The first step of the stage that `step` lies in (batches are drawn per stage)."""
    stage = min(stages - 1, (step * stages) // total_steps)
    return -(-stage * total_steps // stages)


def batch_for_step(step: int, pool: np.ndarray, batch_size: int | None, seed: int, start_step: int = 0) -> np.ndarray:
    """The sequence ids of `step`'s batch: epochs of seeded permutations over `pool`.

    Stateless in the step, so a resumed trial draws exactly the batches it would have drawn.
    """
    if batch_size is None or batch_size >= len(pool):
        return pool
    per_epoch = -(-len(pool) // batch_size)
    epoch, k = divmod(step - start_step, per_epoch)
    perm = np.random.default_rng([seed, len(pool), epoch]).permutation(pool)
    return perm[k * batch_size:(k + 1) * batch_size]
