"""Whether Tune can restore an experiment: its newest state file is there and whole. No Ray.

    <experiment>/experiment_state-<date>.json   Tune's run state: every trial, its status and config

`Tuner.restore` reads the newest of these (the greatest name: Tune's own rule, pinned by
tests/test_private_apis.py). When that file is missing or torn (a full disk tears it: Tune writes it
in place), Tune logs "Restarting experiment" and trains every trial again under new trial ids; the
records would then repeat every configuration. `memlaw resume` asks `state_problem` first and
refuses, before Ray starts, naming the file and what to do; the records already journaled are
untouched (and a repeat is counted once anyway: orchestrator/records/identity.py).
"""

from __future__ import annotations

import fnmatch
import json

from orchestrator.records.storage import Store

STATE_PATTERN = "experiment_state-*.json"
#: Read at most this much of a state file (a 24-trial sweep's is ~100 KB).
MAX_STATE_BYTES = 256 * 2**20


def newest_state(experiment_uri: str) -> str | None:
    """The name of the state file Tune would restore from, None when there is none."""
    names = fnmatch.filter(Store(experiment_uri).list(), STATE_PATTERN)
    return max(names) if names else None


def state_problem(experiment_uri: str) -> str | None:
    """Why Tune cannot restore the experiment faithfully, or None when its state is whole."""
    name = newest_state(experiment_uri)
    if name is None:
        return f"Tune's state ({STATE_PATTERN}) is missing"
    try:
        data = Store(experiment_uri).read_bytes(name)
        if len(data) > MAX_STATE_BYTES:
            return f"Tune's state {name} is over {MAX_STATE_BYTES >> 20} MiB"
        state = json.loads(data)
    except (OSError, ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        reason = getattr(err, "strerror", None) or str(err)
        return f"Tune's state {name} is torn or unreadable ({reason[:200]})"
    if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list) \
            or not isinstance(state.get("runner_data"), dict):
        return f"Tune's state {name} is not a Tune experiment state (no trial_data or runner_data)"
    if not all(isinstance(t, list) and len(t) == 2 for t in state["trial_data"]):
        return f"Tune's state {name} has a damaged trial entry"
    return None


def trial_statuses(experiment_uri: str) -> list[str] | None:
    """Each trial's status in Tune's newest state ("TERMINATED", "ERROR", "RUNNING", ...); None when
    the state is missing or damaged (state_problem says why)."""
    if state_problem(experiment_uri) is not None:
        return None
    state = json.loads(Store(experiment_uri).read_bytes(newest_state(experiment_uri)))
    statuses = []
    for trial, _ in state["trial_data"]:
        try:
            statuses.append(str((json.loads(trial) if isinstance(trial, str) else trial).get("status")))
        except (ValueError, AttributeError):
            return None
    return statuses
