"""A trial's wall-time and memory limits, enforced inside the trial's own process.

Why in the process: a Tune stopper ends a trial as TERMINATED (a success) and never sees a trial
that hangs without reporting; Ray's memory monitor kills whole workers only when the node runs
out. Here a watchdog thread checks the trial's elapsed time and its process's resident memory
(RSS) every `poll_s`, and when a limit is passed it raises `TrialTimedOut` or `TrialOutOfMemory`
in the trial's thread, so the trial fails like any failing trial, with a class name that the sweep
callback classifies (timeout, oom).

The exception is delivered when the trial's thread next runs Python bytecode (between torch ops,
or in the short waits of the `hang` fault drill); a thread blocked inside one C call is reached
only when that call returns. Tune reuses a worker process for several trials, so a Watchdog
covers one trial: it starts with `with`, and its thread stops at the block's end, cancelling a
pending exception that the trial's thread had not received yet.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass

MB = 2**20


class TrialTimedOut(RuntimeError):
    """The trial ran past its wall-time limit (a hang, or a trial far slower than planned)."""


class TrialOutOfMemory(RuntimeError):
    """The trial's process held more resident memory than its limit."""


@dataclass(frozen=True)
class TrialLimits:
    """0 means no limit."""

    timeout_s: float = 0.0
    memory_mb: float = 0.0

    @property
    def any(self) -> bool:
        return self.timeout_s > 0 or self.memory_mb > 0


def _raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Schedule `exc_type` in another thread (None cancels a scheduled one)."""
    obj = ctypes.py_object(exc_type) if exc_type is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), obj)


class Watchdog:
    """Enforces TrialLimits on the `with` block that runs one trial (see the module doc)."""

    def __init__(self, limits: TrialLimits, poll_s: float = 0.1):
        self.limits, self.poll_s = limits, poll_s
        self.fired: RuntimeError | None = None
        self.peak_rss_mb = 0.0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        if not self.limits.any:
            return self
        import psutil

        self._process = psutil.Process()
        self._target = threading.get_ident()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="memlaw-trial-limits", daemon=True)
        self._thread.start()
        return self

    def _breach(self) -> RuntimeError | None:
        """The limit passed right now, as the error to raise, or None."""
        elapsed = time.monotonic() - self._t0
        if self.limits.timeout_s and elapsed > self.limits.timeout_s:
            return TrialTimedOut(f"trial ran {elapsed:.1f} s, past its limit trial_timeout_s="
                                 f"{self.limits.timeout_s:g}")
        rss_mb = self._process.memory_info().rss / MB
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)
        if self.limits.memory_mb and rss_mb > self.limits.memory_mb:
            return TrialOutOfMemory(f"trial process holds {rss_mb:.0f} MB resident, over its limit "
                                    f"trial_memory_mb={self.limits.memory_mb:g}")
        return None

    def _watch(self) -> None:
        while not self._done.wait(self.poll_s):
            error = self._breach()
            if error is None:
                continue
            with self._lock:
                if not self._done.is_set():
                    self.fired = error
                    _raise_in_thread(self._target, type(error))
            return

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._thread is None:
            return False
        with self._lock:
            self._done.set()
            if self.fired is not None:
                _raise_in_thread(self._target, None)  # not delivered yet: it is raised below instead
        self._thread.join()
        if self.fired is not None and exc is not self.fired:
            raise self.fired from (exc if not isinstance(exc, type(self.fired)) else None)
        return False
