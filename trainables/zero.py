"""The memorization trial under DeepSpeed ZeRO, as one rank runs it. No Ray here.

    ZeroTrial = MemorizationTrial with
        base weights loaded on the CPU -> LoRA attached (both placements)
        -> deepspeed.initialize(model, AdamW, the trial's schedule, deepspeed_config(...))
        training: forward through the engine, engine.backward, engine.step (clip, AdamW, schedule)
        evaluation and greedy decoding: through the module (ZeRO-3 gathers each layer's weights)
        checkpoint: engine.save_checkpoint (each rank writes its own shard) + its RNG state,
                    and on rank 0 state.json and the gathered adapter (PEFT format)

Every rank runs the same loop on the same batches in lock step (`trainables.zero_config` says
why), so each collective (ZeRO-3's gathers, the gradient reduction, checkpoint barriers) meets its
partners. Rank 0 writes the trial folder (config.yaml, evals.jsonl, result.json, adapter/); the
caller (orchestrator/trainable.py) reports each rank's checkpoint folder to Ray Train, which merges
them into one checkpoint. DeepSpeed is imported here only, so only workers pay for it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from trainables.config import TrialConfig
from trainables.memorize import MemorizationTrial, ReportFn
from trainables.zero_config import ZeroConfig, deepspeed_config

DS_FOLDER = "deepspeed"  # inside a checkpoint: DeepSpeed's own files (one optimizer shard per rank)
DS_TAG = "state"


def import_deepspeed(on_gpu: bool):
    """DeepSpeed, told which accelerator to use before it guesses (it must be set before import)."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if on_gpu else "cpu")
    import deepspeed

    return deepspeed


class ZeroTrial(MemorizationTrial):
    """One rank of a sharded memorization trial (rank 0 writes the trial's files)."""

    def __init__(self, cfg: TrialConfig, zero: ZeroConfig, out_dir: str | os.PathLike, rank: int):
        self.zero, self.rank = zero, rank
        # torch deprecates the collectives DeepSpeed still calls, once per call: one line per step.
        warnings.filterwarnings("ignore", message=r"`torch.distributed.\w+` is deprecated", category=FutureWarning)
        super().__init__(cfg, out_dir)
        self.writes_outputs = rank == 0
        on_gpu = self.device.type == "cuda"
        self.deepspeed = import_deepspeed(on_gpu)
        if zero.offload != "none":  # offloaded optimizer state steps on the CPU: DeepSpeed's own Adam
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            b = cfg.budget
            self.optimizer = DeepSpeedCPUAdam(self.params, lr=b.lr, weight_decay=b.weight_decay, adamw_mode=True)
            self.scheduler = self._scheduler()
        self.engine, _, _, _ = self.deepspeed.initialize(
            model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler,
            config=deepspeed_config(cfg, zero, on_gpu))
        self.forward_model = self.engine  # self.model stays the PeftModel: generate() and saving need it

    def _load_device(self) -> torch.device:
        return torch.device("cpu")  # DeepSpeed moves each rank's share to its device, never the whole model

    def _update(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # reduce-scatter of gradients across ranks
        self.engine.step()  # clip (global norm), AdamW on this rank's shard, schedule, zero the gradients

    # -- the adapter, gathered ------------------------------------------------------------------
    def save_final_adapter(self, folder: Path) -> None:
        """Every rank takes part in gathering the adapter's shards; rank 0 writes PEFT's format."""
        with self.deepspeed.zero.GatheredParameters(self.params, modifier_rank=None, enabled=self.zero.stage == 3):
            if self.writes_outputs:
                super().save_final_adapter(folder)

    # -- checkpoints (each rank its own folder; Ray Train merges them) ----------------------------
    def save_checkpoint(self, root: Path) -> Path:
        """This rank's complete folder, then a barrier: no rank reports a checkpoint another is still writing."""
        folder = super().save_checkpoint(root)
        torch.distributed.barrier()
        return folder

    def _save_training_state(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder / DS_FOLDER), tag=DS_TAG, save_latest=False,
                                    exclude_frozen_parameters=True)
        torch.save({"rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                   folder / f"rng_rank{self.rank:05d}.pt")
        self.save_final_adapter(folder / "adapter")  # so any checkpoint loads without DeepSpeed

    def _load_training_state(self, folder: Path) -> None:
        self.engine.load_checkpoint(str(folder / DS_FOLDER), tag=DS_TAG, load_module_strict=False,
                                    load_optimizer_states=True, load_lr_scheduler_states=True)
        blob = torch.load(folder / f"rng_rank{self.rank:05d}.pt", weights_only=False)  # our own file
        torch.set_rng_state(blob["rng"])
        if blob["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(blob["cuda_rng"])

    # -- what each rank holds (bench/zero_memory.py) -----------------------------------------------
    def memory_footprint(self) -> dict[str, int]:
        """Bytes of model weights, fp32 master weights and optimizer state this rank holds."""
        return rank_memory(self.model, self.engine.optimizer)


def _tensor_bytes(tensors) -> int:
    """Bytes of distinct storages (flat ZeRO buffers are viewed by many tensors: count them once)."""
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.numel() == 0:
            continue
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def rank_memory(model: torch.nn.Module, optimizer: Any) -> dict[str, int]:
    """What one process holds for training, from the tensors themselves. Under ZeRO-3 a weight's local
    share is `ds_tensor` (the parameter itself is an empty placeholder between gathers); ZeRO's
    optimizer wrappers keep fp32 master partitions beside the wrapped optimizer's state."""
    weights = [getattr(p, "ds_tensor", p) for p in model.parameters()]
    inner = getattr(optimizer, "optimizer", optimizer)  # ZeRO wraps the client optimizer
    state = [t for s in inner.state.values() for t in s.values()]
    masters = [t for name in ("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat")
               for t in getattr(optimizer, name, [])]
    return {"weights": _tensor_bytes(weights), "master_weights": _tensor_bytes(masters),
            "optimizer_state": _tensor_bytes(state)}


def train_zero(cfg: TrialConfig, zero: ZeroConfig, out_dir: str | os.PathLike, rank: int,
               report: ReportFn | None = None, resume_from: str | os.PathLike | None = None,
               checkpoint_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run this rank's part of a sharded trial (torch.distributed must already be initialized)."""
    trial = ZeroTrial(cfg, zero, out_dir, rank)
    return trial.run(report=report, resume_from=Path(resume_from) if resume_from else None,
                     checkpoint_root=Path(checkpoint_root) if checkpoint_root else None)


__all__ = ["ZeroTrial", "rank_memory", "train_zero"]
