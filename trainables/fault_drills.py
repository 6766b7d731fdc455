"""Fault drills (TrialConfig.inject_fault): a trial's real failure paths, taken on purpose.

    nan, inf   the step's loss becomes NaN or inf (divergence handling)
    error      the step raises (a trial error, retried by Tune from its checkpoint)
    hang       the step blocks until stopped from outside (trainables/limits.py's timeout)
    alloc      the step grows resident memory until stopped (the memory limit, oom)

Each fires once, at step `inject_at_step`; the tests' fault drills use them to count lost and
duplicated records.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from trainables.config import TrialConfig


def inject_fault(cfg: TrialConfig, step: int, loss: torch.Tensor) -> torch.Tensor:
    """The loss of the step after `step`, or the drill's failure if it fires at that step."""
    kind = cfg.inject_fault
    if kind == "none" or step + 1 != cfg.inject_at_step:
        return loss
    if kind in ("nan", "inf"):
        return loss * float(kind)
    if kind == "error":
        raise RuntimeError(f"injected fault at step {step + 1}")
    if kind == "alloc":
        _allocate_until_stopped()
    _wait_until_stopped()  # "hang"
    return loss


def _wait_until_stopped() -> None:
    """Block until the trial is stopped from outside, in short waits: an exception raised into this
    thread (trainables/limits.py's watchdog) is delivered between them, never inside one untimed wait."""
    while True:
        time.sleep(0.05)


ALLOC_CHUNK_MB = 32
ALLOC_CAP_MB = 4096  # a drill must not take the machine down if nothing stops it: it then hangs


def _allocate_until_stopped() -> None:
    """The `alloc` drill: grow resident memory in written (so resident) chunks until stopped."""
    held = []
    while len(held) * ALLOC_CHUNK_MB < ALLOC_CAP_MB:
        held.append(np.ones(ALLOC_CHUNK_MB * 2**20, dtype=np.uint8))
        time.sleep(0.01)
    _wait_until_stopped()
