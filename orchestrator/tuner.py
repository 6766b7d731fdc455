"""Builds and runs the Tuner for an experiment: the one place that knows Tune's API.

    Experiment(uri, SweepConfig) -> Tuner(with_resources(with_parameters(memorize)),
                                          param_space | search algorithm (the search kind's),
                                          scheduler, RunConfig(storage, FailureConfig,
                                          callbacks=[forwarder, law lines]))

What differs between search kinds comes from orchestrator/searches.py; Ray itself is started by
orchestrator/ray_session.py. Trials reuse their actors (a new worker per trial would re-pay the
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

from orchestrator import results_actor
from orchestrator.callbacks import ResultsForwarder, checkpoint_path
from orchestrator.config import SweepConfig
from orchestrator.experiment import Experiment, exclusive_run
from orchestrator.law_report import format_report
from orchestrator.live import clear_live, write_live
from orchestrator.ray_session import NAMESPACE, start_ray
from orchestrator.records import completion_status, record_from_result
from orchestrator.searches import search_of
from orchestrator.trainable import memorize, memorize_zero
from trainables import metric_names as K

log = logging.getLogger(__name__)
ZERO_DRIVER_CPU = 0.01  # a zero trial's Tune process only launches and waits for its ranks
LIVE_COLUMNS = (K.STEP, K.LOSS_FINAL, K.DELTA_LOSS, K.FRAC_P_GT_HALF, K.GREEDY_EXACT_MATCH)


class LawLines(tune.Callback):
    """Prints the live fit from the results actor as trials land (without blocking Tune)."""

    def __init__(self, sweep: SweepConfig):
        self.sweep = sweep  # no stream kept: Tune pickles its callbacks with the run config
        self._ref = None

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ask()

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ask()

    def _ask(self) -> None:
        if search_of(self.sweep).law_reason(self.sweep):  # no law to print for this space
            return
        if self._ref is None:
            self._ref = results_actor.find(self.sweep.name).report.remote(wait_s=10.0)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self._ref is None:
            return
        ready, _ = ray.wait([self._ref], timeout=0)
        if ready:
            report, self._ref = ray.get(self._ref), None
            text = "\n".join([format_report(report), *search_of(self.sweep).stopping_lines(self.sweep, report)])
            print(f"\n[memlaw] {time.strftime('%H:%M:%S')} " + text + "\n", file=sys.stderr, flush=True)


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
    """The live trial table: the sweep's own axes and the metrics that matter, every 15 s."""
    from ray.tune import CLIReporter

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the classic reporter takes our columns; the new one prints every metric
    return CLIReporter(parameter_columns=search_of(sweep).reporter_params(sweep), metric_columns=list(LIVE_COLUMNS),
                       max_report_frequency=15, max_progress_rows=40, sort_by_metric=False)


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
        num_samples=kind.tune_samples(sweep), search_alg=kind.search_alg(sweep, experiment.uri),
        scheduler=_scheduler(sweep), max_concurrent_trials=sweep.max_concurrency, reuse_actors=True,
        metric=search.metrics[0] if single else None, mode=search.modes[0] if single else None,
    )
    return tune.Tuner(_trainable(experiment), param_space=kind.param_space(sweep), tune_config=tune_config,
                      run_config=_run_config(experiment))


def run_sweep(sweep: SweepConfig, address: str | None = None) -> tune.ResultGrid:
    """Hold the experiment, start (or join) Ray, start the results actor, run every trial,
    reconcile the records. ExperimentBusy before Ray starts when another run holds it."""
    experiment = Experiment.of(sweep)
    with exclusive_run(experiment.uri):
        start_ray(address)
        experiment.save_sweep()
        results_actor.get_or_create(sweep.name, experiment.uri, sweep.fit)
        with _reachable(experiment):
            grid = build_tuner(experiment).fit()
        return _finish(experiment, grid)


def resume_sweep(experiment: Experiment, address: str | None = None) -> tune.ResultGrid:
    """Continue an interrupted sweep where its folder is now, with Tuner.restore: finished trials are
    not rerun. ExperimentBusy before Ray starts when another run holds it."""
    sweep = experiment.sweep
    with exclusive_run(experiment.uri):
        start_ray(address)
        results_actor.get_or_create(sweep.name, experiment.uri, sweep.fit)
        tuner = tune.Tuner.restore(experiment.uri, trainable=_trainable(experiment), resume_errored=False,
                                   restart_errored=False, param_space=search_of(sweep).param_space(sweep) or None)
        with _reachable(experiment):
            grid = tuner.fit()
        return _finish(experiment, grid)


@contextlib.contextmanager
def _reachable(experiment: Experiment):
    """While trials run: the experiment says where its Ray is, so another shell can ask the live law."""
    address = ray.get_runtime_context().gcs_address
    write_live(experiment.uri, experiment.sweep.name, address, NAMESPACE)
    print(f"memlaw: sweep {experiment.sweep.name!r} on Ray at {address}; the live law from another shell:\n"
          f"  memlaw law --experiment {experiment.uri} --live", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        clear_live(experiment.uri)


def _finish(experiment: Experiment, grid: tune.ResultGrid) -> tune.ResultGrid:
    reconcile(experiment, grid)
    search_of(experiment.sweep).after_sweep(experiment.sweep, experiment.uri)
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
