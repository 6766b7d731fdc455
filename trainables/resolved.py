"""The trial config as it ran: each value chosen at run time written out (the trial folder's config.yaml).

Why: a TrialConfig leaves some values to the run: `adapter.layer: null` (about 2/3 of the model's
depth), `adapter.dropout: null` and `adapter.alpha: null` (the placement's defaults), `device: auto`
(whatever torch finds) and `budget.batch_size: null` (every sequence). The folder of a finished trial
should say what the trial did, not what it was allowed to choose, so config.yaml holds the values
used, each decided where the trial decides it (model.paper_layer, AdapterConfig.effective_*,
model.resolve_device). The trial itself still runs, hashes and checkpoints the config as given: its
config_hash is the trial's identity in the sweep. The resolved config is the same trial: run again on
this machine, it trains exactly what this one did. `adapter.layers: null` (peft: every layer) stays
as it is: peft itself reads it, and a list of every index would need the model's layer pattern.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from trainables.config import TrialConfig
from trainables.model import model_dims, paper_layer, resolve_device


def resolved_config(cfg: TrialConfig, n_layers: int, device: torch.device) -> TrialConfig:
    """`cfg` with the run-time choices of a model of `n_layers` layers on `device` filled in."""
    a, n = cfg.adapter, cfg.data.num_sequences
    adapter = replace(a, layer=paper_layer(a, n_layers) if a.placement == "paper" else None,
                      dropout=a.effective_dropout, alpha=a.effective_alpha)
    budget = replace(cfg.budget, batch_size=min(cfg.budget.batch_size or n, n))  # a larger batch is every sequence
    return replace(cfg, adapter=adapter, budget=budget, device=device_name(device))


def device_name(device: torch.device) -> str:
    """"cpu" or "cuda:N": a bare "cuda" is the current CUDA device."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def resolved_here(cfg: TrialConfig) -> TrialConfig:
    """`cfg` as a trial of it would run in this process, from the model's config alone (no weights)."""
    return resolved_config(cfg, model_dims(cfg.model).layers, resolve_device(cfg.device))
