"""MemFT: per-token loss weights that move the training budget to tokens not yet learned.

Notation (docs/science.md §3)
    B, T      batch rows and padded target length; all tensors below are [B, T]
    L_t       per-token cross-entropy of target token t (nats); p_t = exp(-L_t)
    mask      True on real target tokens (False on padding)
    m         threshold margin >= 0: a token is learned only when p_t > 0.5 + m,
              i.e. when L_t < τ with τ = -ln(0.5 + m)  (τ = ln 2 at m = 0)
    S, A      sub-threshold set {L_t >= τ} and learned set {L_t < τ}, both within mask
    T         number of real target tokens of the step's batch (Σ mask)
    λ         mixing weight in [0, 1] (`method.mix`)
    w_t       weight of token t; the loss is Σ w_t L_t, with no gradient through w

    w = (1 - λ) · w_SFT + λ · w_OT(m),   w_SFT = mask / T,   w_OT(m) = 1[t in S] / |S|

λ = 0 is SFT exactly (1.0 · x + 0.0 · y is x in floating point, so the loss is SFT's bit for bit);
λ = 1 is MemFT-OT at margin m. The share of the weight on S is |S|/T + λ (1 - |S|/T): never below
SFT's, so a learned token never weighs more than under SFT. When S is empty, w_OT is the plain mean
(`when_all_learned: mean`) or zero (`skip`: w = (1 - λ) w_SFT, summing to 1 - λ; at λ = 1 nothing is
left and the step's update is skipped, the official trainer's zero_bp).

The sliding-window variant (MemFT-SW, one long sample) weights token t by
σ(κ(L_t - ln 2)) times a position factor around the anchor a (the first teacher-forced argmax
error): 1 before a, exp(-(t - a)/decay) inside [a, a + W), `beyond` after, with W = window · e and
e growing while the anchor stalls (by default as the official trainer: by `growth` at every step
once the anchor has stalled `patience` steps; `WindowState.update`).

The curriculum trains on a growing prefix of a seeded order, stage k of K holding ⌈N (k + 1)/K⌉
sequences. Schedule "epochs" (official): stage k lasts E epochs over its pool (boundaries at epochs
20, 40, 60, 80 for K = 5, E = 20) and the full set takes the rest; "equal": K equal shares of the
step budget. All functions here are pure torch and run without gradients; which method uses which
of them, and with which knobs, is the table in trainables/methods.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch


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
def ot_weights(losses: torch.Tensor, mask: torch.Tensor, margin: float, empty: str = "mean") -> torch.Tensor:
    """MemFT-OT at margin m: 1/|S| on the sub-threshold set S, 0 elsewhere. With S empty: the plain
    mean (`empty="mean"`) or all zeros (`empty="skip"`)."""
    sub = mask & (losses >= learned_threshold(margin))
    n_sub = int(sub.sum())
    if n_sub == 0:
        return mean_weights(mask) if empty == "mean" else torch.zeros_like(losses, dtype=torch.float32)
    return sub.to(torch.float32) / n_sub


@torch.no_grad()
def mixed_weights(losses: torch.Tensor, mask: torch.Tensor, margin: float, mix: float,
                  empty: str = "mean") -> torch.Tensor:
    """w = (1 - λ) · w_SFT + λ · w_OT(m); sums to 1, or to 1 - λ when S is empty and `empty="skip"`."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    return (1.0 - mix) * mean_weights(mask) + mix * ot_weights(losses, mask, margin, empty)


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

    def update(self, seq: int, anchor: int | None, growth: float, max_expansion: float, patience: int,
               rule: str = "every_step") -> float:
        """Record this step's anchor for `seq` and return the window expansion e to use now.

        rule "every_step" (the official trainer): once the anchor has stalled `patience` steps, e grows
        by `growth` at every further stalled step. "per_patience": e grows once per `patience` stalled
        steps (the stall counter restarts after each growth). Both cap e at `max_expansion` and reset it
        to 1 when the anchor moves or the sequence has no error."""
        if anchor is None or self.anchor.get(seq) != anchor:
            self.anchor[seq] = -1 if anchor is None else anchor
            self.stall[seq] = 0
            self.expansion[seq] = 1.0
            return 1.0
        self.stall[seq] = self.stall.get(seq, 0) + 1
        if self.stall[seq] >= patience:
            self.expansion[seq] = min(self.expansion.get(seq, 1.0) + growth, max_expansion)
            if rule == "per_patience":
                self.stall[seq] = 0
        return self.expansion.get(seq, 1.0)


class WindowKnobs(Protocol):
    """MemFT-SW's knobs as the weights read them, named as in the notation above. The values (and
    their defaults, in one home) are trainables/methods.py's WindowKnobs, built from MethodConfig's
    `sw_<name>` fields: the weights need not know the trial's config."""

    kappa: float
    window: int
    decay: float
    beyond: float
    growth: float
    max_expansion: float
    patience: int
    growth_rule: str


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
        e = state.update(seq, a if has_error else None, knobs.growth, knobs.max_expansion, knobs.patience,
                         knobs.growth_rule)
        if has_error:
            factor = position_factor(losses.shape[1], a, knobs.window * e, knobs.decay, knobs.beyond)
            weights[row] = base[row] * factor.to(base.device)
    total = weights.sum()
    if float(total) < SW_MIN_TOTAL:
        return mean_weights(mask)
    return weights / total


def curriculum_size(step: int, total_steps: int, stages: int, n: int) -> int:
    """Schedule "equal": sequences active at `step`, a growing prefix, 1/stages, 2/stages, ... of the
    data (>= 1), over `stages` equal shares of the step budget."""
    stage = min(stages - 1, (step * stages) // total_steps)
    return max(1, math.ceil(n * (stage + 1) / stages))


def curriculum_stage_start(step: int, total_steps: int, stages: int) -> int:
    """Schedule "equal": the first step of the stage that `step` lies in (batches are drawn per stage)."""
    stage = min(stages - 1, (step * stages) // total_steps)
    return -(-stage * total_steps // stages)


def stage_size(stage: int, stages: int, n: int) -> int:
    """Sequences in stage k (0-based) of K: the first ⌈n (k + 1) / K⌉ of the order (>= 1)."""
    return max(1, math.ceil(n * (stage + 1) / stages))


def steps_per_epoch(pool_size: int, batch_size: int | None) -> int:
    """Optimizer steps in one pass over a pool: 1 for full-batch training."""
    return 1 if batch_size is None or batch_size >= pool_size else -(-pool_size // batch_size)


def epoch_curriculum(step: int, stages: int, stage_epochs: int, n: int, batch_size: int | None) -> tuple[int, int]:
    """Schedule "epochs" (the official trainer): stage k of K lasts `stage_epochs` epochs over its own
    pool, and the last stage (the full set) takes the rest of the budget. With K = 5 and 20 epochs the
    boundaries are at epochs 20, 40, 60, 80. Returns (pool size, the stage's first step)."""
    start = 0
    for k in range(stages - 1):
        size = stage_size(k, stages, n)
        length = stage_epochs * steps_per_epoch(size, batch_size)
        if step < start + length:
            return size, start
        start += length
    return n, start


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
