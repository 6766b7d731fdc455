"""SweepConfig: what a sweep file may say, validated completely before Ray starts.

    name: law-grid-cpu
    trial: {model: {name: tiny-s}, adapter: {placement: paper}, ...}   # the base TrialConfig
    space: law_grid_cpu                                                # from search_spaces/
    space_overrides: {adapter.rank: [1, 2, 4]}                         # replace axes or ranges
    search: {kind: grid}                                               # or optuna (see SearchConfig)
    resources: {cpu: 1, gpu: 0}                                        # + custom: {memlaw_driver: 1}
    max_concurrency: 2
    storage_path: memlaw-runs
    max_failures: 1
    trial_timeout_s: 600        # optional per-trial limits (0: none): past them a trial fails as
    trial_memory_mb: 4096       # timeout / oom (trainables/limits.py)

`validate_sweep` reports every problem at once: the file's own fields, then the base trial, then
every grid point (or every Optuna range) against TrialConfig's ranges, then the base model's shape.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import search_spaces
from orchestrator.storage import check_uri
from search_spaces.law_grid import GridSpace
from search_spaces.memft import OptunaSpace, Param
from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.limits import TrialLimits
from trainables.zero_config import ZeroConfig, trial_problems
from trainables.schema import Config, ConfigError, Problem, load_yaml_mapping, range_problem, spec

GREEDY_METRICS = (K.GREEDY_EXACT_MATCH, K.GREEDY_TOKEN_ACC, K.FIRST_GREEDY_ERROR_POS)
OBJECTIVES = (K.GREEDY_EXACT_MATCH, K.GREEDY_TOKEN_ACC, K.FRAC_P_GT_HALF, K.FRAC_SEQUENCES_CERTIFIED,
              K.TF_TOKEN_ACC, K.DELTA_LOSS, K.LOSS_FINAL, K.STEPS_TO_CERTIFIED, K.WALL_S)
#: Resource names Ray or Tune own; `resources.custom` may not use them (cpu and gpu have their own fields).
RESERVED_RESOURCES = frozenset({"cpu", "gpu", "memory", "object_store_memory", "custom_resources"})

MIN_TRIAL_MEMORY_MB = 512


@dataclass(frozen=True)
class SearchConfig(Config):
    """How trials are chosen: a full grid, or an Optuna search."""

    kind: Literal["grid", "optuna", "adaptive"] = spec(
        "grid", "grid: every point of a grid space; optuna: TPE/NSGA-II search; adaptive: law-guided "
                "rank x length points of a grid space (orchestrator/adaptive.py)")
    sampler: Literal["tpe", "nsga2"] = spec("tpe", "optuna: the sampler (nsga2 for several objectives)")
    metrics: tuple[str, ...] = spec(factory=lambda: (K.GREEDY_EXACT_MATCH,), doc="optuna: objective metric(s)")
    modes: tuple[str, ...] = spec(factory=lambda: ("max",), doc="optuna: max or min, one per metric")
    seed: int = spec(0, "optuna: sampler seed; adaptive: tie-break seed of the initial design", lo=0)
    # adaptive (issue 9): stop once both exponents' 95 % intervals are this narrow, or the budget is spent
    alpha_tol: float = spec(0.05, "adaptive: stop when the 95 % interval of alpha is at most this wide",
                            lo=0.0, lo_open=True)
    beta_tol: float = spec(0.05, "adaptive: stop when the 95 % interval of beta is at most this wide",
                           lo=0.0, lo_open=True)
    max_trials: int = spec(0, "adaptive: trials at most, retries included (0: the grid's size)", lo=0, hi=100000)
    initial_points: int = spec(6, "adaptive: space-filling points run before the first law-guided one",
                               lo=5, hi=100000)

    def cross_checks(self) -> list[Problem]:
        problems = []
        bad = [m for m in self.metrics if m not in OBJECTIVES]
        if bad:
            problems.append(Problem("metrics", f"unknown metric(s) {bad} (allowed: {', '.join(OBJECTIVES)})"))
        if not self.metrics:
            problems.append(Problem("metrics", "needs at least one metric"))
        if len(self.modes) != len(self.metrics):
            problems.append(Problem("modes", f"needs one mode per metric ({len(self.metrics)}), got {len(self.modes)}"))
        if any(m not in ("max", "min") for m in self.modes):
            problems.append(Problem("modes", f"each mode must be max or min, got {list(self.modes)}"))
        if self.kind == "adaptive" and 0 < self.max_trials < self.initial_points:  # adaptive: budget covers the design
            problems.append(Problem("max_trials", f"must be 0 or at least initial_points ({self.initial_points}), "
                                                  f"got {self.max_trials}"))
        return problems


@dataclass(frozen=True)
class ResourcesConfig(Config):
    """What one trial takes from a node."""

    cpu: float = spec(1.0, "CPUs per trial", lo=0.0, hi=1024.0, lo_open=True)
    gpu: float = spec(0.0, "GPUs per trial (fractions share a GPU)", lo=0.0, hi=64.0)
    custom: dict = spec(factory=dict, doc="custom Ray resources per trial, e.g. {memlaw_driver: 1}: trials "
                                          "then run only on nodes that advertise them (cluster.yaml's driver nodes)")

    def cross_checks(self) -> list[Problem]:
        problems = []
        for name, amount in self.custom.items():
            field = f"custom.{name}"
            if not isinstance(name, str) or name.lower() in RESERVED_RESOURCES:
                problems.append(Problem(field, f"must be a custom resource name, not one of "
                                               f"{sorted(RESERVED_RESOURCES)} (use cpu/gpu)"))
            elif isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount <= 1e6:
                problems.append(Problem(field, f"must be a number in (0, 1e6], got {amount!r}"))
        return problems


@dataclass(frozen=True)
class SweepConfig(Config):
    """A sweep: a base trial, a search space, how to search it, and where results go."""

    name: str = spec(doc="sweep name: the experiment folder and the results actor are named after it")
    trial: dict = spec(factory=dict, doc="the base trial config (same keys as a trial file)")
    space: str = spec("law_grid_cpu", "a search space from search_spaces/ (law_grid_cpu, memft_optuna, ...)")
    space_overrides: dict = spec(factory=dict, doc="replace grid axes ({field: [values]}) or Optuna ranges")
    search: SearchConfig = spec(factory=SearchConfig, doc="grid or optuna")
    trainable: Literal["memorize", "zero"] = spec(
        "memorize", "the trial function: memorize (one process) or zero (DeepSpeed ZeRO ranks under Ray Train)")
    zero: ZeroConfig = spec(factory=ZeroConfig, doc="trainable zero: stage, ranks per trial, offload, per-rank "
                                                    "resources")
    cluster_file: str | None = spec(None, "a Ray cluster launcher file (cluster.yaml): trial resources are checked "
                                          "against its node types before Ray starts")
    num_samples: int = spec(1, "grid: repeats of the whole grid; optuna: number of trials", lo=1, hi=100000)
    scheduler: Literal["fifo", "asha"] = spec("fifo", "fifo, or asha (early stopping, single-metric searches)")
    resources: ResourcesConfig = spec(factory=ResourcesConfig, doc="per-trial resources")
    max_concurrency: int = spec(2, "trials at once", lo=1, hi=100000)
    storage_path: str = spec("memlaw-runs", "where the experiment lives: a local path or a cloud URI (s3://...)")
    max_failures: int = spec(1, "retries of a failed trial (from its last checkpoint)", lo=0, hi=100)
    checkpoint_every: int = spec(0, "checkpoint every k evaluations (0: none; set >0 to survive node loss)", lo=0)
    trial_timeout_s: float = spec(0.0, "wall-time limit of one trial run in seconds (0: none); a trial past it "
                                       "fails as timeout", lo=0.0, hi=7 * 86400.0)
    trial_memory_mb: float = spec(0.0, "resident-memory limit of a trial's process in MB (0: none), also asked "
                                       "of Ray as the trial's memory; a trial past it fails as oom",
                                  lo=0.0, hi=16 * 2**20)
    capacity_variable: Literal["rank", "trainable_params"] = spec("rank", "the law's capacity variable x")

    def cross_checks(self) -> list[Problem]:
        problems = []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", self.name):
            problems.append(Problem("name", f"must be 1-100 letters, digits, '_', '.', '-', got {self.name!r}"))
        uri_problem = check_uri(self.storage_path)
        if uri_problem:
            problems.append(Problem("storage_path", uri_problem))
        elif self.storage_path.startswith("memory://"):
            problems.append(Problem("storage_path", "memory:// is private to each process; the results actor "
                                                    "and the driver need shared storage (a path or s3://, gs://)"))
        if self.scheduler == "asha" and (self.search.kind != "optuna" or len(self.search.metrics) != 1):
            problems.append(Problem("scheduler", "asha needs search.kind: optuna with exactly one metric"))
        if self.trainable != "zero" and self.zero != ZeroConfig():
            problems.append(Problem("zero", "only for trainable: zero"))
        if self.trainable == "zero" and self.resources.gpu > 0:
            problems.append(Problem("resources.gpu", "with trainable: zero the ranks take the GPUs: set "
                                                     "zero.gpu_per_worker instead"))
        if self.cluster_file is not None:
            problems.extend(cluster_problems(self))
        if self.trainable == "zero" and (self.trial_timeout_s or self.trial_memory_mb):
            problems.append(Problem("trial_timeout_s" if self.trial_timeout_s else "trial_memory_mb",
                                    "per-trial limits apply to trainable: memorize only (not yet to zero's ranks)"))
        if 0 < self.trial_memory_mb < MIN_TRIAL_MEMORY_MB:
            problems.append(Problem("trial_memory_mb", f"must be 0 (no limit) or at least {MIN_TRIAL_MEMORY_MB} "
                                                       f"(torch alone holds ~300 MB), got {self.trial_memory_mb:g}"))
        return problems

    @property
    def experiment_uri(self) -> str:
        if "://" in self.storage_path:
            return f"{self.storage_path.rstrip('/')}/{self.name}"
        return os.path.join(os.path.abspath(os.path.expanduser(self.storage_path)), self.name)

    def trial_base(self) -> dict[str, Any]:
        """The base trial with what the sweep itself requires: its checkpoint cadence, and greedy
        decoding at every evaluation when a search metric needs it (a searcher must see it each time)."""
        values: dict[str, Any] = {}
        if self.checkpoint_every:
            values["eval.checkpoint_every"] = self.checkpoint_every
        if self.search.kind == "optuna" and any(m in GREEDY_METRICS for m in self.search.metrics):
            values["eval.greedy_every"] = 1
        return apply_values(self.trial, values)

    def trial_limits(self) -> TrialLimits:
        return TrialLimits(timeout_s=self.trial_timeout_s, memory_mb=self.trial_memory_mb)

    def base_trial(self) -> TrialConfig:
        return TrialConfig.from_dict(self.trial_base())

    def grid(self) -> GridSpace:
        space = search_spaces.get(self.space)
        assert isinstance(space, GridSpace)
        return space.with_axes(self.space_overrides)

    def optuna_space(self) -> OptunaSpace:
        space = search_spaces.get(self.space)
        assert isinstance(space, OptunaSpace)
        return space.with_ranges({k: [_as_number(x) for x in v] if isinstance(v, (list, tuple)) else v
                                  for k, v in self.space_overrides.items()})


# -- resolving a Tune trial's config ---------------------------------------------------------------
def apply_values(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted fields ({"adapter.rank": 4}) in a nested dict (copying what it touches)."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for dotted, value in values.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[leaf] = value
    return out


def resolve_trial(base: Mapping[str, Any], values: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of one sweep trial: the base trial with the trial's sampled values."""
    return TrialConfig.from_dict(apply_values(base, values))


