"""Builds and runs the Tuner for a SweepConfig: the one place that knows Tune's API.

    SweepConfig -> Tuner(with_resources(with_parameters(memorize)), param_space | OptunaSearch,
                         scheduler, RunConfig(storage, FailureConfig, callbacks=[forwarder, law lines]))

The embedded default is a new local Ray started in-process (every process bound to 127.0.0.1, token
authentication on, no dashboard web server, a capped object store); `--address` joins an existing cluster instead. Trials reuse their actors
(a new worker per trial would re-pay the ~4 s torch import).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from orchestrator import results_actor
from orchestrator.callbacks import ResultsForwarder, checkpoint_path
from orchestrator.config import SweepConfig, resolve_trial
from orchestrator.law_report import format_report
from orchestrator.records import record_from_result
from orchestrator.trainable import memorize, memorize_zero
from trainables import metric_names as K

log = logging.getLogger(__name__)
OBJECT_STORE_BYTES = 128 * 1024 * 1024
SWEEP_FILE = "memlaw_sweep.json"  # the validated sweep, saved with the experiment for `memlaw resume`
OPTUNA_FILE = "optuna.journal"


def start_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join `address`, or start the embedded local Ray (no dashboard, small object store)."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, namespace=results_actor.NAMESPACE, log_to_driver=False)
    else:
        # address="local": always a new in-process cluster, never one that `ray start` left running.
        with _loopback_node_ip():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                     namespace=results_actor.NAMESPACE, log_to_driver=False, _node_ip_address="127.0.0.1")


@contextlib.contextmanager
def _loopback_node_ip():
    """Keep the embedded node's address 127.0.0.1, so that every process it starts listens on loopback only.

    ray.init turns a loopback `_node_ip_address` into the machine's address (so that other machines
    could join) unless Ray clusters are off: `ray_constants.ENABLE_RAY_CLUSTER`, read once from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import and consulted only by `services.get_node_ip_address`.
    With it off during ray.init, GCS, raylet, agents and workers get --node-ip-address=127.0.0.1 and
    bind there (tests/test_security.py lists every socket). Restored at once: joining a cluster with
    `--address` must still see the machine's address."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


class LawLines(tune.Callback):
    """Prints the live fit from the results actor as trials land (without blocking Tune)."""

    def __init__(self, sweep: SweepConfig):
        self.sweep = sweep  # no stream kept: Tune pickles its callbacks with the run config
        self._ref = None
        self._finished = 0

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished += 1
        self._ask()

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished += 1
        self._ask()

    def _ask(self) -> None:
        if self._ref is None:
            self._ref = results_actor.find(self.sweep.name).report.remote(wait_s=10.0)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self._ref is None:
            return
        ready, _ = ray.wait([self._ref], timeout=0)
        if ready:
            report, self._ref = ray.get(self._ref), None
            text = "\n".join([format_report(report), *stopping_lines(self.sweep, report)])
            print(f"\n[memlaw] {time.strftime('%H:%M:%S')} " + text + "\n",
                  file=sys.stderr, flush=True)


def _param_space(sweep: SweepConfig) -> dict[str, Any]:
    if sweep.search.kind != "grid":
        return {}
    return {key: tune.grid_search(list(values)) for key, values in sweep.grid().axes.items()}


def optuna_storage_path(sweep: SweepConfig) -> str:
    return os.path.join(sweep.experiment_uri, OPTUNA_FILE)


def optuna_storage(sweep: SweepConfig):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(optuna_storage_path(sweep)))


def fail_orphaned_optuna_trials(sweep: SweepConfig) -> list[int]:
    """After Tuner.fit(): no Tune trial runs, so a RUNNING Optuna trial was orphaned by a crashed
    driver (orchestrator/optuna_study.py)."""
    if sweep.search.kind != "optuna":
        return []
    from orchestrator.optuna_study import fail_orphaned_trials

    return fail_orphaned_trials(optuna_storage(sweep), sweep.name)


