"""The sweep's Optuna study kept consistent with Tune's trials, across a driver crash.

OptunaSearch asks Optuna for a trial (RUNNING in `<experiment>/optuna.journal` at once) when Tune
creates a trial, and tells Optuna the outcome when the Tune trial ends. Tune saves its trials and
the searcher together, every few seconds; the journal is written at every ask. A driver killed
between an ask and Tune's next save leaves an Optuna trial that no Tune trial will ever end: after
`memlaw resume` it would stay RUNNING forever, which optuna-dashboard shows as a live trial and
which samplers that consider running trials would keep avoiding.

So each Optuna trial names its Tune trial (user attribute `tune_trial_id`), and when a sweep's
Tuner.fit() returns, when no Tune trial runs any more, every Optuna trial still RUNNING is an
orphan: it is marked FAIL with the reason in `memlaw_failed_reason`. A Tune trial that Tune
restores (its own snapshot had it) keeps its Optuna trial, and the resumed run tells it; one that
Tune restores as running although it had finished (and Optuna was told) keeps its first outcome.

No knob set runs twice. A method without knobs (SFT, MemFT-SW at its defaults) is one point of the
space, and a sampler draws it again and again: the Optuna example ran the same MemFT-SW trial 4
times in 12. A suggestion whose knobs equal an earlier trial's is answered from that trial (told
the same values, user attribute `memlaw_answered_from` naming it; later, when that trial is still
running) and the sampler is asked again, so every Tune trial trains a knob set not trained before.
After MAX_REPEATS repeats in a row the space is taken as exhausted and the search ends.
"""

from __future__ import annotations

import json
import logging
import threading

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)
TUNE_TRIAL_ID = "tune_trial_id"
FAILED_REASON = "memlaw_failed_reason"
ORPHANED = "orphaned: the driver stopped before Tune saved the trial that asked for it (driver crash)"
ANSWERED_FROM = "memlaw_answered_from"
MAX_REPEATS = 200  # repeats in a row after which the space counts as exhausted (a few ms each)


def knob_key(params: dict) -> str:
    """A knob set as one comparable string (the params Optuna drew, nested by Tune)."""
    return json.dumps(params, sort_keys=True, default=str)


class TaggedOptunaSearch(OptunaSearch):
    """OptunaSearch whose Optuna trials record the Tune trial they belong to (see the module doc)."""

    def _state(self, name: str) -> dict:
        return self.__dict__.setdefault(name, {})  # a searcher restored from an older snapshot lacks it

    def suggest(self, trial_id: str):
        """A knob set no earlier Tune trial of this search has; repeats are answered (module doc)."""
        trained, outcomes, waiting = self._state("_knob_sets"), self._state("_outcomes"), self._state("_waiting")
        for _ in range(MAX_REPEATS):
            params = super().suggest(trial_id)
            if params is None or params == Searcher.FINISHED:
                return params
            earlier = trained.get(knob_key(params))
            if earlier is None or earlier == trial_id:  # new, or Tune asking again for the same trial
                trained[knob_key(params)] = trial_id
                self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ID, trial_id)
                return params
            repeat = self._ot_trials.pop(trial_id)
            repeat.set_user_attr(ANSWERED_FROM, earlier)
            if earlier in outcomes:
                self._tell_repeat(repeat, *outcomes[earlier])
            else:
                waiting.setdefault(earlier, []).append(repeat)
        log.warning("memlaw: the sampler drew only knob sets already trained (%d in a row): the space is "
                    "exhausted, the search ends", MAX_REPEATS)
        return Searcher.FINISHED

    def _outcome(self, result: dict | None, error: bool) -> tuple:
        """(values, state) as OptunaSearch.on_trial_complete tells them for this result."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [result.get(m) for m in metrics] if result else [None]
        if any(v is None for v in values):
            return None, optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
        return (values if isinstance(self.metric, list) else values[0]), optuna.trial.TrialState.COMPLETE

    def _tell_repeat(self, repeat, values, state) -> None:
        try:
            self._ot_study.tell(repeat, values, state=state)
        except Exception as exc:  # e.g. a NaN value, as OptunaSearch.on_trial_complete does
            log.warning("memlaw: Optuna refused the answer of a repeated knob set: %s", exc)

    def _told_before_crash(self) -> set[str]:
        return self.__dict__.setdefault("_told_before", set())  # a restored older searcher lacks it

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """A trial told before a driver crash that Tune's older snapshot runs again: its Optuna trial
        is finished, and reporting to it raised UpdateFinishedTrialError, which ended the resume."""
        if trial_id in self._told_before_crash():
            return
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            log.info("memlaw: Optuna already has the outcome of trial %s (told before a driver crash)", trial_id)
            self._told_before_crash().add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._told_before_crash():  # the first outcome stands, as in the records journal
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)
        outcome = self._outcome(result, error)
        self._state("_outcomes")[trial_id] = outcome
        for repeat in self._state("_waiting").pop(trial_id, []):
            self._tell_repeat(repeat, *outcome)


class PicklableNSGAII(optuna.samplers.NSGAIISampler):
    """Optuna 5's NSGAIISampler holds a `_thread_lock`, which cannot be pickled, so every NSGA-II sweep
    failed when Tune saved its searcher. The lock is left out of the pickle and made anew on load."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def nsga2_sampler(seed: int) -> PicklableNSGAII:
    """NSGA-II that Tune can pickle with its searcher (Tune saves the searcher with the experiment)."""
    return PicklableNSGAII(seed=seed, population_size=50, crossover_prob=0.9, swapping_prob=0.5)  # explicit


def fail_orphaned_trials(storage, study_name: str) -> list[int]:
    """Mark FAIL every RUNNING trial of the study; call it only when no Tune trial runs. Returns
    the numbers of the trials it failed."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, FAILED_REASON, ORPHANED)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        failed.append(trial.number)
    if failed:
        log.warning("memlaw: %d Optuna trial(s) left RUNNING by a crashed driver marked FAIL: %s", len(failed), failed)
    return failed
