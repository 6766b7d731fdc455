"""Builds and runs the Tuner for an experiment: the one place that knows Tune's API.

    Experiment(uri, SweepConfig) -> Tuner(with_resources(with_parameters(memorize)),
                                          param_space | search algorithm (the search kind's),
                                          scheduler, RunConfig(storage, FailureConfig,
                                          callbacks=[forwarder, law lines]))

What differs between search kinds comes from orchestrator/search/kinds.py and its Tune side
orchestrator/tune/searchers.py; Ray itself is started by
orchestrator/tune/ray_session.py. Trials reuse their actors (a new worker per trial would re-pay the
~4 s torch import).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

import ray
from ray import tune
from ray.tune.experiment import Trial

from orchestrator.tune import interrupt, results_actor
from orchestrator.tune import sweep_output
from orchestrator.tune.running_line import REPORT_EVERY_S, RunningLine, say as _say
from orchestrator.tune.callbacks import ResultsForwarder, StorageWatch, checkpoint_path
from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.folder import Experiment, exclusive_run, optuna_storage
from orchestrator.experiment.live_file import clear_live, write_live
from orchestrator.tune.moved_experiment import repoint_search_state
from orchestrator.tune.search_counter import reconcile_search_counter
from orchestrator.tune.ray_session import NAMESPACE, start_ray, token_hint
from orchestrator.tune.run_provenance import record_this_run
from orchestrator.records.journal import LAW_FOLDER
from orchestrator.records.storage_failure import Reserve, StorageFailed
from orchestrator.records.trial_record import completion_status, record_from_result
from orchestrator.search.kinds import search_of
from orchestrator.tune.searchers import tune_side
from orchestrator.tune.trainable import memorize, memorize_zero

log = logging.getLogger(__name__)
ZERO_DRIVER_CPU = 0.01  # a zero trial's Tune process only launches and waits for its ranks


FIT_EVERY_S = 15.0


class LawLines(tune.Callback):
    """The sweep's live lines (without blocking Tune): one per finished trial with k/n and an ETA,
    then the fit from the results actor when it moved, at most every FIT_EVERY_S, and once more at
    the end (orchestrator/tune/sweep_output.py). A line per trial doubled a resume's output."""

    def __init__(self, sweep: SweepConfig):
        self.sweep = sweep  # no stream kept: Tune pickles its callbacks with the run config
        self.total = sweep.trial_count()
        self._ref = None
        self._started: float | None = None
        self._done: set[str] = set()
        self._done_this_run = 0
        self._last_fit: list[str] = []
        self._fit_at = 0.0  # when the fit was last asked for

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self._started is None:  # this run's start (also after a restore: the ETA's rate is this run's)
            self._started = time.time()
            self._done = {t.trial_id for t in trials if t.status in (Trial.TERMINATED, Trial.ERROR)}

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished(trial, completion_status(trial.last_result, _prunes(self.sweep)))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished(trial, "failed")  # its category (nan, error, timeout, ...) is in the final table

    def _finished(self, trial, status: str) -> None:
        if trial.trial_id not in self._done:
            self._done.add(trial.trial_id)
            self._done_this_run += 1
        started = self._started or time.time()
        elapsed = time.time() - started
        total = max(self.total, len(self._done))
        eta = sweep_output.eta_s(len(self._done), total, self._done_this_run, elapsed)
        kind = search_of(self.sweep)
        name = kind.trial_label(self.sweep, self.sweep.trial_config(trial.config).to_dict())
        _say(sweep_output.trial_line(len(self._done), total, name, trial.last_result or {},
                                     kind.line_metrics(self.sweep), status, elapsed, eta))
        if kind.law_reason(self.sweep):  # no law to print for this space
            return
        if self._ref is None and time.time() - getattr(self, "_fit_at", 0.0) >= FIT_EVERY_S:
            self._fit_at = time.time()  # the fit once the actor holds at least this many records
            self._ref = results_actor.find(self.sweep.name).report.remote(wait_s=10.0, at_least=len(self._done))

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self._ref is None:
            return
        ready, _ = ray.wait([self._ref], timeout=0)
        if ready:
            self._print_fit(ray.get(self._ref))

    def on_experiment_end(self, trials: list, **info) -> None:
        """The fit of every finished trial, once more: a refit asked while another was pending was
        skipped, so the last line could read 'law after 22 trials' for 24 (issue 25 item 10)."""
        if self._done and not search_of(self.sweep).law_reason(self.sweep):
            with contextlib.suppress(Exception):  # the actor gone: the end table says what storage holds
                self._print_fit(ray.get(results_actor.find(self.sweep.name).report.remote(
                    wait_s=10.0, at_least=len(self._done)), timeout=15))

    def _print_fit(self, report: dict) -> None:
        self._ref = None
        lines = [*sweep_output.fit_line(report), *search_of(self.sweep).stopping_lines(self.sweep, report)]
        if lines != self._last_fit:
            self._last_fit = lines
            for line in lines:
                _say(line)