def _search_alg(sweep: SweepConfig):
    if sweep.search.kind == "adaptive":  # issue 9: law-guided points; it limits its own concurrency
        return _adaptive_searcher(sweep)
    if sweep.search.kind != "optuna":
        return None
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from orchestrator.optuna_study import TaggedOptunaSearch
    from search_spaces.memft import define_by_run

    s = sweep.search
    sampler = (optuna.samplers.NSGAIISampler(seed=s.seed) if s.sampler == "nsga2"
               else optuna.samplers.TPESampler(seed=s.seed))
    Path(sweep.experiment_uri).mkdir(parents=True, exist_ok=True)
    metric = list(s.metrics) if len(s.metrics) > 1 else s.metrics[0]
    mode = list(s.modes) if len(s.modes) > 1 else s.modes[0]
    searcher = TaggedOptunaSearch(space=define_by_run(sweep.optuna_space()), metric=metric, mode=mode,
                                  sampler=sampler, storage=optuna_storage(sweep), study_name=sweep.name)
    return ConcurrencyLimiter(searcher, max_concurrent=sweep.max_concurrency)


def adaptive_settings(sweep: SweepConfig):
    from orchestrator.adaptive import Settings

    s = sweep.search
    return Settings(alpha_tol=s.alpha_tol, beta_tol=s.beta_tol, max_trials=s.max_trials,
                    initial_points=s.initial_points, seed=s.seed)


def stopping_lines(sweep: SweepConfig, report: dict[str, Any]) -> list[str]:
    """For adaptive sweeps: per group, the α/β interval widths against the stopping rule."""
    if sweep.search.kind != "adaptive":
        return []
    from orchestrator.adaptive import AdaptiveDesign, candidates_from_grid
    from orchestrator.law import GroupFit

    design = AdaptiveDesign(candidates_from_grid(sweep.grid()), adaptive_settings(sweep))
    lines = []
    for label, group in report["groups"].items():
        st = design.stopping_status(GroupFit.from_dict(group).fit, report["trials_accepted"])
        widths = ", ".join(f"{p} width {st[f'{p}_width']:.3g} (tolerance {st[f'{p}_tol']:g})"
                           if st[f"{p}_width"] is not None else f"{p} width -" for p in ("alpha", "beta"))
        verdict = f"fired: {st['reason']}" if st["fired"] else "not yet"
        lines.append(f"  stopping rule [{label}]: {widths}; {st['n_done']}/{st['max_trials']} trials; {verdict}")
    return lines


def _adaptive_searcher(sweep: SweepConfig):
    from orchestrator.adaptive_search import AdaptiveLawSearcher

    return AdaptiveLawSearcher.from_grid(sweep.grid(), adaptive_settings(sweep), max_concurrent=sweep.max_concurrency)


def _scheduler(sweep: SweepConfig):
    if sweep.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(metric=sweep.search.metrics[0], mode=sweep.search.modes[0], time_attr="steps",
                             max_t=sweep.base_trial().budget.steps, grace_period=max(1, sweep.base_trial().eval.every))
    return None


def _callbacks(sweep: SweepConfig) -> list:
    base = sweep.trial_base()
    return [ResultsForwarder(sweep.name, sweep.experiment_uri, lambda cfg: resolve_trial(base, cfg).to_dict(),
                             sweep.capacity_variable),
            LawLines(sweep)]


ZERO_DRIVER_CPU = 0.01  # a zero trial's Tune process only launches and waits for its ranks


def _trainable(sweep: SweepConfig):
    if sweep.trainable == "zero":  # the ranks ask for their own resources (zero.cpu_per_worker, ...)
        fn = tune.with_parameters(memorize_zero, base=sweep.trial_base(), zero=sweep.zero.to_dict(),
                                  experiment_uri=sweep.experiment_uri)
        return tune.with_resources(fn, {"cpu": ZERO_DRIVER_CPU, **sweep.resources.custom})
    fn = tune.with_parameters(memorize, base=sweep.trial_base(), limits=sweep.trial_limits(),
                              experiment_uri=sweep.experiment_uri)
    memory = {"memory": sweep.trial_memory_mb * 2**20} if sweep.trial_memory_mb else {}  # Ray packs nodes by it
    return tune.with_resources(fn, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu, **memory,
                                    **sweep.resources.custom})


LIVE_COLUMNS = (K.STEP, K.LOSS_FINAL, K.DELTA_LOSS, K.FRAC_P_GT_HALF, K.GREEDY_EXACT_MATCH)


