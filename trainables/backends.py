"""Trial backends: what differs between one process and one rank of a sharded trial, composed into
the one training loop (trainables.memorize.MemorizationTrial, which is never overridden).

    TrialBackend
        writes_outputs     this process writes the trial's files (rank 0 of a sharded trial)
        whole_model        (optional, default False) this process runs the whole model unsharded, so
                           trainables/prefix_cache.py may run only the layers above the adapter
        optimizer          the optimizer it steps (ZeRO: DeepSpeed's wrapper), for rank_memory
        load_device(dev)   where the base weights are loaded, given the trial's device
        prepare(...)   *   build the optimizer and schedule; return the module training forwards through
        update(loss)   *   backward, clip, step, schedule, zero the gradients
        skip_update()      a step without an update still spends its step of the schedule
        save_state(dir)  * optimizer, schedule and RNG state (ZeRO: this rank's shard)
        load_state(dir)  * all of that and the adapter's weights, from a checkpoint folder
        gathered()     *   a context in which the adapter's parameters are whole, to save them
        barrier()      *   wait for every rank

    * may be a collective: every rank must call it, in the same order (MemorizationTrial's docstring
      says how the loop guarantees it).

SingleProcess is the backend of `memlaw trial` and of Tune trials; the ZeRO one is
trainables.zero.ZeroBackend (DeepSpeed is imported there only, so only workers pay for it).
RNG state and the schedule are built once here for both.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Protocol

import torch

if TYPE_CHECKING:
    from trainables.config import BudgetConfig, TrialConfig

ADAPTER_FOLDER = "adapter"  # inside a checkpoint: the adapter in PEFT format (loads without a backend)
TRAINING_STATE = "training_state.pt"  # SingleProcess: optimizer, schedule and RNG in one file


class TrialBackend(Protocol):
    """How a trial trains, saves and resumes in its process (see the module docstring)."""

    writes_outputs: bool
    optimizer: Any

    def load_device(self, device: torch.device) -> torch.device: ...

    def prepare(self, model: torch.nn.Module, cfg: TrialConfig, device: torch.device) -> torch.nn.Module: ...

    def update(self, loss: torch.Tensor) -> None: ...

    def skip_update(self) -> None: ...

    def save_state(self, folder: Path) -> None: ...

    def load_state(self, folder: Path) -> None: ...

    def gathered(self) -> ContextManager[Any]: ...

    def barrier(self) -> None: ...


# -- shared by the backends ------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's torch RNG state (CPU, and every GPU when there is one): dropout draws resume exactly."""
    return {"rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(blob: dict[str, Any]) -> None:
    """Undo rng_state(); a GPU state saved where no GPU is now is skipped."""
    torch.set_rng_state(blob["rng"])
    if blob["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])


def build_scheduler(optimizer: Any, budget: BudgetConfig):
    """The trial's learning-rate schedule on `optimizer` (transformers' schedules, warm-up then decay)."""
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[budget.schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=budget.warmup_steps, num_training_steps=budget.steps)


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The adapter's parameters (the base is frozen)."""
    return [p for p in model.parameters() if p.requires_grad]


# -- one process -----------------------------------------------------------------------------------
class SingleProcess:
    """One process on one device: torch's AdamW, the trial's schedule, clipping by hand; it writes
    every output and its collectives are no-ops."""

    writes_outputs = True
    whole_model = True  # the frozen prefix may be cached (trainables/prefix_cache.py)

    def __init__(self) -> None:
        self.optimizer: torch.optim.Optimizer | None = None  # built by prepare(), once
        self.scheduler: Any = None
        self.model: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.params: list[torch.nn.Parameter] = []
        self.grad_clip: float | None = None

    def load_device(self, device: torch.device) -> torch.device:
        return device

    def prepare(self, model: torch.nn.Module, cfg: TrialConfig, device: torch.device) -> torch.nn.Module:
        """The one AdamW over the adapter and its schedule; training forwards through the model itself."""
        self.model, self.device, self.params = model, device, trainable(model)
        b = cfg.budget
        self.grad_clip = b.grad_clip
        self.optimizer = torch.optim.AdamW(self.params, lr=b.lr, weight_decay=b.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, b)
        return model

    def update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()

    def skip_update(self) -> None:
        self.scheduler.step()

    def save_state(self, folder: Path) -> None:
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    **rng_state()}, folder / TRAINING_STATE)

    def load_state(self, folder: Path) -> None:
        """The adapter's weights from the checkpoint's PEFT folder, then optimizer, schedule and RNG."""
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(str(folder / ADAPTER_FOLDER / "adapter_model.safetensors"), device=str(self.device))
        set_peft_model_state_dict(self.model, weights)
        blob = torch.load(folder / TRAINING_STATE, weights_only=True)  # tensors, numbers and dicts only: no code
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        restore_rng(blob)

    def gathered(self) -> ContextManager[Any]:
        return contextlib.nullcontext()  # the adapter is whole already

    def barrier(self) -> None:
        pass


# -- what a process holds (bench/zero_memory.py) ---------------------------------------------------
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


__all__ = ["ADAPTER_FOLDER", "SingleProcess", "TrialBackend", "build_scheduler", "rank_memory", "restore_rng",
           "rng_state", "trainable"]
