"""Whether Tune caught a Ctrl-C during a fit, so that an interrupted sweep never ends like a finished one.

Tune (ray/tune/tune.py, _setup_signal_catching) replaces SIGINT's handler for the run; on the first
SIGINT (or SIGUSR1) it ends the run after saving its state and puts the previous handler back, while
a run that ends by itself leaves Tune's handler installed. So the handler from before the fit being
back after it means the fit was interrupted. tests/test_private_apis.py fails loudly if Tune changes
that, and the Ctrl-C drill (tests/test_interrupt.py) checks the exit code end to end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

#: The exit code of an interrupted sweep (128 + SIGINT, what a shell reports for Ctrl-C).
EXIT_INTERRUPTED = 128 + signal.SIGINT


class SweepInterrupted(Exception):
    """The sweep was stopped before every trial ran; its records so far are saved and reconciled."""

    def __init__(self, uri: str, grid: Any):
        super().__init__(f"the sweep was interrupted; resume it with: memlaw resume {uri}")
        self.uri, self.grid = uri, grid


@contextlib.contextmanager
def watch() -> Iterator[dict[str, bool]]:
    """Yields {"interrupted": False}, set True after the block when Tune caught a SIGINT in it; the
    handler from before the block is reinstated either way (Tune's would outlive the fit)."""
    state = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield state  # Tune installs no handler off the main thread, and neither can we
        return
    before = signal.getsignal(signal.SIGINT)
    try:
        yield state
    finally:
        tune_catches = not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0"))
        state["interrupted"] = tune_catches and signal.getsignal(signal.SIGINT) is before
        signal.signal(signal.SIGINT, before)
