"""Ray's, Tune's and Optuna's own log lines go to a file in the experiment, not the terminal.

A sweep's terminal is memlaw's voice (the start block, a line per trial, the fit, the end table);
Ray's "Started a local Ray instance", Tune's "Wrote the latest version of all result files" and
Optuna's study lines were mixed into it (issue 25 item 10). They are kept, whole, in
`<experiment>/memlaw/library.log` (a local experiment; one on an object store logs to
~/.cache/memlaw/logs/<name>.log), and the sweep's last lines name that file and how many warnings
it holds. `--verbose` leaves the libraries' handlers as they are.

Ray adds its stderr handler to the "ray" logger when it is imported, so routing imports Ray first
and then replaces the handlers; ray.init only resets their level and format. Optuna's default
handler is added on Optuna's first use, so routing asks for Optuna's logger first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

from orchestrator.records.storage import split_uri

LIBRARIES = ("ray", "optuna")
LOG_NAME = "library.log"


class _Counting(logging.FileHandler):
    """A file handler that counts the warnings (and worse) it wrote."""

    warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.warnings += 1
        super().emit(record)


def log_path(experiment_uri: str, name: str) -> str:
    scheme, path = split_uri(experiment_uri)
    if scheme is None:
        return os.path.join(path, "memlaw", LOG_NAME)
    return os.path.join(os.path.expanduser("~"), ".cache", "memlaw", "logs", f"{name}.log")


@contextlib.contextmanager
def routed(experiment_uri: str, name: str, verbose: bool) -> Iterator[_Counting | None]:
    """While a sweep runs, the libraries' log lines go to its library log; the handler (None under
    --verbose). The loggers are put back as they were after (tests run the CLI in-process)."""
    if verbose:
        yield None
        return
    import optuna
    import ray  # noqa: F401  (its import installs the stderr handler this replaces)

    optuna.logging.get_logger("optuna")  # Optuna adds its default handler on first use: let it, then take it off
    path = log_path(experiment_uri, name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = _Counting(path, encoding="utf-8")
    except OSError as err:  # a full or read-only disk: the lines stay in the terminal, and it says why
        print(f"memlaw: cannot write {path} ({err.strerror or err}): Ray's, Tune's and Optuna's log lines stay "
              "here", file=sys.stderr)
        yield None
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {lib: (logging.getLogger(lib).handlers[:], logging.getLogger(lib).propagate) for lib in LIBRARIES}
    for library in LIBRARIES:
        logger = logging.getLogger(library)
        logger.handlers[:] = [handler]
        logger.propagate = False
    try:
        yield handler
    finally:
        for library, (handlers, propagate) in saved.items():
            logging.getLogger(library).handlers[:] = handlers
            logging.getLogger(library).propagate = propagate
        handler.close()


def closing_line(handler: _Counting | None) -> str | None:
    """`library log: PATH (N warnings)` for the end of a sweep, or None under --verbose."""
    if handler is None:
        return None
    n = handler.warnings
    return f"  Ray/Tune/Optuna log: {handler.baseFilename} ({n} warning{'s' if n != 1 else ''}; --verbose shows them here)"
