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
    ℓ_s         real target tokens of sequence s, Σ_t mask[s, t]; ℓ = Σ_s ℓ_s
    L_init,t    teacher-forced cross-entropy of target token t before training (nats)
    L_final,t   the same at an evaluation (nats)
    |V_cand|    how many tokens random targets are drawn from (data.random_candidates): the
                vocabulary minus special tokens; ln |V_cand| is the chance level (nats per token)
    H_s         reference code length of sequence s, [N] (nats): what s costs without the adapter
                  random targets: ℓ_s · ln |V_cand|, exactly the source entropy of the generator
                  text, phonebook: min(Σ_t∈s L_init,t, ℓ_s · ln |V_cand|), a PROXY: the shorter of
                  two codes that exist for s (the frozen base model's, the uniform one); the true
                  entropy of a text is unknown
    S_s         H_s − Σ_t∈s L_final,t, [N] (nats, signed): what the trained model saves on s
    L_ref,t     min(L_init,t, ln |V_cand|), [N, T]: the law's per-token reference (drop_below_chance,
                D_ref); NOT the bits' reference (see below)
    N_eff       trainable adapter parameters

    bits_above_chance   Σ_s max(0, S_s) / ln 2                                          (bits)
    certified_bits      #{t : p_t > 0.5} · log2 |V_cand|, p_t = exp(−L_final,t)           (bits)
    drop_below_chance   mean_t L_ref,t − mean_t L_final,t: the law's alternative response (nats/token)
    D_ref               mean_t L_ref,t − ln 2: the drop that takes the mean final loss to ln 2 (nats/token)

Why a sequence, not a token, is the unit of the clamp. bits_above_chance is a difference of two code
lengths for the same data: the reference code (H_s) and the trained model's (Σ_t L_final,t), and a
sample is coded with whichever is shorter, max(0, S_s) (Morris et al.'s per-sample memorisation).
Clamping per token instead, Σ_t max(0, ·), picks the better code afresh at every token with no
price for saying which: that is no code at all. On tokens the model never saw, L_final,t scatters
around the reference, and the clamp keeps every lucky token and drops every unlucky one, so a
model that stored nothing scores up to 1/ln 2 ≈ 1.44 bits per token (P(ln |V_cand| − L_final,t ≥ k
bits) ≤ 2^−k for a target it never saw, by Markov on q/u). Per sequence the same bound caps the
null at 1/ln 2 bits per sequence in expectation, independent of ℓ_s: the cost of choosing between
two codes once. tests/test_information.py trains an adapter and checks that null on fresh targets.

Why sound for uniform random targets: a token drawn uniformly from V_cand carries exactly
log2 |V_cand| bits, so no model compresses a sequence it never saw below ℓ_s · log2 |V_cand| except
by chance (the bound above); a saving S_s > 0 is information about s that only the adapter holds.
A token with p_t > 0.5 is recalled (docs/science.md §2), so certified_bits counts it at its full
log2 |V_cand| bits. For text targets bits_above_chance is what the adapter added beyond the base
model's code (the reference model of Morris et al.), a proxy; certified_bits then overstates,
because a text token carries less than log2 |V_cand| bits: read it only for random targets.

The sum over sequences is a sum of code lengths: a sequence present twice counts twice. The data
builders give every sequence its own key (a random prompt, or a unique name), so rows are distinct samples.

Pure math on torch tensors (methods only, so importing this module imports no torch: the law fit,
which reads OVERCONFIDENCE_MARGIN, stays torch-free); no model, no Ray. Tested against hand
computations and a trained adapter's null in tests/test_information.py.
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
    """L_ref,t = min(L_init,t, ln |V_cand|), [N, T]: the law's per-token reference (drop_below_chance),
    not the bits' (sequence_references). Padding stays whatever init_losses holds there."""
    return init_losses.clamp(max=chance_level(n_candidates))


def sequence_references(init_losses: torch.Tensor | None, mask: torch.Tensor, n_candidates: int, *,
                        random_targets: bool) -> torch.Tensor:
    """H_s, [N] (nats): ℓ_s · ln |V_cand| for random targets (exact; init_losses unused, may be None),
    else min(Σ_t∈s L_init,t, ℓ_s · ln |V_cand|) (a proxy). The caller says which: only it knows the data
    kind, and guessing from the losses would make the reference depend on the model being measured."""
    uniform = mask.sum(dim=-1) * chance_level(n_candidates)  # ℓ_s · ln |V_cand|, a float tensor
    if random_targets:
        return uniform
    if init_losses is None:
        raise ValueError("non-random targets need L_init,t: their reference is the base model's code length")
    return _masked_sum(init_losses, mask).minimum(uniform)


def sequence_savings(init_losses: torch.Tensor | None, final_losses: torch.Tensor, mask: torch.Tensor,
                     n_candidates: int, *, random_targets: bool) -> torch.Tensor:
    """S_s = H_s − Σ_t∈s L_final,t, [N] (nats, signed): negative where the trained model codes s worse
    than the reference."""
    ref = sequence_references(init_losses, mask, n_candidates, random_targets=random_targets)
    return ref.to(final_losses.dtype) - _masked_sum(final_losses, mask)


def bits_per_sequence(init_losses: torch.Tensor | None, final_losses: torch.Tensor, mask: torch.Tensor,
                      n_candidates: int, *, random_targets: bool) -> torch.Tensor:
    """max(0, S_s) / ln 2, [N] (bits): each sequence coded by the shorter of the two codes."""
    savings = sequence_savings(init_losses, final_losses, mask, n_candidates, random_targets=random_targets)
    return savings.clamp(min=0.0) / LN2


def bits_above_chance(init_losses: torch.Tensor | None, final_losses: torch.Tensor, mask: torch.Tensor,
                      n_candidates: int, *, random_targets: bool) -> float:
    """Σ_s max(0, S_s) / ln 2 (bits): Morris et al.'s per-sample saving, summed over sequences."""
    return float(bits_per_sequence(init_losses, final_losses, mask, n_candidates,
                                   random_targets=random_targets).sum())


def certified_bits(certified_tokens: int, n_candidates: int) -> float:
    """#{t : p_t > 0.5} · log2 |V_cand| (bits): tokens greedy decoding provably recalls, at full price."""
    return certified_tokens * chance_level(n_candidates) / LN2


def per_param(bits: float, trainable_params: int) -> float:
    """bits / N_eff (bits per adapter parameter)."""
    return bits / max(trainable_params, 1)


def mean_reference_loss(init_losses: torch.Tensor, mask: torch.Tensor, n_candidates: int) -> float:
    """mean_t L_ref,t over real target tokens, pooled (nats per token): the law's reference."""
    ref = _masked_sum(reference_losses(init_losses, n_candidates), mask).sum()
    return float(ref / mask.sum().clamp_min(1))


def required_drop(loss_ref: float) -> float:
    """D_ref = mean L_ref − ln 2: the loss drop that brings the mean final loss to the certificate's
    threshold, counted from the reference rather than from an overconfident L_init (nats/token)."""
    return loss_ref - LN2


def overconfidence(loss_init: float, chance: float) -> float:
    """How far the mean initial loss sits above the chance level (nats/token; negative: below it)."""
    return loss_init - chance


def _masked_sum(losses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t over real tokens, [N]; padding never counts, even when it holds inf or NaN."""
    return losses.where(mask, losses.new_zeros(())).sum(dim=-1)
