"""The LM head and the cross-entropy in chunks of target tokens: per-token losses without the logits wall.

Why: a teacher-forced forward's logits are [B, S, V], upcast to fp32 for the loss, and the backward
adds a tensor of the same size; at ℓ = 10,000 on Qwen3's vocabulary (151,936) that is about 12 GB a
step, more than the activations above the adapter. The loss needs one number per target token (and,
for the certificate and MemFT-SW, the argmax), so a forward whose logits would hold more than `c`
positions runs the head and the cross-entropy over at most `c` target tokens at a time and keeps only
those per-token results (TrialConfig.loss_chunk_tokens; 0: off). Below that size, and with it off,
trainables/recall.py's unchunked path runs as before.

Notation
    B, S, d, V   batch rows, padded prompt+target length, hidden size, vocabulary size
    T, mask      padded target length and the [B, T] real-target mask (recall.target_index)
    M            Σ mask: target tokens of the forward; rows below are [M, ·] in row-major mask order
    h_t          final hidden state (after the last norm) that predicts target token t: [d], model dtype
    W, b         the frozen LM head, [V, d] and [V] (or no bias); z_t = W h_t + b, logits [V]
    y_t          the target token; L_t = −log softmax(z_t)[y_t], nats, fp32
    c            chunk size in target tokens (loss_chunk_tokens). With e the model dtype's bytes, a chunk
                 holds about c·V·(e + 4 + 4) bytes at once (its logits, their fp32 copy, the log-softmax;
                 in fp32 the copy is the logits themselves); unchunked, the forward keeps B·S·V·(e + 4)
                 for the backward (logits and log-softmax) and the backward adds their gradients
    J_t          ∂L_t/∂h_t = Wᵀ (softmax(z_t) − e_{y_t}): [d], model dtype; J is [M, d]
    g_t          the gradient reaching L_t in the backward (the method's weight w_t)

No recompute: L_t depends on the trainable adapter only through h_t, so the backward of Σ g_t L_t
with respect to h_t is g_t J_t. The forward computes J chunk by chunk (only when a gradient will be
asked for) with the same softmax(z) − e_y the unchunked backward forms, keeps the [M, d] result and
the backward scales it by g_t: no [M, V] tensor outlives its chunk and the head's matmul runs twice
per step, as it does unchunked (a checkpointed chunk would run it three times). The price: a step
whose update is skipped (MemFT with nothing left to learn) has computed J for nothing.

Exactness: per token, the same operations on the same values as recall.teacher_forced: the head's
matmul in the model's dtype, log_softmax in fp32 (F.cross_entropy is nll_loss of it), the argmax of
the same logits. Losses and flags therefore agree bit for bit where the matmul's row results do not
depend on how many rows it is given (tests/test_chunked_loss.py measures it); gradients agree
within float rounding (g is applied after the matmul instead of before it).

Where it applies: the decoder is called without its head (`base_model(...).last_hidden_state`, or
the prefix cache's suffix, trainables/prefix_cache.py), so the family's logits must be exactly
`lm_head(last_hidden_state)` with a plain frozen Linear head: CHUNKED_FAMILIES, each checked by
tests/test_chunked_loss.py. One whole model in one process only: under ZeRO-3 the head's weight is
a partitioned placeholder outside its module's own forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables import recall
from trainables.prefix_cache import PrefixCache, causal_lm

#: model_type values whose causal LM computes its logits as lm_head(base_model(...).last_hidden_state)
#: with no scaling, soft-capping or bias trick in between.
CHUNKED_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt_neox", "gpt2"})


# -- when it applies -----------------------------------------------------------------------------
def why_not_chunkable(model: nn.Module) -> str | None:
    """None when the chunked loss computes exactly what the model's own head would, else why not."""
    lm = causal_lm(model)
    family = lm.config.get_text_config().model_type
    if family not in CHUNKED_FAMILIES:
        return f"model family {family!r} is not one of {sorted(CHUNKED_FAMILIES)}"
    head = lm.get_output_embeddings()
    if type(head) is not nn.Linear:  # e.g. a LoRA layer on lm_head (peft placement)
        return f"the LM head is a {type(head).__name__}, not a plain frozen Linear"
    if any(p.requires_grad for p in head.parameters()):
        return "the LM head's weights train"
    return None


def plan_loss_chunk(cfg: Any, model: nn.Module, supported: bool) -> tuple[int, str]:
    """(chunk size in target tokens, or 0 for off; why). `supported`: one whole model in this process."""
    n = cfg.loss_chunk_tokens
    if not n:
        return 0, "off (loss_chunk_tokens: 0)"
    if not supported:
        return 0, "off: this backend shards the model"
    reason = why_not_chunkable(model)
    if reason:
        return 0, f"off: {reason}"
    return n, f"on in forwards over {n} positions, {n} target tokens a chunk"


