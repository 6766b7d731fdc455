"""The per-trial limits (trainables/limits.py) on real threads and real memory, without Ray: a hung
trial is stopped as TrialTimedOut, a growing one as TrialOutOfMemory, and a watchdog never outlives
its trial (Tune reuses a worker process for the next trial)."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import psutil
import pytest

from orchestrator.tune.callbacks import failure_category
from orchestrator.config.sweep import SweepConfig
from trainables.limits import TrialLimits, TrialOutOfMemory, TrialTimedOut, Watchdog
from trainables.fault_drills import _allocate_until_stopped, _wait_until_stopped
from trainables.schema import ConfigError


def _run_in_thread(fn):
    """Run fn in a fresh thread (as Tune runs a function trainable) and return what it raised."""
    outcome = {}

    def body() -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - the outcome under test
            outcome["error"] = err

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the watchdog did not stop the trial"
    return outcome.get("error")


def test_a_hung_trial_is_stopped_as_timed_out_and_classified_timeout(request):
    from conftest import print_figure

    t0 = time.monotonic()

    def trial() -> None:
        with Watchdog(TrialLimits(timeout_s=0.5), poll_s=0.05):
            _wait_until_stopped()

    error = _run_in_thread(trial)
    took = time.monotonic() - t0
    print_figure(request, f"limits: hang stopped {took:.2f} s after start (limit 0.5 s): {error}")
    assert isinstance(error, TrialTimedOut) and "trial_timeout_s=0.5" in str(error)
    assert 0.5 <= took < 2.0
    assert failure_category(f"ray.exceptions.RayTaskError(TrialTimedOut): {error}") == "timeout"


def test_a_growing_trial_is_stopped_as_out_of_memory_and_its_memory_freed(request):
    from conftest import print_figure

    before = psutil.Process().memory_info().rss / 2**20
    limit = before + 300
    watchdog = Watchdog(TrialLimits(memory_mb=limit), poll_s=0.05)

    def trial() -> None:
        with watchdog:
            _allocate_until_stopped()

    error = _run_in_thread(trial)
    kind, text, peak = type(error), str(error), watchdog.peak_rss_mb
    error = watchdog = None  # their tracebacks hold the drill's frames, as Tune's copy does until it is sent
    gc.collect()
    after = psutil.Process().memory_info().rss / 2**20
    print_figure(request, f"limits: alloc stopped at {peak:.0f} MB resident (limit {limit:.0f} MB, "
                          f"{before:.0f} MB before, {after:.0f} MB after): {text}")
    assert kind is TrialOutOfMemory and "trial_memory_mb" in text
    assert limit < peak < limit + 200
    assert after < limit
    assert failure_category(f"ray.exceptions.RayTaskError(TrialOutOfMemory): {text}") == "oom"


def test_the_watchdog_ends_with_its_trial_and_never_fires_later():
    done = []

    def trial() -> None:
        with Watchdog(TrialLimits(timeout_s=0.3, memory_mb=1e6), poll_s=0.02):
            np.ones(1000).sum()
        time.sleep(0.6)  # past the limit, outside the trial: the next trial of a reused worker
        done.append(True)

    before = {t.name for t in threading.enumerate()}
    assert _run_in_thread(trial) is None and done == [True]
    assert "memlaw-trial-limits" not in {t.name for t in threading.enumerate()} - before


def test_a_trial_that_swallows_the_error_still_fails():
    def trial() -> None:
        with Watchdog(TrialLimits(timeout_s=0.2), poll_s=0.02):
            for _ in range(100):
                try:
                    time.sleep(0.02)
                except TrialTimedOut:
                    pass  # a trial's own broad except must not hide the breach

    assert isinstance(_run_in_thread(trial), TrialTimedOut)


def test_without_limits_no_thread_runs():
    with Watchdog(TrialLimits()) as watchdog:
        assert watchdog._thread is None


def test_sweep_limits_are_validated_with_their_range():
    base = {"name": "s", "space": "law_grid_smoke"}
    assert SweepConfig.from_dict({**base, "trial_timeout_s": 30, "trial_memory_mb": 2048}).trial_limits() == \
        TrialLimits(timeout_s=30, memory_mb=2048)
    for field, value, words in (("trial_timeout_s", -1, "[0.0, 604800.0]"), ("trial_memory_mb", 100, "at least 512"),
                                ("trial_timeout_s", float("nan"), "trial_timeout_s")):
        with pytest.raises(ConfigError) as err:
            SweepConfig.from_dict({**base, field: value})
        assert field in str(err.value) and words in str(err.value), str(err.value)
