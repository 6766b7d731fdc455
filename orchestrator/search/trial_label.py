"""How a sweep's terminal names one trial, per kind of search (orchestrator/search/kinds.py picks).

A law grid names the point of the law: its rank r and its ℓ, the target tokens over all sequences,
which is the ℓ of the fit, the plot and docs/science.md. When the data has several sequences, the
per-sequence length is shown beside it (`rank 4 x ℓ 256 (8 seq x 32)`), never in its place: the
Optuna example's lines once read "l 32" where the law counts 256.

A search over training methods names the knob set as `memlaw best` does (best_trials.knob_text: the
method and its knobs away from their defaults, and the lr).
Pure: no Ray.
"""

from __future__ import annotations

from typing import Any, Mapping

from orchestrator.records.trial_record import flatten
from orchestrator.search.best_trials import knob_text, method_knobs


def rank(config: Mapping[str, Any]) -> Any:
    """r of the law: the adapter's LoRA rank (None where the config has none)."""
    return flatten(config).get("adapter.rank")


def ell(config: Mapping[str, Any]) -> Any:
    """ℓ of the law: target tokens per sequence times sequences (the per-sequence value if not a count)."""
    flat = flatten(config)
    per_seq, n_seq = flat.get("data.target_tokens"), flat.get("data.num_sequences") or 1
    return per_seq * n_seq if isinstance(per_seq, int) and isinstance(n_seq, int) else per_seq


def law_point(config: Mapping[str, Any]) -> str:
    """`rank r x ℓ total`, with `(n seq x per-seq)` when the data has several sequences."""
    flat = flatten(config)
    per_seq, n_seq = flat.get("data.target_tokens"), flat.get("data.num_sequences") or 1
    return f"rank {rank(config)} x ℓ {ell(config)}" + (f" ({n_seq} seq x {per_seq})" if n_seq != 1 else "")


def knob_set(config: Mapping[str, Any]) -> str:
    """`memft mix=0.42 threshold_margin=0.134 lr=0.01`: as `memlaw best` names a knob set."""
    return knob_text(method_knobs(dict(config)))
