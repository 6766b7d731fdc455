"""Search kinds: how a sweep chooses its trials. One object per kind, one registry, no Ray.

    kind       space         trials                       Tune's side (orchestrator/tune/searchers.py)
    grid       GridSpace     every point x num_samples    param_space of grid_search axes
    optuna     OptunaSpace   num_samples                  OptunaSearch (TPE / NSGA-II) on the experiment's journal
    adaptive   GridSpace     at most max_trials (or the   AdaptiveLawSearcher: law-guided (rank, ℓ) points
                             grid's size)

Everything that differs between kinds and can be decided without Ray lives on its object here: the
search knobs it owns, its config problems, its trial count, the trial fields it requires, its
live-table columns, its stopping lines, whether a validation phase follows and why there is no
law. What Tune runs (its param space, its search algorithm, what it does once Tuner.fit() returns)
is the kind's row in orchestrator/tune/searchers.py, so validation and the read-only commands
never import Ray. Nothing else in memlaw branches on the kind: `search_of(sweep)` is the one
dispatch here, `tune_side(sweep)` there.

To add a search kind: write one class below with the `SearchKind` methods, add it to SEARCHES and
to SearchConfig.kind's Literal, and give it a row in orchestrator/tune/searchers.py.
tests/test_searches.py runs every kind of the registry against the examples and a smoke grid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import search_spaces
from orchestrator.search import trial_label
from search_spaces.law_grid import GridSpace
from search_spaces.memft import OptunaSpace, Param
from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.schema import Config, ConfigError, Problem, range_problem, set_dotted, spec


class SweepView(Protocol):
    """What a search kind reads of a sweep (orchestrator/config/sweep.py's SweepConfig has it all):
    the kinds sit below the sweep file's config, which dispatches to them."""

    name: str
    space: str
    space_overrides: dict
    search: SearchConfig
    num_samples: int
    scheduler: str
    max_concurrency: int

    @property
    def experiment_uri(self) -> str: ...


GREEDY_METRICS = (K.GREEDY_EXACT_MATCH, K.GREEDY_TOKEN_ACC, K.FIRST_GREEDY_ERROR_POS)
OBJECTIVES = (K.GREEDY_EXACT_MATCH, K.GREEDY_TOKEN_ACC, K.FRAC_P_GT_HALF, K.FRAC_SEQUENCES_CERTIFIED,
              K.TF_TOKEN_ACC, K.DELTA_LOSS, K.LOSS_FINAL, K.STEPS_TO_CERTIFIED, K.STABLE_CERTIFIED_FROM,
              K.CERTIFICATION_LOSSES, K.WALL_S)


@dataclass(frozen=True)
class SearchConfig(Config):
    """How trials are chosen. Each knob belongs to the kinds that read it (SEARCHES[kind].knobs);
    setting it for another kind is refused rather than silently ignored."""

    kind: Literal["grid", "optuna", "adaptive"] = spec(
        "grid", "grid: every point of a grid space; optuna: TPE/NSGA-II search; adaptive: law-guided "
                "rank x length points of a grid space (orchestrator/law/adaptive_design.py)")
    sampler: Literal["tpe", "nsga2"] = spec("tpe", "optuna: the sampler (nsga2 for several objectives)")
    metrics: tuple[str, ...] = spec(factory=lambda: (K.GREEDY_EXACT_MATCH,), doc="optuna: objective metric(s)")
    modes: tuple[str, ...] = spec(factory=lambda: ("max",), doc="optuna: max or min, one per metric")
    seed: int = spec(0, "optuna: sampler seed; adaptive: tie-break seed of the initial design", lo=0)
    alpha_tol: float = spec(0.05, "adaptive: stop when the 95 % interval of alpha is at most this wide",
                            lo=0.0, lo_open=True)
    beta_tol: float = spec(0.05, "adaptive: stop when the 95 % interval of beta is at most this wide",
                           lo=0.0, lo_open=True)
    max_trials: int = spec(0, "adaptive: trials at most, retries included (0: the grid's size)", lo=0, hi=100000)
    initial_points: int = spec(6, "adaptive: space-filling points run before the first law-guided one",
                               lo=5, hi=100000)
    cost_budget_hours: float = spec(0.0, "adaptive: stop once the trials' summed wall time would pass this many "
                                         "hours (GPU-hours with one GPU a trial; measured where a trial finished, "
                                         "predicted from FLOP counts where not; 0: no cost budget)",
                                    lo=0.0, hi=1e6)
    validate_top: int = spec(3, "optuna: held-out validation of the k best knob sets, beside SFT and MemFT-OT "
                                "(0: no validation)", lo=0, hi=100)
    validate_seeds: int = spec(7, "optuna: fresh seeds (adapter init and data) per validated arm; at least the "
                                  "fewest with which a winner can pass Holm over the validate_top + 1 arms compared "
                                  "with SFT (2^-n <= 0.05 / arms: 6 for validate_top 1 or 2, 7 for 3 to 5); "
                                  "fewer runs, and its verdict says no winner was reachable",
                               lo=2, hi=1000)

    def cross_checks(self) -> list[Problem]:
        return _foreign_knobs(self) + SEARCHES[self.kind].knob_problems(self)


def _foreign_knobs(search: SearchConfig) -> list[Problem]:
    """Knobs set (to a value other than the default) that the chosen kind does not read."""
    problems = []
    for name in sorted(ALL_KNOBS - SEARCHES[search.kind].knobs):
        if getattr(search, name) != _default(name):
            owners = sorted(k for k, s in SEARCHES.items() if name in s.knobs)
            problems.append(Problem(name, f"only for search.kind {' or '.join(owners)} (search.kind is "
                                          f"{search.kind})"))
    return problems


def _default(name: str) -> Any:
    f = SearchConfig.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def search_of(sweep: SweepView) -> SearchKind:
    """The one dispatch on the kind of a sweep's search."""
    return SEARCHES[sweep.search.kind]


class SearchKind(Protocol):
    """What a search kind decides. `sweep` is a SweepView whose own fields are valid."""

    name: str
    knobs: frozenset[str]  # SearchConfig fields this kind reads

    def knob_problems(self, search: SearchConfig) -> list[Problem]: ...
    def problems(self, sweep: SweepView, base: TrialConfig) -> list[Problem]: ...
    def trial_count(self, sweep: SweepView) -> int: ...
    def tune_samples(self, sweep: SweepView) -> int: ...
    def trial_overrides(self, sweep: SweepView) -> dict[str, Any]: ...
    def model_axes(self, sweep: SweepView) -> tuple[list[Any], list[Any]]: ...
    def reporter_params(self, sweep: SweepView) -> list[str]: ...
    def stopping_lines(self, sweep: SweepView, report: dict[str, Any]) -> list[str]: ...
    def scheduler_problem(self, sweep: SweepView) -> str | None: ...
    def validation(self, sweep: SweepView) -> set[str] | None: ...
    def law_reason(self, sweep: SweepView) -> str | None: ...
    def trial_label(self, sweep: SweepView, config: dict[str, Any]) -> str: ...
    def line_metrics(self, sweep: SweepView) -> tuple[str, ...]: ...


ASHA_NEEDS = "asha needs search.kind: optuna with exactly one metric"
#: The most trials a grid may expand to (points x num_samples), checked from the axes' lengths before
#: any point is built: each point is validated (~1 ms), and the paper's own grid has 208 points.
MAX_GRID_TRIALS = 10_000


def resolve_trial(base: TrialConfig, values: dict[str, Any]) -> TrialConfig:
    """One sweep trial's TrialConfig: the base trial with the trial's sampled values."""
    return TrialConfig.from_dict(set_dotted(base.to_dict(), values))


# -- grid-shaped kinds ------------------------------------------------------------------------------
def sweep_grid(sweep: SweepView) -> GridSpace:
    return search_spaces.get(sweep.space).with_axes(sweep.space_overrides)


def _space_type_problem(sweep: SweepView, wanted: type, kind: str) -> list[Problem]:
    space = search_spaces.get(sweep.space)
    if isinstance(space, wanted):
        return []
    what = "an Optuna space" if isinstance(space, OptunaSpace) else "a grid"
    need = "a grid space" if wanted is GridSpace else "an Optuna space"
    return [Problem("space", f"{sweep.space!r} is {what}; search.kind: {kind} needs {need}")]


def grid_size_problems(sweep: SweepView) -> list[Problem]:
    """Empty axes, or more than MAX_GRID_TRIALS trials: judged from the axes' lengths alone, so a
    short file that multiplies into millions of points is refused at once."""
    problems = [Problem(f"space_overrides.{key}", "an empty list leaves the grid with no trials")
                for key, values in sweep.space_overrides.items() if isinstance(values, (list, tuple)) and not values]
    if problems:
        return problems
    axes = sweep_grid(sweep).axes
    trials = len(sweep_grid(sweep)) * sweep.num_samples
    if trials > MAX_GRID_TRIALS:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        where = "space_overrides" if sweep.space_overrides else "space"
        return [Problem(where, f"the grid expands to {trials:,} trials ({sizes} x num_samples {sweep.num_samples}); "
                               f"at most {MAX_GRID_TRIALS:,} (use search.kind: adaptive or fewer values)")]
    return []


def _grid_point_problems(sweep: SweepView, base: TrialConfig) -> list[Problem]:
    """Every point of the grid resolves to a valid TrialConfig; each problem named once."""
    problems = grid_size_problems(sweep)
    if problems:
        return problems
    seen: dict[str, Problem] = {}
    for point in sweep_grid(sweep).points():
        try:
            resolve_trial(base, point)
        except ConfigError as err:
            for p in err.problems:
                where = (f"space_overrides.{p.field}" if p.field in sweep.space_overrides
                         else f"space {sweep.space}: {p.field}")
                seen.setdefault(f"{where}: {p.message}", Problem(where, p.message))
    return list(seen.values())


class Grid:
    name = "grid"
    knobs: frozenset[str] = frozenset()

    def knob_problems(self, search: SearchConfig) -> list[Problem]:
        return []

    def problems(self, sweep: SweepView, base: TrialConfig) -> list[Problem]:
        return _space_type_problem(sweep, GridSpace, self.name) or _grid_point_problems(sweep, base)

    def trial_count(self, sweep: SweepView) -> int:
        return len(sweep_grid(sweep)) * sweep.num_samples

    def tune_samples(self, sweep: SweepView) -> int:
        return sweep.num_samples  # Tune repeats the whole grid num_samples times

    def trial_overrides(self, sweep: SweepView) -> dict[str, Any]:
        return {}

    def model_axes(self, sweep: SweepView) -> tuple[list[Any], list[Any]]:
        axes = sweep_grid(sweep).axes
        return list(axes.get("adapter.rank", ())), list(axes.get("model.name", ()))

    def reporter_params(self, sweep: SweepView) -> list[str]:
        return list(sweep_grid(sweep).axes)

    def stopping_lines(self, sweep: SweepView, report: dict[str, Any]) -> list[str]:
        return []

    def scheduler_problem(self, sweep: SweepView) -> str | None:
        return ASHA_NEEDS if sweep.scheduler == "asha" else None

    def validation(self, sweep: SweepView) -> set[str] | None:
        """None: a law grid has no held-out validation phase."""
        return None

    def law_reason(self, sweep: SweepView) -> str | None:
        """None: a grid over rank and length is what the law is fitted on."""
        return None

    def trial_label(self, sweep: SweepView, config: dict[str, Any]) -> str:
        """A trial in the terminal: its point of the law (orchestrator/search/trial_label.py)."""
        return trial_label.law_point(config)

    def line_metrics(self, sweep: SweepView) -> tuple[str, ...]:
        """The metrics a finished trial's line shows: what the law and its certificate read."""
        return (K.DELTA_LOSS, K.FRAC_P_GT_HALF, K.GREEDY_EXACT_MATCH)


class Adaptive(Grid):
    """Law-guided points of a grid space (orchestrator/law/adaptive_design.py); it stops on its own rule."""

    name = "adaptive"
    knobs = frozenset({"seed", "alpha_tol", "beta_tol", "max_trials", "initial_points", "cost_budget_hours"})

    def knob_problems(self, search: SearchConfig) -> list[Problem]:
        if 0 < search.max_trials < search.initial_points:  # the budget must cover the initial design
            return [Problem("max_trials", f"must be 0 or at least initial_points ({search.initial_points}), "
                                          f"got {search.max_trials}")]
        return []

    def problems(self, sweep: SweepView, base: TrialConfig) -> list[Problem]:
        return (_space_type_problem(sweep, GridSpace, self.name) or grid_size_problems(sweep)
                or self._candidate_problems(sweep) or _grid_point_problems(sweep, base))

    def _candidate_problems(self, sweep: SweepView) -> list[Problem]:
        """The grid must give candidates: rank and length axes, every other axis a single value."""
        from orchestrator.law.design_points import candidates_from_grid  # numpy: only for adaptive sweeps

        try:
            n = len(candidates_from_grid(sweep_grid(sweep)).points)
        except ValueError as err:
            return [Problem("space_overrides" if sweep.space_overrides else "space", str(err))]
        if sweep.search.initial_points > n:
            return [Problem("search.initial_points", f"the grid has only {n} rank x length points, "
                                                     f"got {sweep.search.initial_points}")]
        return []

    def trial_count(self, sweep: SweepView) -> int:
        return sweep.search.max_trials or len(sweep_grid(sweep))  # at most: the rule may stop it sooner

    def tune_samples(self, sweep: SweepView) -> int:
        return self.trial_count(sweep)  # one Tune sample per proposal; the searcher ends the run

    def settings(self, sweep: SweepView):
        from orchestrator.law.adaptive_design import Settings

        s = sweep.search
        return Settings(alpha_tol=s.alpha_tol, beta_tol=s.beta_tol, max_trials=s.max_trials,
                        initial_points=s.initial_points, seed=s.seed, cost_budget=3600.0 * s.cost_budget_hours)

    def stopping_lines(self, sweep: SweepView, report: dict[str, Any]) -> list[str]:
        """Per group, the α/β interval widths against the stopping rule."""
        from orchestrator.law.adaptive_design import AdaptiveDesign
        from orchestrator.law.design_points import candidates_from_grid
        from orchestrator.law.grouping import GroupFit

        design = AdaptiveDesign(candidates_from_grid(sweep_grid(sweep)), self.settings(sweep))
        lines = []
        for label, group in report["groups"].items():
            st = design.stopping_status(GroupFit.from_dict(group).fit, report["trials_accepted"])
            widths = ", ".join(f"{p} width {st[f'{p}_width']:.3g} (tolerance {st[f'{p}_tol']:g})"
                               if st[f"{p}_width"] is not None else f"{p} width -" for p in ("alpha", "beta"))
            verdict = f"fired: {st['reason']}" if st["fired"] else "not yet"
            lines.append(f"  stopping rule [{label}]: {widths}; {st['n_done']}/{st['max_trials']} trials; {verdict}")
        return lines


# -- Optuna -----------------------------------------------------------------------------------------
def sweep_optuna_space(sweep: SweepView) -> OptunaSpace:
    space = search_spaces.get(sweep.space)
    return space.with_ranges({k: [_as_number(x) for x in v] if isinstance(v, (list, tuple)) else v
                              for k, v in sweep.space_overrides.items()})


def _as_number(value: Any) -> Any:
    """A range end: YAML 1.1 reads 1e-3 (no dot) as a string, which TrialConfig's floats accept too."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


NO_LAW = ("no law for this sweep: an Optuna search over {space} varies training knobs, not rank x length, so "
          "there is nothing to fit ΔL = C·r^α·ℓ^(−β) + b on; its result is the best trials or Pareto front "
          "(memlaw best {where})")


class Optuna:
    name = "optuna"
    knobs = frozenset({"sampler", "metrics", "modes", "seed", "validate_top", "validate_seeds"})

    def knob_problems(self, search: SearchConfig) -> list[Problem]:
        problems = []
        bad = [m for m in search.metrics if m not in OBJECTIVES]
        if bad:
            problems.append(Problem("metrics", f"unknown metric(s) {bad} (allowed: {', '.join(OBJECTIVES)})"))
        if not search.metrics:
            problems.append(Problem("metrics", "needs at least one metric"))
        if len(search.modes) != len(search.metrics):
            problems.append(Problem("modes", f"needs one mode per metric ({len(search.metrics)}), "
                                             f"got {len(search.modes)}"))
        if any(m not in ("max", "min") for m in search.modes):
            problems.append(Problem("modes", f"each mode must be max or min, got {list(search.modes)}"))
        return problems

    def problems(self, sweep: SweepView, base: TrialConfig) -> list[Problem]:
        return (_space_type_problem(sweep, OptunaSpace, self.name) or self._override_problems(sweep)
                or [p for param in sweep_optuna_space(sweep).params for p in _param_problems(
                    param, f"space_overrides.{param.name}" if param.name in sweep.space_overrides
                    else f"space {sweep.space}: {param.name}")])

    def _override_problems(self, sweep: SweepView) -> list[Problem]:
        """Each override names a parameter of the space and has its shape (choices, or [low, high])."""
        params = {p.name: p for p in search_spaces.get(sweep.space).params}
        problems = [Problem(f"space_overrides.{key}", f"not a parameter of {sweep.space} "
                                                      f"(allowed: {', '.join(sorted(params))})")
                    for key in sweep.space_overrides if key not in params]
        for key, value in sweep.space_overrides.items():
            p = params.get(key)
            if p is None:
                continue
            if not isinstance(value, (list, tuple)):
                problems.append(Problem(f"space_overrides.{key}", (
                    "must be a list of choices" if p.kind == "categorical" else "must be a range [low, high]")
                    + f", got {type(value).__name__} {value!r}"))
            elif p.kind != "categorical" and not (len(value) == 2 and all(_is_number(_as_number(x)) for x in value)):
                problems.append(Problem(f"space_overrides.{key}", f"must be a range [low, high] of two numbers, "
                                                                  f"got {value!r}"))
        return problems

    def trial_count(self, sweep: SweepView) -> int:
        return sweep.num_samples

    def tune_samples(self, sweep: SweepView) -> int:
        return sweep.num_samples

    def trial_overrides(self, sweep: SweepView) -> dict[str, Any]:
        """A searcher must see a greedy metric at every evaluation, not only at the end."""
        return {"eval.greedy_every": 1} if any(m in GREEDY_METRICS for m in sweep.search.metrics) else {}

    def model_axes(self, sweep: SweepView) -> tuple[list[Any], list[Any]]:
        return [], []

    def reporter_params(self, sweep: SweepView) -> list[str]:
        # Only parameters every trial has: the reporter's best-trial line raises KeyError on a trial
        # without one (an SFT trial draws no MemFT margin), which ended single-metric Optuna sweeps.
        return [p.name for p in sweep_optuna_space(sweep).params if not p.methods]

    def stopping_lines(self, sweep: SweepView, report: dict[str, Any]) -> list[str]:
        return []

    def scheduler_problem(self, sweep: SweepView) -> str | None:
        return ASHA_NEEDS if sweep.scheduler == "asha" and len(sweep.search.metrics) != 1 else None

    def validation(self, sweep: SweepView) -> set[str] | None:
        """A search over the training method gets the held-out validation of its best knob sets
        (`validate_top` > 0; the plan: orchestrator/search/validation_plan.py), a second Tune phase
        (orchestrator/tune/validation_phase.py): the fields searched, or None."""
        searched = {p.name for p in sweep_optuna_space(sweep).params}
        if not sweep.search.validate_top or "method.name" not in searched:
            return None
        return searched

    def law_reason(self, sweep: SweepView) -> str | None:
        return NO_LAW.format(space=sweep.space, where=sweep.experiment_uri)

    def trial_label(self, sweep: SweepView, config: dict[str, Any]) -> str:
        """A trial in the terminal: its knob set, as `memlaw best` names it."""
        return trial_label.knob_set(config)

    def line_metrics(self, sweep: SweepView) -> tuple[str, ...]:
        """The search's objectives, in its order."""
        return tuple(sweep.search.metrics)


def _param_problems(p: Param, where: str) -> list[Problem]:
    """An Optuna parameter against the TrialConfig field it sets: choices valid, range inside the field's."""
    meta = TrialConfig.field_meta(p.name)
    if meta is None:
        return [Problem(where, "not a TrialConfig field")]
    if p.kind == "categorical":
        if not p.choices:
            return [Problem(where, "needs at least one choice")]
        bad = [c for c in p.choices if _invalid_value(p.name, c)]
        return [Problem(where, f"invalid choice(s) {bad}")] if bad else []
    if p.low is None or p.high is None or not p.low < p.high:
        return [Problem(where, f"needs low < high, got [{p.low}, {p.high}]")]
    if p.log and p.low <= 0:
        return [Problem(where, f"a log range needs low > 0, got {p.low}")]
    for end in (p.low, p.high):
        message = range_problem(end, meta)
        if message:
            return [Problem(where, f"range end {message}")]
    return []


def _invalid_value(dotted: str, value: Any) -> bool:
    try:
        TrialConfig.from_dict(set_dotted({}, {dotted: value}))
    except ConfigError:
        return True
    return False


SEARCHES: dict[str, SearchKind] = {"grid": Grid(), "optuna": Optuna(), "adaptive": Adaptive()}
ALL_KNOBS = frozenset(f for f in SearchConfig.__dataclass_fields__ if f != "kind")
