"""How much a trial stored, in bits: honest information measures beside the paper's ΔL.

ΔL = L_init − L_final counts every nat the loss fell. On a base model that starts overconfident on
uniform random targets (L_init above the uniform code length ln |V_cand|; the tiny random-init
models and SmolLM2-135M both do) part of ΔL only undoes that overconfidence: a model that predicts
the uniform distribution has stored nothing, yet its ΔL is L_init − ln |V_cand| > 0. The measures
here count only what the target costs beyond what chance and the base model give for free
(Morris et al. 2025, "How much do language models memorize?", arXiv 2505.24832; docs/science.md §6).

Notation (docs/science.md §0, §6)
    N, T        sequences and padded target length; tensors below are [N, T] unless noted
    mask        True on real target tokens
    L_init,t    teacher-forced cross-entropy of target token t before training (nats)
    L_final,t   the same at an evaluation (nats)
    |V_cand|    how many tokens random targets are drawn from (data.random_candidates): the
                vocabulary minus special tokens; ln |V_cand| is the chance level (nats per token)
    L_ref,t     min(L_init,t, ln |V_cand|): the code length of token t without the adapter. For
                uniform random targets ln |V_cand| is what chance pays; where the base model
                pays less (text, or a base below chance), the base model is the reference.
    ℓ           real target tokens, Σ mask
    N_eff       trainable adapter parameters

    bits_above_chance   Σ_t max(0, L_ref,t − L_final,t) / ln 2                        (bits)
    certified_bits      #{t : p_t > 0.5} · log2 |V_cand|, p_t = exp(−L_final,t)       (bits)
    drop_below_chance   mean_t L_ref,t − mean_t L_final,t: the law's alternative response (nats/token)
    D_ref               mean_t L_ref,t − ln 2: the drop that takes the mean final loss to ln 2 (nats/token)

Why these are sound for uniform random targets: a token drawn uniformly from V_cand carries exactly
log2 |V_cand| bits, so no model can compress it below that without having stored it; a final code
length L_final,t < ln |V_cand| therefore saves L_ref,t − L_final,t nats that only the adapter can
hold, and a token with p_t > 0.5 is recalled (docs/science.md §2), so it holds its full
log2 |V_cand| bits. Tokens the trial ended *above* their reference contribute 0, not a negative.
For text targets bits_above_chance counts what the adapter added beyond the base model's own code
(the base model is the reference model of Morris et al.); certified_bits then overstates, because
a text token carries less than log2 |V_cand| bits: read it only for random targets.

Pure math on torch tensors (methods only, so importing this module imports no torch: the law fit,
which reads OVERCONFIDENCE_MARGIN, stays torch-free); no model, no Ray. Tested against hand
computations in tests/test_information.py.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LN2 = math.log(2.0)
#: A fit says its exponents are not comparable with runs that start at chance when the mean L_init
#: exceeds the chance level ln |V_cand| by more than this many nats per token.
OVERCONFIDENCE_MARGIN = 0.1


def chance_level(n_candidates: int) -> float:
    """ln |V_cand|: nats per token of the uniform code over the candidate tokens."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
    return math.log(n_candidates)


def reference_losses(init_losses: torch.Tensor, n_candidates: int) -> torch.Tensor:
    """L_ref,t = min(L_init,t, ln |V_cand|), [N, T] (padding stays whatever init_losses holds there)."""
    return init_losses.clamp(max=chance_level(n_candidates))


def bits_above_chance(init_losses: torch.Tensor, final_losses: torch.Tensor, mask: torch.Tensor,
                      n_candidates: int) -> float:
    """Σ_t max(0, L_ref,t − L_final,t) / ln 2 over real target tokens (bits)."""
    saved = (reference_losses(init_losses, n_candidates) - final_losses).clamp(min=0.0)
    return float((saved * mask).sum()) / LN2


def certified_bits(certified_tokens: int, n_candidates: int) -> float:
    """#{t : p_t > 0.5} · log2 |V_cand| (bits): tokens greedy decoding provably recalls, at full price."""
    return certified_tokens * chance_level(n_candidates) / LN2


def per_param(bits: float, trainable_params: int) -> float:
    """bits / N_eff (bits per adapter parameter)."""
    return bits / max(trainable_params, 1)


def mean_reference_loss(init_losses: torch.Tensor, mask: torch.Tensor, n_candidates: int) -> float:
    """mean_t L_ref,t over real target tokens, pooled (nats per token)."""
    ref = reference_losses(init_losses, n_candidates) * mask
    return float(ref.sum() / mask.sum().clamp_min(1))


def required_drop(loss_ref: float) -> float:
    """D_ref = mean L_ref − ln 2: the loss drop that brings the mean final loss to the certificate's
    threshold, counted from the reference rather than from an overconfident L_init (nats/token)."""
    return loss_ref - LN2


def overconfidence(loss_init: float, chance: float) -> float:
    """How far the mean initial loss sits above the chance level (nats/token; negative: below it)."""
    return loss_init - chance