# -- the math ------------------------------------------------------------------------------------
@torch.no_grad()
def _chunks(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor, chunk: int,
            with_correct: bool, want_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """L [M] fp32, argmax [M] (empty without `with_correct`) and J [M, d] (None without `want_grad`)."""
    m = rows.shape[0]
    losses = torch.empty(m, dtype=torch.float32, device=rows.device)
    argmax = torch.empty(m if with_correct else 0, dtype=torch.long, device=rows.device)
    jac = torch.empty_like(rows) if want_grad else None
    for start in range(0, m, chunk):
        part = slice(start, start + chunk)
        y = labels[part].unsqueeze(1)
        logits = F.linear(rows[part], weight, bias)  # [c, V], the model's dtype, as its own head computes it
        if with_correct:
            argmax[part] = logits.argmax(dim=-1)
        logp = F.log_softmax(logits.float(), dim=-1)  # what F.cross_entropy computes before its nll_loss
        del logits
        losses[part] = -logp.gather(1, y).squeeze(1)
        if jac is not None:
            grad = logp.exp_().scatter_add_(1, y, torch.full_like(y, -1.0, dtype=logp.dtype))  # softmax − e_y
            jac[part] = grad.to(weight.dtype) @ weight
        del logp
    return losses, argmax, jac


class _HeadCrossEntropy(torch.autograd.Function):
    """rows h [M, d] -> (L [M], argmax [M]); the backward is g ↦ g_t J_t (J from the forward)."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, chunk: int, with_correct: bool) -> tuple[torch.Tensor, torch.Tensor]:
        losses, argmax, jac = _chunks(rows, weight, bias, labels, chunk, with_correct, want_grad=True)
        ctx.save_for_backward(jac)
        ctx.mark_non_differentiable(argmax)
        return losses, argmax

    @staticmethod
    def backward(ctx: Any, grad_losses: torch.Tensor, _grad_argmax: Any) -> tuple[Any, ...]:
        (jac,) = ctx.saved_tensors
        grad_rows = (grad_losses.unsqueeze(1) * jac.float()).to(jac.dtype)
        return grad_rows, None, None, None, None, None


def head_cross_entropy(rows: torch.Tensor, head: nn.Linear, labels: torch.Tensor, chunk: int,
                       with_correct: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token L [M] (differentiable in `rows` [M, d]) and argmax [M] (empty without `with_correct`)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 target token, got {chunk}")
    if torch.is_grad_enabled() and rows.requires_grad:
        return _HeadCrossEntropy.apply(rows, head.weight, head.bias, labels, chunk, with_correct)
    losses, argmax, _ = _chunks(rows, head.weight, head.bias, labels, chunk, with_correct, want_grad=False)
    return losses, argmax


def teacher_forced_chunked(hidden: torch.Tensor, head: nn.Linear, input_ids: torch.Tensor,
                           prompt_lens: torch.Tensor, target_lens: torch.Tensor, chunk: int,
                           with_correct: bool = True) -> recall.TeacherForced:
    """recall.teacher_forced from the final hidden states [B, S, d] instead of the logits [B, S, V]."""
    b, s, d = hidden.shape
    index, mask = recall.target_index(prompt_lens, target_lens)  # position predicting target t: [B, T]
    flat = (torch.arange(b, device=hidden.device).unsqueeze(1) * s + index)[mask]  # [M] into B·S
    rows = hidden.reshape(b * s, d).index_select(0, flat)
    labels = F.pad(input_ids[:, 1:], (0, 1), value=0).reshape(-1).index_select(0, flat)  # token j + 1
    losses_m, argmax = head_cross_entropy(rows, head, labels, chunk, with_correct)
    losses = losses_m.new_zeros(mask.shape).masked_scatter(mask, losses_m)
    if not with_correct:
        return recall.TeacherForced(losses=losses, correct=torch.zeros_like(mask), mask=mask)
    correct = torch.zeros_like(mask).masked_scatter(mask, argmax == labels)
    return recall.TeacherForced(losses=losses, correct=correct, mask=mask)


# -- one batch -----------------------------------------------------------------------------------
def forward_targets(model: nn.Module, batch: Any, with_correct: bool = True, prefix: PrefixCache | None = None,
                    chunk: int = 0) -> recall.TeacherForced:
    """Teacher-forced results of one batch (a trainables.memorize.Batch): through the whole model or from
    the cached prefix up; chunked when `chunk` > 0 and the batch's logits would hold more positions."""
    if chunk and batch.ids.numel() > chunk:
        lm = causal_lm(model)
        if prefix is not None:
            hidden = prefix.last_hidden(model, batch)
        else:
            hidden = lm.base_model(input_ids=batch.ids, attention_mask=batch.attn, use_cache=False).last_hidden_state
        return teacher_forced_chunked(hidden, lm.get_output_embeddings(), batch.ids, batch.prompt_lens,
                                      batch.target_lens, chunk, with_correct)
    if prefix is not None:
        logits = prefix.logits(model, batch)
    else:
        logits = model(input_ids=batch.ids, attention_mask=batch.attn).logits
    return recall.teacher_forced(logits, batch.ids, batch.prompt_lens, batch.target_lens, with_correct)


__all__ = ["CHUNKED_FAMILIES", "forward_targets", "head_cross_entropy", "plan_loss_chunk", "teacher_forced_chunked",
           "why_not_chunkable"]