def _prunes(sweep: SweepConfig) -> bool:
    """Whether the sweep's scheduler may end trials early (an unfinished trial is then `pruned`)."""
    return sweep.scheduler != "fifo"


def _scheduler(sweep: SweepConfig):
    if sweep.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        base = sweep.base_trial
        return ASHAScheduler(metric=sweep.search.metrics[0], mode=sweep.search.modes[0], time_attr="steps",
                             max_t=base.budget.steps, grace_period=max(1, base.eval.every))
    return None


def _callbacks(experiment: Experiment) -> list:
    sweep = experiment.sweep
    resolve = lambda cfg: sweep.trial_config(cfg).to_dict()
    return [ResultsForwarder(sweep.name, resolve, pruning=_prunes(sweep)),
            LawLines(sweep)]


def _trainable(experiment: Experiment):
    sweep, base = experiment.sweep, experiment.sweep.base_trial.to_dict()
    if sweep.trainable == "zero":  # the ranks ask for their own resources (zero.cpu_per_worker, ...)
        fn = tune.with_parameters(memorize_zero, base=base, zero=sweep.zero.to_dict(), experiment_uri=experiment.uri)
        return tune.with_resources(fn, {"cpu": ZERO_DRIVER_CPU, **sweep.resources.custom})
    fn = tune.with_parameters(memorize, base=base, limits=sweep.trial_limits(), experiment_uri=experiment.uri)
    memory = {"memory": sweep.trial_memory_mb * 2**20} if sweep.trial_memory_mb else {}  # Ray packs nodes by it
    return tune.with_resources(fn, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu, **memory,
                                    **sweep.resources.custom})


def _reporter(sweep: SweepConfig):
    """The running line: the sweep's own axes and the metrics that matter, every REPORT_EVERY_S."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the classic reporter takes a ProgressReporter; the new one prints every metric
    return RunningLine(sweep, parameter_columns=search_of(sweep).reporter_params(sweep),
                       metric_columns=list(sweep_output.LIVE_COLUMNS), max_report_frequency=REPORT_EVERY_S, sort_by_metric=False)


def _run_config(experiment: Experiment) -> tune.RunConfig:
    sweep = experiment.sweep
    storage = sweep.storage_path if "://" in sweep.storage_path else os.path.abspath(sweep.storage_path)
    return tune.RunConfig(
        name=sweep.name, storage_path=storage, callbacks=_callbacks(experiment),
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=1, progress_reporter=_reporter(sweep),
    )


def build_tuner(experiment: Experiment) -> tune.Tuner:
    sweep = experiment.sweep
    kind, search = search_of(sweep), sweep.search
    single = len(search.metrics) == 1 and "metrics" in kind.knobs and sweep.scheduler == "fifo"
    tune_config = tune.TuneConfig(
        num_samples=kind.tune_samples(sweep), search_alg=tune_side(sweep).search_alg(sweep, experiment.uri),
        scheduler=_scheduler(sweep), max_concurrent_trials=sweep.max_concurrency, reuse_actors=True,
        metric=search.metrics[0] if single else None, mode=search.modes[0] if single else None,
    )
    return tune.Tuner(_trainable(experiment), param_space=tune_side(sweep).param_space(sweep), tune_config=tune_config,
                      run_config=_run_config(experiment))


def run_sweep(sweep: SweepConfig, address: str | None = None, dashboard: bool = False) -> tune.ResultGrid:
    """Hold the experiment, start (or join) Ray, start the results actor, run every trial,
    reconcile the records. ExperimentBusy before Ray starts when another run holds it;
    StorageFailed when the experiment's storage stopped taking writes."""
    experiment = Experiment.of(sweep)
    with exclusive_run(experiment.uri):
        url = start_ray(address, dashboard=dashboard)
        results_actor.get_or_create(sweep.name, experiment.uri, sweep.fit)  # before the folder says "experiment"
        experiment.save_sweep()
        record_this_run(experiment.uri, resumed=False)  # provenance.json: what this run ran on
        with _reachable(experiment, url), _storage_watched(experiment), interrupt.watch() as caught:
            grid = build_tuner(experiment).fit()
        return _finish(experiment, grid, caught["interrupted"])