# -- validation ------------------------------------------------------------------------------------
def load_sweep(path: str, overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Read and fully validate a sweep file; raises one ConfigError listing every problem."""
    data = load_yaml_mapping(path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        sweep = SweepConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(err.problems + _raw_problems(data, err.problems)) from None
    problems = _space_problems(sweep)
    if problems:
        raise ConfigError(problems)
    return sweep


def _raw_problems(data: Mapping[str, Any], known: list[Problem]) -> list[Problem]:
    """When the sweep's own fields are wrong, still judge its trial and space names."""
    problems, seen = [], {p.field for p in known}
    if "storage_path" not in seen and isinstance(data.get("storage_path"), str):
        uri_problem = check_uri(data["storage_path"])
        if uri_problem:
            problems.append(Problem("storage_path", uri_problem))
    if "space" not in seen and isinstance(data.get("space"), str) and data["space"] not in search_spaces.SPACES:
        problems.append(Problem("space", f"unknown search space {data['space']!r} "
                                         f"(allowed: {', '.join(sorted(search_spaces.SPACES))})"))
    if "trial" not in seen and isinstance(data.get("trial"), Mapping):
        try:
            TrialConfig.from_dict(data["trial"])
        except ConfigError as err:
            problems.extend(err.prefixed("trial").problems)
    return problems


def _space_problems(sweep: SweepConfig) -> list[Problem]:
    try:
        base = sweep.base_trial()
    except ConfigError as err:
        return err.prefixed("trial").problems
    if sweep.trainable == "zero" and (problems := trial_problems(base, sweep.zero)):
        return problems
    try:
        space = search_spaces.get(sweep.space)
    except KeyError as err:
        return [Problem("space", str(err.args[0]))]
    bad_keys = [k for k in sweep.space_overrides if not isinstance(k, str)]
    if bad_keys:
        return [Problem(f"space_overrides.{k}", f"must be a dotted trial field such as adapter.rank, "
                                                f"got {type(k).__name__} {k!r}") for k in bad_keys]
    if sweep.search.kind in ("grid", "adaptive") and not isinstance(space, GridSpace):
        return [Problem("space", f"{sweep.space!r} is an Optuna space; search.kind: {sweep.search.kind} needs a "
                                 "grid space")]
    if sweep.search.kind == "adaptive":  # the adaptive searcher needs rank and length axes, others fixed
        problems = _adaptive_problems(sweep)
        if problems:
            return problems
    if sweep.search.kind == "optuna" and not isinstance(space, OptunaSpace):
        return [Problem("space", f"{sweep.space!r} is a grid; search.kind: optuna needs an Optuna space")]
    if isinstance(space, GridSpace):
        problems = _grid_problems(sweep, base)
    else:
        problems = _optuna_problems(sweep)
    return problems + _model_problems(sweep, base)


def _grid_problems(sweep: SweepConfig, base: TrialConfig) -> list[Problem]:
    problems = []
    for key, values in sweep.space_overrides.items():
        if isinstance(values, (list, tuple)) and not values:
            problems.append(Problem(f"space_overrides.{key}", "an empty list leaves the grid with no trials"))
    if problems:
        return problems
    grid = sweep.grid()
    seen: set[str] = set()
    for point in grid.points():
        try:
            resolve_trial(sweep.trial_base(), point)
        except ConfigError as err:
            for p in err.problems:
                where = f"space_overrides.{p.field}" if p.field in sweep.space_overrides else f"space {sweep.space}: {p.field}"
                text = f"{where}: {p.message}"
                if text not in seen:
                    seen.add(text)
                    problems.append(Problem(where, p.message))
    return problems


def _adaptive_problems(sweep: SweepConfig) -> list[Problem]:
    """search.kind adaptive: the grid must give candidates (rank and length axes, other axes single)."""
    from orchestrator.adaptive import candidates_from_grid  # numpy/scipy: only when a sweep is adaptive

    try:
        candidates = candidates_from_grid(sweep.grid())
    except ValueError as err:
        return [Problem("space_overrides" if sweep.space_overrides else "space", str(err))]
    n = len(candidates.points)
    if sweep.search.initial_points > n:
        return [Problem("search.initial_points", f"the grid has only {n} rank x length points, "
                                                 f"got {sweep.search.initial_points}")]
    return []


def _field_meta(dotted: str) -> tuple[Any, Any] | None:
    """The dataclass field behind a dotted TrialConfig name: (field, annotation), or None."""
    import dataclasses
    from typing import get_type_hints

    cls: Any = TrialConfig
    *parents, leaf = dotted.split(".")
    for part in parents:
        hints = get_type_hints(cls)
        if part not in hints or not dataclasses.is_dataclass(hints[part]):
            return None
        cls = hints[part]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return (fields[leaf], get_type_hints(cls)[leaf]) if leaf in fields else None


def _optuna_problems(sweep: SweepConfig) -> list[Problem]:
    problems = []
    known = {p.name for p in search_spaces.get(sweep.space).params}
    for key in sweep.space_overrides:
        if key not in known:
            problems.append(Problem(f"space_overrides.{key}", f"not a parameter of {sweep.space} "
                                                              f"(allowed: {', '.join(sorted(known))})"))
    if problems:
        return problems
    for p in search_spaces.get(sweep.space).params:  # the shape of each override, before it is used
        value = sweep.space_overrides.get(p.name, [])
        if not isinstance(value, (list, tuple)):
            problems.append(Problem(f"space_overrides.{p.name}", (
                "must be a list of choices" if p.kind == "categorical" else "must be a range [low, high]")
                + f", got {type(value).__name__} {value!r}"))
        elif p.kind != "categorical" and p.name in sweep.space_overrides and not (
                len(value) == 2 and all(_is_number(_as_number(x)) for x in value)):
            problems.append(Problem(f"space_overrides.{p.name}", f"must be a range [low, high] of two numbers, "
                                                                 f"got {value!r}"))
    if problems:
        return problems
    for p in sweep.optuna_space().params:
        problems.extend(_param_problems(p, f"space_overrides.{p.name}" if p.name in sweep.space_overrides
                                        else f"space {sweep.space}: {p.name}"))
    return problems


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


def _param_problems(p: Param, where: str) -> list[Problem]:
    meta = _field_meta(p.name)
    if meta is None:
        return [Problem(where, "not a TrialConfig field")]
    f, _ = meta
    if p.kind == "categorical":
        if not p.choices:
            return [Problem(where, "needs at least one choice")]
        bad = []
        for c in p.choices:
            try:
                resolve_trial({}, {p.name: c})
            except ConfigError:
                bad.append(c)
        return [Problem(where, f"invalid choice(s) {bad}")] if bad else []
    if p.low is None or p.high is None or not p.low < p.high:
        return [Problem(where, f"needs low < high, got [{p.low}, {p.high}]")]
    if p.log and p.low <= 0:
        return [Problem(where, f"a log range needs low > 0, got {p.low}")]
    for end in (p.low, p.high):
        message = range_problem(end, f.metadata)
        if message:
            return [Problem(where, f"range end {message}")]
    return []


def _model_problem_field(sweep: SweepConfig, field: str, model_from_axis: bool) -> str:
    """Name the field the user wrote: a grid axis in space_overrides, else the base trial's field."""
    if field.startswith("adapter.rank") and "adapter.rank" in sweep.space_overrides:
        return "space_overrides.adapter.rank"
    if field.startswith("model.") and model_from_axis and "model.name" in sweep.space_overrides:
        return "space_overrides.model.name"
    return f"trial.{field}"


def _model_problems(sweep: SweepConfig, base: TrialConfig) -> list[Problem]:
    """Shape rules (rank <= hidden size, ...) for every distinct model × largest rank in the sweep."""
    from trainables.model import check_against_model

    ranks = [base.adapter.rank]
    models = [base.model.name]
    if sweep.search.kind in ("grid", "adaptive"):
        grid = sweep.grid()
        ranks += list(grid.axes.get("adapter.rank", ()))
        models += list(grid.axes.get("model.name", ()))
    problems = []
    for model in dict.fromkeys(models):
        try:
            cfg = resolve_trial(sweep.trial_base(), {"model.name": model, "adapter.rank": max(ranks)})
        except ConfigError:
            continue  # already reported as a grid problem
        try:
            check_against_model(cfg)
        except ConfigError as err:
            problems.extend(Problem(_model_problem_field(sweep, p.field, model != base.model.name), p.message)
                            for p in err.problems)
    return problems


# -- the cluster a sweep is pinned to ----------------------------------------------------------------
def node_types(path: str) -> dict[str, dict[str, float]]:
    """Each node type's resources as a cluster launcher file states them (available_node_types)."""
    data = load_yaml_mapping(path)
    types = data.get("available_node_types")
    if not isinstance(types, Mapping) or not types:
        raise ConfigError([Problem("cluster_file", f"{path} has no available_node_types")])
    out = {}
    for name, node in types.items():
        resources = node.get("resources") if isinstance(node, Mapping) else None
        out[str(name)] = dict(resources) if isinstance(resources, Mapping) else {}
    return out


def cluster_problems(sweep: SweepConfig) -> list[Problem]:
    """Trials that no node of the pinned cluster could ever hold (the autoscaler would wait forever)."""
    try:
        types = node_types(os.path.expanduser(sweep.cluster_file))
    except ConfigError as err:
        return err.problems
    except OSError as err:
        return [Problem("cluster_file", str(err))]
    unstated = sorted(name for name, res in types.items() if "GPU" not in res)
    if unstated:
        return [Problem("cluster_file", f"node type(s) {unstated} do not state resources: {{GPU: n}}; "
                                        "state them so GPU requests can be checked")]
    largest = max(res["GPU"] for res in types.values())
    z = sweep.zero
    if sweep.trainable == "zero" and z.gpu_per_worker > largest:
        return [Problem("zero.gpu_per_worker", f"{z.gpu_per_worker:g} GPUs per rank, but the largest node of "
                                               f"{sweep.cluster_file} has {largest:g}")]
    if sweep.trainable == "zero" and z.pack and z.gpus_per_trial() > largest:
        return [Problem("zero.workers_per_trial", f"pack: true puts {z.workers_per_trial} ranks x "
                                                  f"{z.gpu_per_worker:g} GPUs = {z.gpus_per_trial():g} GPUs on one "
                                                  f"node, but the largest node of {sweep.cluster_file} has "
                                                  f"{largest:g}")]
    if sweep.resources.gpu > largest:
        return [Problem("resources.gpu", f"{sweep.resources.gpu:g} GPUs per trial, but the largest node of "
                                         f"{sweep.cluster_file} has {largest:g}")]
    return []
