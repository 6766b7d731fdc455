"""Recall metrics: the p > 0.5 certificate under teacher forcing, and greedy-decoding recall.

Notation (docs/science.md §2)
    N, T        sequences and padded target length; tensors below are [N, T] unless noted
    L_t         target-token cross-entropy (nats); p_t = exp(-L_t)
    mask        True on real target tokens
    correct     teacher-forced argmax equals the target token
    certified   a sequence with p_t > 0.5 at every t (equivalently L_t < ln 2): greedy decoding then
                reproduces it exactly, by induction over positions. Sufficient, not necessary.
    positions   0-based indices into a sequence's target; "no such position" is reported as the
                sequence's target length, so metrics stay finite.

All aggregate token fractions pool every real target token of every sequence; position metrics
are means over sequences. Pure torch: no model, no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainables import metric_names as K
from trainables.memft import LN2, first_false


@dataclass(frozen=True)
class TeacherForced:
    """Per-token results of one teacher-forced pass over target tokens, aligned [N, T]."""

    losses: torch.Tensor  # float32, 0 where ~mask
    correct: torch.Tensor  # bool
    mask: torch.Tensor  # bool

    @property
    def certified_tokens(self) -> torch.Tensor:
        return self.mask & (self.losses < LN2)


def target_index(prompt_lens: torch.Tensor, target_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where target token t of row b sits in the shifted logits: index [N, T] and mask [N, T].

    With inputs prompt+target, logits at position j predict token j + 1, so target token t is
    predicted at position prompt_len - 1 + t.
    """
    width = int(target_lens.max())
    t = torch.arange(width, device=prompt_lens.device).unsqueeze(0)
    mask = t < target_lens.unsqueeze(1)
    index = (prompt_lens.unsqueeze(1) - 1 + t) * mask
    return index, mask


def teacher_forced(logits: torch.Tensor, input_ids: torch.Tensor, prompt_lens: torch.Tensor,
                   target_lens: torch.Tensor, with_correct: bool = True) -> TeacherForced:
    """Per-target-token loss and argmax correctness from one forward pass's logits [N, S, V].

    Cross-entropy runs over every position (as a plain fine-tuning loss would) and only the
    small [N, S] results are gathered: gathering the [N, T, V] logits instead costs a scatter of
    the full vocabulary in the backward pass.
    """
    n, s, v = logits.shape
    # Position j predicts token j + 1: shift the labels (one pad column), not the big logits.
    next_ids = F.pad(input_ids[:, 1:], (0, 1), value=0)
    ce = F.cross_entropy(logits.reshape(-1, v).float(), next_ids.reshape(-1), reduction="none").view(n, s)
    index, mask = target_index(prompt_lens, target_lens)
    losses = ce.gather(1, index) * mask
    if not with_correct:  # the training step of most methods needs no argmax over the vocabulary
        return TeacherForced(losses=losses, correct=torch.zeros_like(mask), mask=mask)
    with torch.no_grad():
        correct = (logits.argmax(dim=-1).gather(1, index) == next_ids.gather(1, index)) & mask
    return TeacherForced(losses=losses, correct=correct, mask=mask)


def mean_loss(tf: TeacherForced) -> float:
    """Mean cross-entropy per target token, pooled over sequences (nats)."""
    return float(tf.losses.detach().sum() / tf.mask.sum())


def certificate_metrics(tf: TeacherForced) -> dict[str, float]:
    """The p > 0.5 certificate and teacher-forced accuracy, aggregated."""
    n_tokens = tf.mask.sum().clamp_min(1)
    certified = tf.certified_tokens
    seq_certified = (certified == tf.mask).all(dim=1)
    return {
        K.FRAC_P_GT_HALF: float(certified.sum() / n_tokens),
        K.FIRST_SUBTHRESHOLD_POS: float(first_false(certified, tf.mask).float().mean()),
        K.TF_TOKEN_ACC: float(tf.correct.sum() / n_tokens),
        K.FIRST_TF_ERROR_POS: float(first_false(tf.correct, tf.mask).float().mean()),
        K.FRAC_SEQUENCES_CERTIFIED: float(seq_certified.float().mean()),
    }


def greedy_match(generated: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Position-wise equality of free-running greedy tokens and targets, [N, T] bool within mask."""
    width = targets.shape[1]
    gen = generated[:, :width]
    if gen.shape[1] < width:
        gen = F.pad(gen, (0, width - gen.shape[1]), value=-1)
    return (gen == targets) & mask


def greedy_metrics(match: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    n_tokens = mask.sum().clamp_min(1)
    exact = (match == mask).all(dim=1)
    return {
        K.GREEDY_TOKEN_ACC: float(match.sum() / n_tokens),
        K.GREEDY_EXACT_MATCH: float(exact.float().mean()),
        K.FIRST_GREEDY_ERROR_POS: float(first_false(match, mask).float().mean()),
    }


def per_sequence(tf: TeacherForced, match: torch.Tensor) -> list[dict[str, int | bool]]:
    """One row per sequence: certified, greedy exact, first sub-threshold and greedy-error positions."""
    certified = tf.certified_tokens
    first_sub = first_false(certified, tf.mask)
    first_greedy = first_false(match, tf.mask)
    lengths = tf.mask.sum(dim=1)
    rows = []
    for i in range(tf.mask.shape[0]):
        rows.append({
            K.SEQ_CERTIFIED: bool(first_sub[i] == lengths[i]),
            K.SEQ_GREEDY_EXACT: bool(first_greedy[i] == lengths[i]),
            K.SEQ_FIRST_SUBTHRESHOLD: int(first_sub[i]),
            K.SEQ_FIRST_GREEDY_ERROR: int(first_greedy[i]),
            K.SEQ_TARGET_TOKENS: int(lengths[i]),
        })
    return rows


def bits_per_param(target_tokens: int, delta_loss: float, trainable_params: int) -> float:
    """The paper's ΔL-based figure, ℓ · ΔL / ln 2 / N_eff (bits/param). It counts every nat the loss fell,
    including overconfidence undone on a base that starts above chance; the honest measures are in
    trainables/information.py (docs/science.md §6)."""
    return target_tokens * delta_loss / LN2 / max(trainable_params, 1)
