"""The Tune callback that forwards every finished trial to the sweep's results actor.

It never blocks Tune's loop: `add.remote()` returns at once, and acknowledgements are collected
with a zero-timeout `ray.wait` at each step. A record is "pending" until the actor acknowledged
it (the actor persisted it). Pending records are part of the callback's state, which Tune saves
with the experiment, so after `Tuner.restore` they are sent again; the actor counts a trial id
once, so a re-send never double-counts. At the end of the experiment the callback waits for
every acknowledgement.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from typing import Any

import ray
from ray.tune import Callback

from orchestrator.tune import results_actor
from orchestrator.records.storage_failure import Reserve, StorageFailure, cause_in_text, storage_cause
from orchestrator.records.trial_record import completion_status, record_from_result

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 60.0


class StorageWatch:
    """The run's first storage failure, in the driver (one per process: callbacks are pickled with
    Tune's state, so they reach it through this module). At the first failure it releases the space
    reserve and stops the run as Ctrl-C does (Tune's own SIGINT handler: trials in flight are stopped,
    its state saved, `memlaw resume` continues them), once."""

    failure: StorageFailure | None = None
    reserve: Reserve | None = None
    experiment_uri: str | None = None

    @classmethod
    def arm(cls, reserve: Reserve | None, experiment_uri: str | None = None) -> None:
        cls.failure, cls.reserve, cls.experiment_uri = None, reserve, experiment_uri

    @classmethod
    def concerns(cls, failure: StorageFailure | None) -> bool:
        """Whether `failure` is the experiment's storage: a path under it, or no path (Tune's checkpoint
        upload names none). An EACCES reading a model folder elsewhere is the trial's own error."""
        if failure is None:
            return False
        if failure.path is None or cls.experiment_uri is None or "://" in cls.experiment_uri:
            return True
        return os.path.abspath(failure.path).startswith(os.path.abspath(cls.experiment_uri) + os.sep)

    @classmethod
    def failed(cls, failure: StorageFailure) -> None:
        if cls.failure is not None:
            return
        cls.failure = failure
        if cls.reserve is not None:
            cls.reserve.release()
        log.error("memlaw: %s: stopping the sweep (trials in flight are stopped, not failed)", failure.text())
        os.kill(os.getpid(), signal.SIGINT)


def failure_category(error_text: str | None) -> str:
    """Which kind of failure a trial's error trace shows (R4 counts them apart).

    The limits' errors come first: the watchdog raises them wherever the trial happens to be, so
    their trace may show any line of the trial (a `raise TrialDiverged` one included)."""
    text = error_text or ""
    if "TrialTimedOut" in text or "TrialTimeout" in text or "timed out" in text.lower():
        return "timeout"
    if "TrialOutOfMemory" in text or "OutOfMemoryError" in text or "out of memory" in text.lower():
        return "oom"
    if "TrialDiverged" in text or "NaN" in text:
        return "inf" if re.search(r"TrialDiverged: \S.* -?inf\b", text) else "nan"
    return "error"


def _error_text(trial) -> str:
    """The trial's error trace: Tune writes it to the trial's local folder first, storage later."""
    path = trial.error_file
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    error = trial.get_error()
    return str(error) if error is not None else ""


def checkpoint_path(checkpoint, metrics: dict[str, Any] | None) -> str | None:
    """Where a trial's latest checkpoint lives: Tune's own, or for a zero trial the merged Ray Train
    checkpoint whose path TuneReportCallback adds to every reported result."""
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    if checkpoint is not None:
        return checkpoint.path
    return (metrics or {}).get(CHECKPOINT_PATH_KEY)


class ResultsForwarder(Callback):
    def __init__(self, sweep: str, resolve_config, pruning: bool = False):
        """`resolve_config(tune_config) -> dict`: the resolved trial config of a Tune trial;
        `pruning`: the sweep has a scheduler that may stop trials early (ASHA).

        It finds the sweep's actor by name, which the driver started (with the experiment's storage)
        before Tuner.fit: Tune restores this callback from its pickle on `memlaw resume`, so nothing
        here may name the experiment's place, which a moved or copied experiment has changed."""
        self.sweep, self.pruning = sweep, pruning
        self.resolve_config = resolve_config
        self._pending: dict[str, dict[str, Any]] = {}
        self._refs: dict[Any, str] = {}
        self._errored: list = []
        self._actor = None

    # -- plumbing ----------------------------------------------------------------------------------
    def _handle(self):
        if self._actor is None:
            self._actor = results_actor.find(self.sweep)
        return self._actor

    def _send(self, record: dict[str, Any]) -> None:
        self._pending[record["trial_id"]] = record
        self._refs[self._handle().add.remote(record)] = record["trial_id"]

    def _collect(self, timeout: float = 0.0) -> None:
        if not self._refs:
            return
        done, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        for ref in done:
            trial_id = self._refs.pop(ref)
            try:
                ray.get(ref)
            except Exception as err:
                failure = storage_cause(err)
                if StorageWatch.concerns(failure):  # the disk, not the actor: no re-send until the stop frees room
                    StorageWatch.failed(failure)
                    continue
                log.warning("memlaw: re-sending trial %s to the results actor (%s)", trial_id, err)
                self._send(self._pending[trial_id])  # the actor died mid-call: send again (it de-duplicates)
                continue
            self._pending.pop(trial_id, None)

    def _record(self, trial, status: str, error: str | None = None) -> dict[str, Any]:
        checkpoint = checkpoint_path(trial.checkpoint, trial.last_result)
        return record_from_result(trial.trial_id, self.sweep, self.resolve_config(trial.config), trial.last_result,
                                  status=status, error=error, checkpoint=checkpoint).to_dict()

    # -- Tune hooks --------------------------------------------------------------------------------
    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._send(self._record(trial, completion_status(trial.last_result, self.pruning)))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        # Tune calls this before it writes the trial's error file: classify on the next step.
        self._errored.append(trial)

    def _send_errored(self) -> None:
        for trial in self._errored:
            text = _error_text(trial)
            failure = cause_in_text(text)
            if StorageWatch.concerns(failure):  # it failed because the disk did: stopped (resume trains it), not failed
                StorageWatch.failed(failure)
                self._send(self._record(trial, "stopped", error=text[-2000:]))
                continue
            self._send(self._record(trial, failure_category(text), error=text[-2000:]))
        self._errored = []

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._send_errored()
        self._collect()

    def on_experiment_end(self, trials: list, **info) -> None:
        self._send_errored()
        if StorageWatch.failure is not None:  # the reserve is released: try what is pending once more
            for record in list(self._pending.values()):
                self._send(record)
        self._collect(timeout=FLUSH_TIMEOUT_S)
        if self._pending:
            log.error("memlaw: %d records not acknowledged by the results actor: %s", len(self._pending),
                      sorted(self._pending))

    def get_state(self) -> dict[str, Any]:
        return {"pending": list(self._pending.values())}

    def set_state(self, state: dict[str, Any]) -> None:
        for record in state.get("pending", []):
            self._send(record)