def resume_sweep(experiment: Experiment, address: str | None = None, dashboard: bool = False) -> tune.ResultGrid:
    """Continue an interrupted sweep where its folder is now, with Tuner.restore: finished trials are
    not rerun. ExperimentBusy before Ray starts when another run holds it."""
    sweep = experiment.sweep
    with exclusive_run(experiment.uri):
        url = start_ray(address, dashboard=dashboard)
        results_actor.get_or_create(sweep.name, experiment.uri, sweep.fit)
        repoint_search_state(experiment.uri)  # a moved or copied experiment: new trials go where it is now
        ghosts = reconcile_search_counter(experiment.uri)  # trials counted by Tune's snapshot but not saved
        if ghosts:
            print(f"memlaw: {len(ghosts)} trial(s) started just before the driver stopped were not in Tune's snapshot "
                  f"({', '.join(ghosts)}; no result of theirs was recorded): their places are run again", flush=True)
        record_this_run(experiment.uri, resumed=True)
        # resume_errored: a trial stopped by a full disk is an error to Tune; a journaled failure
        # replays as one without training (trainable._replay_journaled), so only the former trains on
        _reporter(sweep)  # the classic output engine, so the restored RunningLine prints, not Tune's tables
        tuner = tune.Tuner.restore(experiment.uri, trainable=_trainable(experiment), resume_errored=True,
                                   restart_errored=False, param_space=tune_side(sweep).param_space(sweep) or None)
        with _reachable(experiment, url), _storage_watched(experiment), interrupt.watch() as caught:
            grid = tuner.fit()
        return _finish(experiment, grid, caught["interrupted"])


@contextlib.contextmanager
def _storage_watched(experiment: Experiment):
    """While trials run: a space reserve in a local experiment, and the callbacks' storage watch.
    A storage failure (whatever Tune raised after it, such as a torn pickle) ends as StorageFailed."""
    reserve = None
    if "://" not in experiment.uri:
        reserve = Reserve(os.path.join(experiment.uri, LAW_FOLDER))
        if not reserve.hold():
            reserve = None
    StorageWatch.arm(reserve, experiment.uri)
    try:
        yield
    except Exception:
        if StorageWatch.failure is None:
            raise
    finally:
        if reserve is not None:
            reserve.release()
    if StorageWatch.failure is not None:
        raise StorageFailed(StorageWatch.failure, experiment.uri)


@contextlib.contextmanager
def _reachable(experiment: Experiment, dashboard_url: str | None = None):
    """While trials run: the experiment says where its Ray is, so another shell can ask the live law;
    the one status block of the run says where everything is."""
    address = ray.get_runtime_context().gcs_address
    write_live(experiment.uri, experiment.sweep.name, address, NAMESPACE)
    print(start_block(experiment, address, dashboard_url), file=sys.stderr, flush=True)
    try:
        yield
    finally:
        clear_live(experiment.uri)


def start_block(experiment: Experiment, address: str, dashboard_url: str | None) -> str:
    sweep = experiment.sweep
    lines = [f"memlaw: sweep {sweep.name!r}: {sweep.trial_count()} trials ({sweep.search.kind} over {sweep.space}), "
             f"{sweep.max_concurrency} at a time, on Ray at {address}",
             f"  experiment   {experiment.uri}   (trials, records journal, fit.json)"]
    if dashboard_url:
        lines += [f"  dashboard    {dashboard_url}   (Actors -> {results_actor.actor_name(sweep.name)} -> Logs: "
                  "one line per refit)", f"               {token_hint()}"]
    lines.append(f"  live law     memlaw law --experiment {experiment.uri} --live     (from another shell)")
    return "\n".join(lines)


def _finish(experiment: Experiment, grid: tune.ResultGrid, interrupted: bool = False) -> tune.ResultGrid:
    """Reconcile the records; then, unless a Ctrl-C stopped the sweep (SweepInterrupted: no
    after-sweep step, no validation on a half-done search), the search's last steps."""
    reconcile(experiment, grid)
    if interrupted:
        raise interrupt.SweepInterrupted(experiment.uri, grid)
    tune_side(experiment.sweep).after_sweep(experiment.sweep, experiment.uri)
    searched = search_of(experiment.sweep).validation(experiment.sweep)
    if searched is not None:  # the held-out validation: a second Tune phase of the same experiment
        from orchestrator.tune.validation_phase import run_validation

        run_validation(experiment.sweep, experiment.uri, searched, optuna_storage(experiment.uri))
    return grid


def reconcile(experiment: Experiment, grid: tune.ResultGrid) -> int:
    """Send every finished trial of the ResultGrid to the actor again (idempotent): a record lost
    between a trial's end and the callback's acknowledgement (driver crash) is recovered here."""
    sweep = experiment.sweep
    actor = results_actor.find(sweep.name)
    refs = []
    for result in grid:
        trial_id = (result.metrics or {}).get("trial_id")
        if result.error is not None or not trial_id:
            continue
        config = sweep.trial_config(result.config).to_dict()
        checkpoint = checkpoint_path(result.checkpoint, result.metrics)
        status = completion_status(result.metrics, pruning=_prunes(sweep))
        record = record_from_result(trial_id, sweep.name, config, result.metrics, status=status, checkpoint=checkpoint)
        refs.append(actor.add.remote(record.to_dict()))
    return sum(ray.get(refs))
