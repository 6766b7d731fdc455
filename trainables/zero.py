"""The memorization trial under DeepSpeed ZeRO, as one rank runs it. No Ray here.

    MemorizationTrial(cfg, out_dir, backend=ZeroBackend(zero, rank)), whose backend
        loads the base weights on the CPU (DeepSpeed moves each rank's share to its device)
        prepare: deepspeed.initialize(model, the one optimizer, the trial's schedule, deepspeed_config(...))
        update: engine.backward (gradient reduction), engine.step (clip, Adam on this rank's shard, schedule)
        save_state: engine.save_checkpoint (each rank its own shard) + this rank's RNG state
        gathered: ZeRO-3 gathers the adapter's parameters so that rank 0 can write it in PEFT format
        barrier: torch.distributed.barrier
    evaluation and greedy decoding run through the PeftModel (ZeRO-3 gathers each layer's weights)

Every rank runs the same loop on the same batches in lock step (`trainables.zero_config` says
why; MemorizationTrial's docstring states the invariant), so each collective meets its partners.
Rank 0 writes the trial folder (config.yaml, evals.jsonl, result.json, adapter/); the caller
(orchestrator/tune/trainable.py) reports each rank's checkpoint folder to Ray Train, which merges them
into one checkpoint. DeepSpeed is imported here only, so only workers pay for it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ContextManager

import torch

from trainables.backends import build_scheduler, rank_memory, restore_rng, rng_state, trainable
from trainables.config import BudgetConfig, TrialConfig
from trainables.memorize import MemorizationTrial, ReportFn, train
from trainables.zero_config import ZeroConfig, deepspeed_config

DS_FOLDER = "deepspeed"  # inside a checkpoint: DeepSpeed's own files (one optimizer shard per rank)
DS_TAG = "state"


def import_deepspeed(on_gpu: bool):
    """DeepSpeed, told which accelerator to use before it guesses (it must be set before import)."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if on_gpu else "cpu")
    import deepspeed

    return deepspeed


class ZeroBackend:
    """One rank of a sharded memorization trial (rank 0 writes the trial's files)."""

    def __init__(self, zero: ZeroConfig, rank: int):
        self.zero, self.rank = zero, rank
        self.writes_outputs = rank == 0
        self.optimizer: Any = None  # DeepSpeed's ZeRO optimizer, around the one built in prepare()
        # torch deprecates the collectives DeepSpeed still calls, once per call: one line per step.
        warnings.filterwarnings("ignore", message=r"`torch.distributed.\w+` is deprecated", category=FutureWarning)

    def load_device(self, device: torch.device) -> torch.device:
        return torch.device("cpu")  # DeepSpeed moves each rank's share to its device, never the whole model

    def prepare(self, model: torch.nn.Module, cfg: TrialConfig, device: torch.device) -> torch.nn.Module:
        """The DeepSpeed engine around the model, its optimizer and the trial's schedule (a collective)."""
        on_gpu = device.type == "cuda"
        self.deepspeed = import_deepspeed(on_gpu)
        self.params = trainable(model)
        client = self._client_optimizer(cfg.budget)
        self.engine, self.optimizer, _, self.scheduler = self.deepspeed.initialize(
            model=model, optimizer=client, lr_scheduler=build_scheduler(client, cfg.budget),
            config=deepspeed_config(cfg, self.zero, on_gpu))
        return self.engine

    def _client_optimizer(self, budget: BudgetConfig) -> torch.optim.Optimizer:
        """The one optimizer ZeRO wraps: torch's AdamW, or with offload DeepSpeed's CPU Adam in AdamW
        mode (offloaded optimizer state steps on the CPU)."""
        if self.zero.offload == "none":
            return torch.optim.AdamW(self.params, lr=budget.lr, weight_decay=budget.weight_decay)
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(self.params, lr=budget.lr, weight_decay=budget.weight_decay, adamw_mode=True)

    def update(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # reduce-scatter of gradients across ranks
        self.engine.step()  # clip (global norm), Adam on this rank's shard, schedule, zero the gradients

    def skip_update(self) -> None:
        self.scheduler.step()

    def save_state(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder / DS_FOLDER), tag=DS_TAG, save_latest=False,
                                    exclude_frozen_parameters=True)
        torch.save(rng_state(), folder / f"rng_rank{self.rank:05d}.pt")

    def load_state(self, folder: Path) -> None:
        """Adapter weights, optimizer shard and schedule from DeepSpeed's files, then this rank's RNG."""
        self.engine.load_checkpoint(str(folder / DS_FOLDER), tag=DS_TAG, load_module_strict=False,
                                    load_optimizer_states=True, load_lr_scheduler_states=True)
        restore_rng(torch.load(folder / f"rng_rank{self.rank:05d}.pt", weights_only=True))

    def gathered(self) -> ContextManager[Any]:
        return self.deepspeed.zero.GatheredParameters(self.params, modifier_rank=None, enabled=self.zero.stage == 3)

    def barrier(self) -> None:
        torch.distributed.barrier()


def zero_trial(cfg: TrialConfig, zero: ZeroConfig, out_dir: str | os.PathLike, rank: int) -> MemorizationTrial:
    """This rank's trial (torch.distributed must already be initialized)."""
    return MemorizationTrial(cfg, out_dir, backend=ZeroBackend(zero, rank))


def train_zero(cfg: TrialConfig, zero: ZeroConfig, out_dir: str | os.PathLike, rank: int,
               report: ReportFn | None = None, resume_from: str | os.PathLike | None = None,
               checkpoint_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run this rank's part of a sharded trial (torch.distributed must already be initialized)."""
    return train(cfg, out_dir, report=report, resume_from=resume_from, checkpoint_root=checkpoint_root,
                 backend=ZeroBackend(zero, rank))


__all__ = ["ZeroBackend", "rank_memory", "train_zero", "zero_trial"]
