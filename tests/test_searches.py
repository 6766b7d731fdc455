"""Every search kind of the registry against the same rules, in the spirit of Optuna's shared
sampler tests: valid examples have no problems, foreign knobs are refused, the Ray-free parts import
no Ray, and `trial_count` is what Tune really runs on a smoke space."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import yaml

from conftest import EXAMPLES, REPO
from orchestrator.config.sweep import SweepConfig
from orchestrator.search.kinds import ALL_KNOBS, SEARCHES, SearchConfig, search_of
from trainables import metric_names as K
from trainables.schema import ConfigError

SMOKE_TRIAL = {"model": {"name": "tiny-xs"}, "data": {"kind": "random", "target_tokens": 32},
               "budget": {"preset": "cpu", "steps": 20}, "eval": {"every": 10}}
#: One small sweep per kind: the space it needs and a search section that exercises its knobs.
SMOKE = {
    "grid": {"space": "law_grid_smoke", "search": {"kind": "grid"}, "num_samples": 2},
    "optuna": {"space": "memft_optuna", "search": {"kind": "optuna", "metrics": [K.FRAC_P_GT_HALF], "seed": 3,
                                                            "validate_top": 0},
               "num_samples": 4},
    "adaptive": {"space": "law_grid_cpu", "search": {"kind": "adaptive", "initial_points": 5, "max_trials": 7,
                                                     "alpha_tol": 1e-9, "beta_tol": 1e-9}},
}
#: A value other than the default for every knob, valid for the kinds that own it.
OTHER_VALUE = {"sampler": "nsga2", "metrics": [K.WALL_S], "modes": ["min"], "seed": 7, "alpha_tol": 0.2,
               "beta_tol": 0.2, "max_trials": 9, "initial_points": 8, "cost_budget_hours": 2.0,
               "validate_top": 1, "validate_seeds": 3}


def smoke_sweep(kind: str, tmp_path) -> SweepConfig:
    return SweepConfig.from_dict({"name": f"conf-{kind}", "trial": SMOKE_TRIAL, "storage_path": str(tmp_path),
                                  "max_concurrency": 2, **SMOKE[kind]})


def test_registry_covers_every_kind_the_config_allows():
    from typing import get_args, get_type_hints

    assert set(SEARCHES) == set(get_args(get_type_hints(SearchConfig)["kind"])) == set(SMOKE)
    assert set(OTHER_VALUE) == ALL_KNOBS
    for name, kind in SEARCHES.items():
        assert kind.name == name and kind.knobs <= ALL_KNOBS


@pytest.mark.parametrize("kind", sorted(SEARCHES))
@pytest.mark.parametrize("knob", sorted(ALL_KNOBS))
def test_a_knob_is_refused_for_a_kind_that_does_not_read_it(kind, knob):
    search = {"kind": kind, knob: OTHER_VALUE[knob]}
    if knob == "metrics":
        search["modes"] = ["max"]
    if kind == "adaptive" and knob == "max_trials":
        search["initial_points"] = 5
    if knob in SEARCHES[kind].knobs:
        value = OTHER_VALUE[knob]
        assert getattr(SearchConfig.from_dict(search), knob) == (tuple(value) if isinstance(value, list) else value)
        return
    with pytest.raises(ConfigError) as err:
        SearchConfig.from_dict(search)
    assert [(p.field, p.message.split(" (")[0]) for p in err.value.problems] == [
        (knob, "only for search.kind " + " or ".join(sorted(k for k, s in SEARCHES.items() if knob in s.knobs)))]


def _sweep_examples() -> list[str]:
    """Every sweep example but the 8B paper sweeps, whose base trial names hub models that need the
    offline config fixture of tests/test_examples.py (which validates them, trial count included)."""
    return sorted(p.name for p in EXAMPLES.glob("*.yaml") if "space" in yaml.safe_load(p.read_text())
                  and not p.name.startswith("paper_"))


@pytest.mark.parametrize("example", _sweep_examples())
def test_every_sweep_example_is_valid_and_counts_its_trials(example):
    data = yaml.safe_load((EXAMPLES / example).read_text())
    sweep = SweepConfig.from_dict(data)
    kind = search_of(sweep)
    assert kind.problems(sweep, sweep.base_trial) == []
    assert kind.trial_count(sweep) >= 1
    assert set(kind.trial_overrides(sweep)) <= {"eval.greedy_every"}


@pytest.mark.parametrize("kind", sorted(SEARCHES))
def test_ray_free_parts_import_no_ray(kind, tmp_path):
    code = ("import sys, json\n"
            "for name in ('ray', 'torch', 'deepspeed', 'optuna'): sys.modules[name] = None\n"
            "from orchestrator.config.sweep import SweepConfig\n"
            "from orchestrator.search.kinds import search_of\n"
            "sweep = SweepConfig.from_dict(json.loads(sys.argv[1]))\n"
            "kind = search_of(sweep)\n"
            "report = {'groups': {}, 'trials_accepted': 0}\n"
            "print(kind.trial_count(sweep), kind.reporter_params(sweep), kind.stopping_lines(sweep, report))\n")
    import json

    sweep = {"name": "x", "trial": SMOKE_TRIAL, "storage_path": str(tmp_path), **SMOKE[kind]}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(sweep)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == str(smoke_sweep(kind, tmp_path).trial_count())


# -- what Tune runs ------------------------------------------------------------------------------------
LAW = dict(C=3.0, alpha=0.7, beta=0.5, b=0.05)


def synthetic_trial(config: dict) -> None:
    """Reports a law-shaped final result at once: the searchers see what a real trial reports."""
    from ray import tune

    rank, ell = config.get("adapter.rank", 4), config.get("data.target_tokens", 64)
    delta = LAW["C"] * rank ** LAW["alpha"] * ell ** -LAW["beta"] + LAW["b"]
    tune.report({K.RANK: rank, K.TARGET_TOKENS: ell, K.DELTA_LOSS: delta, K.LOSS_INIT: 6.0,
                 K.LOSS_FINAL: 6.0 - delta, K.FRAC_P_GT_HALF: min(1.0, delta / 6.0), K.STEP: 20,
                 K.GREEDY_EXACT_MATCH: 0.0, K.WALL_S: 0.1 + math.log(rank)})


@pytest.fixture(scope="module")
def local_ray():
    import ray  # imported before start_ray on purpose: the embedded Ray must still come up with its token
    from ray import cloudpickle

    from orchestrator.tune.ray_session import start_ray

    start_ray(None, num_cpus=2)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    yield
    ray.shutdown()


@pytest.mark.slow  # Tuner.fit of each kind
@pytest.mark.parametrize("kind", sorted(SEARCHES))
def test_trial_count_is_what_tune_runs(kind, tmp_path, local_ray):
    """The kind's Tune side (param space, search algorithm, samples) on a smoke sweep, with a
    synthetic trial: Tune runs exactly `trial_count` trials (adaptive: its budget, as the
    tolerances cannot be met), and the after-sweep step leaves no Optuna trial RUNNING."""
    from ray import tune

    from orchestrator.tune.searchers import tune_side

    sweep = smoke_sweep(kind, tmp_path)
    search, side = search_of(sweep), tune_side(sweep)
    tuner = tune.Tuner(synthetic_trial, param_space=side.param_space(sweep), tune_config=tune.TuneConfig(
        num_samples=search.tune_samples(sweep), search_alg=side.search_alg(sweep, sweep.experiment_uri),
        max_concurrent_trials=sweep.max_concurrency),
        run_config=tune.RunConfig(name=sweep.name, storage_path=str(tmp_path), verbose=0))
    grid = tuner.fit()
    side.after_sweep(sweep, sweep.experiment_uri)
    assert len(grid) == search.trial_count(sweep) and not grid.errors
    if kind == "optuna":
        import optuna

        from orchestrator.experiment.folder import optuna_storage

        study = optuna.load_study(study_name=sweep.name, storage=optuna_storage(sweep.experiment_uri))
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * len(grid)
    assert dataclasses.asdict(sweep.search) == dataclasses.asdict(SearchConfig.from_dict(SMOKE[kind]["search"]))


def test_every_search_kind_has_a_tune_side():
    """A kind added to search.kinds.SEARCHES without its row in tune.searchers.TUNE_SIDES fails here."""
    from orchestrator.tune.searchers import TUNE_SIDES

    assert sorted(TUNE_SIDES) == sorted(SEARCHES)
