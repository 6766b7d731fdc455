"""The running line: what a sweep (and its validation phase) prints while trials train, in place of
Tune's boxed status tables. One line on stderr naming the trials running now (their axes or label,
step of their own budget, loss) and k/n done, at most every REPORT_EVERY_S and only when it changed.

Its own module so that tuner.py and validation_phase.py both use it without importing each other."""

from __future__ import annotations

import sys
import time

from ray.tune import CLIReporter
from ray.tune.experiment import Trial

from orchestrator.config.sweep import SweepConfig
from orchestrator.search.kinds import search_of
from trainables import metric_names as K

REPORT_EVERY_S = 30


def say(line: str) -> None:
    print(f"[memlaw] {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


class RunningLine(CLIReporter):
    """Tune's live table cut to what a person reads: one line naming the trials running now (their
    axes, step, loss) and the counts, at most every REPORT_EVERY_S and only when it changed. No
    status header (the start block says where the experiment is; Tune's own header names its
    temporary driver_artifacts folder) and no final table (the sweep prints its own, from the records)."""

    def __init__(self, sweep: SweepConfig, resolve=None, label=None, total: int | None = None, **kwargs):
        """`resolve(config)` -> the trial's TrialConfig (default: the sweep's trial_config) and
        `label(trial_config)` -> its name (default: its axes): the validation phase passes its own."""
        super().__init__(**kwargs)
        self.sweep, self.total = sweep, sweep.trial_count() if total is None else total
        self.resolve, self.label = resolve, label
        self._last: tuple = ()

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        running = [t for t in trials if t.status == Trial.RUNNING]
        key = tuple((t.trial_id, (t.last_result or {}).get(K.STEP)) for t in running)
        if done or not running or key == self._last:
            return
        self._last = key
        parts = []
        for t in running:
            result, trial = t.last_result or {}, (self.resolve or self.sweep.trial_config)(t.config)
            step, loss = result.get(K.STEP), result.get(K.LOSS_FINAL)
            where = (f"step {step}/{trial.budget.steps}, loss {loss:.3g}" if step is not None and loss is not None
                     else "starting")  # the trial's own budget: a grid may vary budget.steps
            name = self.label(trial) if self.label else search_of(self.sweep).trial_label(self.sweep, trial.to_dict())
            parts.append(f"{name} ({where})")
        done_n = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        say(f"running {'; '.join(parts)}   [{done_n}/{max(self.total, len(trials))} done]")
