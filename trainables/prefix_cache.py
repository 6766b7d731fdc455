"""The frozen prefix, computed once: hidden states entering the paper adapter's layer.

With one adapter at layer k (paper placement), layers 0..k-1 and the embedding are frozen and see
only the trial's input tokens, so the hidden states entering layer k are a function of the tokens
alone. A trial computes them once, for every sequence of its corpus (chunked as evaluation is), and
keeps them on its device; every training and teacher-forced evaluation forward then runs only layers
k..n-1, the final norm and the head. Batches are rows of the corpus, so curriculum stages and batches
drawn from a larger pool index the same cache: nothing is recomputed during a trial.

How the suffix runs: through the model's own forward (or its decoder's, when the chunked loss of
trainables/chunked_loss.py applies the head itself), with `inputs_embeds` = the cached states and
the layers below k swapped for a pass-through for the duration of the call. The model itself then
builds the causal / sliding-window masks (from the attention mask and the input shape), the position
ids and the rotary embeddings, and indexes its per-layer attention types, exactly as it does for
`input_ids`. That equivalence holds for families whose forward does nothing to `inputs_embeds`
between the embedding lookup and layer 0 but an identity (no embedding scale as in Gemma, no
learned positions as in GPT-2): EXACT_FAMILIES, each covered by tests/test_prefix_cache.py. Any
other family, any dropout below k, PEFT placement, or ZeRO trains uncached.

Exactness: the same operations on the same values; the only differences are float reduction order
(the cache is built over evaluation chunks, a training batch may be narrower), which the tests
measure. Greedy decoding keeps the full model: it generates tokens the cache has never seen.

PEFT placement (LoRA on every layer) gains nothing: the first adapted layer is layer 0.

Shapes: N sequences, S padded prompt+target length, d hidden size; the cache is [N, S, d] in the
base model's dtype.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

#: model_type values whose forward applies only an identity between `embed_tokens` and layer 0
#: (GPT-NeoX: a dropout, checked to be p = 0 below).
EXACT_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt_neox"})
#: The cache may take at most this many bytes (beyond: the trial trains uncached, and says why).
MAX_CACHE_BYTES = 4 * 2**30
_DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "embd_pdrop", "resid_pdrop", "attn_pdrop",
                   "dropout", "embed_dropout")


class _PassThrough(nn.Module):
    """Stands in for a frozen layer below k during a cached forward: returns its input states."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


class _Reached(Exception):
    """Raised by the pre-hook on layer k once it has seen its input: the prefix is all we need."""


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers *ForCausalLM inside a PeftModel (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def why_not_exact(model: nn.Module, layer: int) -> str | None:
    """None when the cached forward is exact for this model and layer, else the reason it is not."""
    from trainables.model import decoder_layers

    lm = causal_lm(model)
    config = lm.config.get_text_config()
    if config.model_type not in EXACT_FAMILIES:
        return f"model family {config.model_type!r} is not one of {sorted(EXACT_FAMILIES)}"
    layers = decoder_layers(lm)
    if len(layers) != config.num_hidden_layers:
        return "the model's layer list does not match its config"
    suffix = {id(m) for block in list(layers)[layer:] for m in block.modules()}
    for name, module in lm.named_modules():
        if isinstance(module, nn.Dropout) and module.p > 0 and id(module) not in suffix:
            return f"dropout p={module.p} in {name}, below the adapter's layer"
    for field in _DROPOUT_FIELDS:
        if float(getattr(config, field, 0.0) or 0.0) > 0:
            return f"config.{field} = {getattr(config, field)} (dropout below the adapter's layer)"
    return None


class PrefixCache:
    """Hidden states entering `layer` for every corpus sequence, and the forward that starts there."""

    def __init__(self, model: nn.Module, layer: int, corpus: Any):
        from trainables.model import decoder_layers

        self.layer = layer
        self.lm = causal_lm(model)
        self.layers = decoder_layers(self.lm)
        self.hidden = self._build(corpus)

    @property
    def nbytes(self) -> int:
        return self.hidden.numel() * self.hidden.element_size()

    @torch.no_grad()
    def _build(self, corpus: Any) -> torch.Tensor:
        """One prefix forward per evaluation chunk, stopped at layer k's input."""
        n, s = corpus.ids.shape
        hidden: torch.Tensor | None = None
        captured: list[torch.Tensor] = []

        def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])
            raise _Reached

        was_training = self.lm.training
        self.lm.eval()
        handle = self.layers[self.layer].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            for rows in corpus.chunks():
                batch = corpus.batch(rows)
                captured.clear()
                with contextlib.suppress(_Reached):
                    self.lm(input_ids=batch.ids, attention_mask=batch.attn, use_cache=False)
                states = captured[0]
                if hidden is None:
                    hidden = states.new_zeros(n, s, states.shape[-1])
                hidden[torch.as_tensor(rows, device=hidden.device), : states.shape[1]] = states
        finally:
            handle.remove()
            self.lm.train(was_training)
        assert hidden is not None
        return hidden

    @contextlib.contextmanager
    def _suffix_only(self) -> Iterator[None]:
        """Layers below k replaced by a pass-through for one forward; restored whatever happens."""
        originals = list(self.layers)[: self.layer]
        skip = _PassThrough()
        try:
            for i in range(self.layer):
                self.layers[i] = skip
            yield
        finally:
            for i, block in enumerate(originals):
                self.layers[i] = block

    def logits(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Logits of `batch` (a Corpus batch: rows, ids, attention mask) from layer k up. [B, S, V]"""
        states = self.hidden[batch.rows, : batch.ids.shape[1]]
        with self._suffix_only():
            return model(inputs_embeds=states, attention_mask=batch.attn, use_cache=False).logits

    def last_hidden(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The final hidden states of `batch` from layer k up, through the decoder without its head (the
        chunked loss applies the head itself: trainables/chunked_loss.py). [B, S, d]"""
        states = self.hidden[batch.rows, : batch.ids.shape[1]]
        with self._suffix_only():
            decoder = causal_lm(model).base_model
            return decoder(inputs_embeds=states, attention_mask=batch.attn, use_cache=False).last_hidden_state


def plan_prefix_cache(cfg: Any, model: nn.Module, corpus: Any, supported: bool) -> tuple[int | None, str]:
    """(layer to cache at, or None; why). `supported`: the backend runs one whole model in this process."""
    from trainables.model import decoder_layers, paper_layer

    if not cfg.prefix_cache:
        return None, "off (prefix_cache: false)"
    if cfg.adapter.placement != "paper":
        return None, "off: PEFT placement adapts layer 0, there is no frozen prefix"
    if not supported:
        return None, "off: this backend shards the model"
    layer = paper_layer(cfg.adapter, len(decoder_layers(causal_lm(model))))
    if layer == 0:
        return None, "off: the adapter is at layer 0"
    reason = why_not_exact(model, layer)
    if reason:
        return None, f"off: {reason}"
    config = causal_lm(model).config.get_text_config()
    n, s = corpus.ids.shape
    size = n * s * config.hidden_size * torch.finfo(getattr(torch, cfg.dtype)).bits // 8
    if size > MAX_CACHE_BYTES:
        return None, f"off: the cache would take {size / 2**30:.1f} GiB (> {MAX_CACHE_BYTES / 2**30:.0f} GiB)"
    return layer, f"on at layer {layer}"


__all__ = ["EXACT_FAMILIES", "MAX_CACHE_BYTES", "PrefixCache", "plan_prefix_cache", "why_not_exact"]
