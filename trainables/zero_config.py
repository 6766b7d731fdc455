"""ZeroConfig and the DeepSpeed config it implies: pure data, no DeepSpeed or Ray import.

A `zero` trial is the memorization trial of `trainables.memorize`, run by `workers` processes
under DeepSpeed ZeRO (`trainables.zero`). The DeepSpeed config is a pure function of the trial and
these settings, so it is tested in milliseconds and validated before Ray starts.

Why every rank trains on the *same* batch: the paper's budget is one sequence per step, which
cannot be split across ranks. ZeRO here buys memory (weights, gradients and optimizer state
sharded over the ranks), not throughput; the averaged gradient of identical batches is the
single-process gradient, so a `zero` trial reproduces a single-process one (tests/test_zero.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from trainables.config import TrialConfig
from trainables.schema import Config, Problem, spec

NEVER_PRINT = 1 << 62  # DeepSpeed's steps_per_print: its own progress lines would drown ours


@dataclass(frozen=True)
class ZeroConfig(Config):
    """How one trial is sharded: ZeRO stage, ranks, CPU offload and what each rank takes from a node."""

    stage: Literal[2, 3] = spec(3, "ZeRO stage: 2 shards gradients and optimizer state, 3 the weights too")
    workers_per_trial: int = spec(2, "DeepSpeed ranks (Ray Train workers) per trial", lo=1, hi=4096)
    offload: Literal["none", "optimizer", "all"] = spec(
        "none", "CPU offload: none, optimizer (state and step on the CPU), all (optimizer and weights; stage 3)")
    cpu_per_worker: float = spec(1.0, "CPUs per rank", lo=0.0, hi=1024.0, lo_open=True)
    gpu_per_worker: float = spec(0.0, "GPUs per rank (0: the ranks train on CPUs over gloo)", lo=0.0, hi=64.0)
    pack: bool = spec(False, "place all ranks of a trial on one node (STRICT_PACK), e.g. for NVLink")

    def cross_checks(self) -> list[Problem]:
        problems = []
        if self.offload == "all" and self.stage != 3:
            problems.append(Problem("offload", "all (weights offloaded too) needs stage 3; with stage 2 use "
                                               "none or optimizer"))
        if 0 < self.gpu_per_worker < 1:
            problems.append(Problem("gpu_per_worker", f"a DeepSpeed rank needs a whole GPU (0 or >= 1), "
                                                      f"got {self.gpu_per_worker}"))
        return problems

    @property
    def uses_gpu(self) -> bool:
        return self.gpu_per_worker > 0

    def gpus_per_trial(self) -> float:
        return self.gpu_per_worker * self.workers_per_trial


def trial_problems(trial: TrialConfig, zero: ZeroConfig) -> list[Problem]:
    """Combinations of a trial and its sharding that cannot run; fields named as in a sweep file."""
    problems = []
    if not zero.uses_gpu and trial.dtype == "float16":
        problems.append(Problem("trial.dtype", "DeepSpeed has no float16 on CPU ranks (zero.gpu_per_worker: 0); "
                                               "use float32 or bfloat16, or give the ranks GPUs"))
    if not zero.uses_gpu and trial.device.startswith("cuda"):
        problems.append(Problem("trial.device", f"{trial.device} asked for, but zero.gpu_per_worker is 0 "
                                                "(use auto or cpu, or give the ranks GPUs)"))
    if zero.uses_gpu and trial.device == "cpu":
        problems.append(Problem("trial.device", "cpu asked for, but zero.gpu_per_worker > 0 (use auto)"))
    return problems


def deepspeed_config(trial: TrialConfig, zero: ZeroConfig, on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed config of one rank. Precision follows the trial's dtype: bf16 (CPU or GPU) or fp16
    (GPU only) turn on DeepSpeed's mixed precision with fp32 master weights; float32 trains in fp32."""
    if trial.dtype == "float16" and not on_gpu:
        raise ValueError("DeepSpeed has no float16 on CPU; use float32 or bfloat16")
    budget = trial.budget
    zero_section: dict[str, Any] = {"stage": zero.stage}
    if zero.offload in ("optimizer", "all"):
        zero_section["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if zero.offload == "all":
        zero_section["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    if zero.stage == 3:
        # Our adapter is saved by gathering its few parameters, never the base model's 16-bit weights.
        zero_section["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        # Every rank sees the whole step's batch (see the module docstring); DeepSpeed's batch
        # bookkeeping is per rank, the number of sequences is the trial's.
        "train_micro_batch_size_per_gpu": budget.batch_size or trial.data.num_sequences,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": budget.grad_clip if budget.grad_clip is not None else 0.0,
        "zero_optimization": zero_section,
        "bf16": {"enabled": trial.dtype == "bfloat16"},
        "fp16": {"enabled": trial.dtype == "float16"},
        # Our AdamW (torch's) is passed in; DeepSpeed wraps it for ZeRO. With offload it needs its own
        # CPU Adam, which `trainables.zero` builds instead.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": NEVER_PRINT,
        "wall_clock_breakdown": False,
    }


__all__ = ["ZeroConfig", "deepspeed_config", "trial_problems"]