def _reporter(sweep: SweepConfig):
    """The live trial table: the sweep's own axes and the metrics that matter, every 15 s."""
    from ray.tune import CLIReporter

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the classic reporter takes our columns; the new one prints every metric
    grid_like = sweep.search.kind in ("grid", "adaptive")  # adaptive proposes points of a grid space
    # Only parameters every trial has: the reporter's best-trial line raises KeyError on a trial
    # without one (an SFT trial draws no MemFT margin), which ended single-metric Optuna sweeps.
    params = list(sweep.grid().axes) if grid_like else [p.name for p in sweep.optuna_space().params
                                                        if not p.methods]
    return CLIReporter(parameter_columns=params, metric_columns=list(LIVE_COLUMNS), max_report_frequency=15,
                       max_progress_rows=40, sort_by_metric=False)


def _run_config(sweep: SweepConfig) -> tune.RunConfig:
    storage = sweep.storage_path if "://" in sweep.storage_path else os.path.abspath(sweep.storage_path)
    return tune.RunConfig(
        name=sweep.name, storage_path=storage, callbacks=_callbacks(sweep),
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=1, progress_reporter=_reporter(sweep),
    )


def build_tuner(sweep: SweepConfig) -> tune.Tuner:
    search = sweep.search
    single = len(search.metrics) == 1 and search.kind == "optuna" and sweep.scheduler == "fifo"
    num_samples = sweep.num_samples
    if search.kind == "adaptive":  # one Tune sample per adaptive trial; the searcher stops earlier
        num_samples = search.max_trials or len(sweep.grid())
    tune_config = tune.TuneConfig(
        num_samples=num_samples, search_alg=_search_alg(sweep), scheduler=_scheduler(sweep),
        max_concurrent_trials=sweep.max_concurrency, reuse_actors=True,
        metric=search.metrics[0] if single else None, mode=search.modes[0] if single else None,
    )
    return tune.Tuner(_trainable(sweep), param_space=_param_space(sweep), tune_config=tune_config,
                      run_config=_run_config(sweep))


def save_sweep(sweep: SweepConfig) -> None:
    from orchestrator.storage import Store

    Store(sweep.experiment_uri).write_json(SWEEP_FILE, sweep.to_dict())


def run_sweep(sweep: SweepConfig, address: str | None = None) -> tune.ResultGrid:
    """Start (or join) Ray, start the results actor, run every trial, reconcile the records."""
    start_ray(address)
    save_sweep(sweep)
    results_actor.get_or_create(sweep.name, sweep.experiment_uri, sweep.capacity_variable)
    grid = build_tuner(sweep).fit()
    reconcile(sweep, grid)
    fail_orphaned_optuna_trials(sweep)
    return grid


def resume_sweep(sweep: SweepConfig, address: str | None = None) -> tune.ResultGrid:
    """Continue an interrupted sweep with Tuner.restore: finished trials are not rerun."""
    start_ray(address)
    results_actor.get_or_create(sweep.name, sweep.experiment_uri, sweep.capacity_variable)
    tuner = tune.Tuner.restore(sweep.experiment_uri, trainable=_trainable(sweep), resume_errored=False,
                               restart_errored=False, param_space=_param_space(sweep) or None)
    grid = tuner.fit()
    reconcile(sweep, grid)
    fail_orphaned_optuna_trials(sweep)
    return grid


def reconcile(sweep: SweepConfig, grid: tune.ResultGrid) -> int:
    """Send every finished trial of the ResultGrid to the actor again (idempotent): a record lost
    between a trial's end and the callback's acknowledgement (driver crash) is recovered here."""
    actor = results_actor.find(sweep.name)
    refs = []
    for result in grid:
        trial_id = (result.metrics or {}).get("trial_id")
        if result.error is not None or not trial_id:
            continue
        config = resolve_trial(sweep.trial_base(), result.config).to_dict()
        checkpoint = checkpoint_path(result.checkpoint, result.metrics)
        record = record_from_result(trial_id, sweep.name, config, result.metrics, checkpoint=checkpoint)
        refs.append(actor.add.remote(record.to_dict()))
    return sum(ray.get(refs))
