"""What Tune runs for each search kind: its param space, its search algorithm, its end.

    kind       param_space                  search_alg                                after_sweep
    grid       grid_search of every axis    none (Tune walks the grid)                nothing
    adaptive   none                         AdaptiveLawSearcher (law-guided points)   nothing
    optuna     none                         OptunaSearch on the experiment's journal  fail orphaned trials

The kinds themselves (their knobs, problems, trial counts, ...) are orchestrator/search/kinds.py,
which needs no Ray; this table is their Tune side, one row per kind of search.kinds.SEARCHES
(tests/test_searches.py checks that both registries name the same kinds).
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

from ray import tune

from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.folder import optuna_storage
from orchestrator.search.kinds import search_of, sweep_grid, sweep_optuna_space


class TuneSide(Protocol):
    """A search kind's part of the Tuner."""

    def param_space(self, sweep: SweepConfig) -> dict[str, Any]: ...
    def search_alg(self, sweep: SweepConfig, experiment_uri: str) -> Any: ...
    def after_sweep(self, sweep: SweepConfig, experiment_uri: str) -> None: ...


class GridSide:
    def param_space(self, sweep: SweepConfig) -> dict[str, Any]:
        return {key: tune.grid_search(list(values)) for key, values in sweep_grid(sweep).axes.items()}

    def search_alg(self, sweep: SweepConfig, experiment_uri: str) -> Any:
        return None

    def after_sweep(self, sweep: SweepConfig, experiment_uri: str) -> None:
        return None


class AdaptiveSide(GridSide):
    def param_space(self, sweep: SweepConfig) -> dict[str, Any]:
        return {}

    def search_alg(self, sweep: SweepConfig, experiment_uri: str) -> Any:
        from orchestrator.tune.adaptive_search import AdaptiveLawSearcher, flop_prior

        return AdaptiveLawSearcher.from_grid(sweep_grid(sweep), search_of(sweep).settings(sweep),
                                             max_concurrent=sweep.max_concurrency,
                                             cost=flop_prior(sweep.base_trial))


class OptunaSide:
    def param_space(self, sweep: SweepConfig) -> dict[str, Any]:
        return {}

    def search_alg(self, sweep: SweepConfig, experiment_uri: str) -> Any:
        import optuna
        from ray.tune.search import ConcurrencyLimiter

        from orchestrator.tune.optuna_study import TaggedOptunaSearch, nsga2_sampler
        from search_spaces.memft import define_by_run

        s = sweep.search
        # Every option that Optuna's releases have defaulted differently is set here (Optuna 5 turned
        # TPE's constant liar on and 4 had it off), so a sweep file means one study under either.
        sampler = (nsga2_sampler(s.seed) if s.sampler == "nsga2"
                   else optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=10, multivariate=True,
                                                   constant_liar=True))
        metric = list(s.metrics) if len(s.metrics) > 1 else s.metrics[0]
        mode = list(s.modes) if len(s.modes) > 1 else s.modes[0]
        storage = optuna_storage(experiment_uri, create=True)
        searcher = TaggedOptunaSearch(space=define_by_run(sweep_optuna_space(sweep)), metric=metric, mode=mode,
                                      sampler=sampler, storage=storage, study_name=sweep.name)
        # optuna-dashboard labels the objectives by these names (the searcher has created the study)
        # (through a storage of its own: a used JournalStorage holds a lock, and Tune pickles the searcher's)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since 3.2
            optuna.load_study(study_name=sweep.name, storage=optuna_storage(experiment_uri)).set_metric_names(
                list(s.metrics))
        return ConcurrencyLimiter(searcher, max_concurrent=sweep.max_concurrency)

    def after_sweep(self, sweep: SweepConfig, experiment_uri: str) -> None:
        """No Tune trial runs now, so an Optuna trial still RUNNING was orphaned by a crashed driver."""
        from orchestrator.tune.optuna_study import fail_orphaned_trials

        fail_orphaned_trials(optuna_storage(experiment_uri), sweep.name)


TUNE_SIDES: dict[str, TuneSide] = {"grid": GridSide(), "optuna": OptunaSide(), "adaptive": AdaptiveSide()}


def tune_side(sweep: SweepConfig) -> TuneSide:
    """The one dispatch on the kind on Tune's side (search.kinds.search_of is the other)."""
    return TUNE_SIDES[sweep.search.kind]
