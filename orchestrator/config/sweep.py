"""SweepConfig: what a sweep file may say, validated completely at construction, before Ray starts.

    name: law-grid-cpu
    trial: {model: {name: tiny-s}, adapter: {placement: paper}, ...}   # the base TrialConfig
    space: law_grid_cpu                                                # from search_spaces/
    space_overrides: {adapter.rank: [1, 2, 4]}                         # replace axes or ranges
    search: {kind: grid}                                               # orchestrator/search/kinds.py
    fit: {capacity_variable: rank}                                     # how the law is fitted
    resources: {cpu: 1, gpu: 0}                                        # + custom: {memlaw_driver: 1}
    max_concurrency: 2
    storage_path: memlaw-runs
    max_failures: 1
    trial_timeout_s: 600        # optional per-trial limits (0: none): past them a trial fails as
    trial_memory_mb: 4096       # timeout / oom (trainables/limits.py)

One construction path: `SweepConfig.from_dict` (a sweep file, a saved experiment, a sweep built in
code) checks the file's own fields, the base trial, and every grid point or Optuna range against
TrialConfig's ranges (through the search kind), and reports every problem at once. `checks` adds
more problems to the same report: orchestrator/config/preflight.py's `load_sweep` (for the commands
that will train) passes what needs this machine: the base model's config (rank <= hidden size,
layer indices) and writable storage. Reading a finished experiment needs neither the model's files
nor torch, and this module imports neither.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Literal, Mapping

import search_spaces
from orchestrator.config.cluster_file import cluster_problems
from orchestrator.search.kinds import ALL_KNOBS, SEARCHES, SearchConfig, resolve_trial, search_of
from orchestrator.records.storage import check_uri
from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.limits import TrialLimits
from trainables.schema import Config, ConfigError, Problem, set_dotted, spec
from trainables.zero_config import ZeroConfig, trial_problems

#: Resource names Ray or Tune own; `resources.custom` may not use them (cpu and gpu have their own fields).
RESERVED_RESOURCES = frozenset({"cpu", "gpu", "memory", "object_store_memory", "custom_resources"})
MIN_TRIAL_MEMORY_MB = 512
Checks = Callable[["SweepConfig", list[Problem]], list[Problem]]


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
class FitConfig(Config):
    """How the sweep's law is fitted (orchestrator/law/grouping.py): the results actor, `memlaw law`, plot."""

    capacity_variable: Literal["rank", "trainable_params"] = spec(
        K.RANK, "the law's capacity variable x in ΔL = C·x^α·ℓ^(−β) + b: the LoRA rank, or trainable parameters")
    response: Literal["delta_loss", "drop_below_chance"] = spec(
        K.DELTA_LOSS, "what the law fits: delta_loss (ΔL, the paper's) or drop_below_chance (L_ref − L_final, "
                      "only the drop below the chance level; docs/science.md §6)")


@dataclass(frozen=True)
class SweepConfig(Config):
    """A sweep: a base trial, a search space, how to search it, and where results go."""

    name: str = spec(doc="sweep name: the experiment folder and the results actor are named after it")
    trial: dict = spec(factory=dict, doc="the base trial config (same keys as a trial file)")
    space: str = spec("law_grid_cpu", "a search space from search_spaces/ (law_grid_cpu, memft_optuna, ...)")
    space_overrides: dict = spec(factory=dict, doc="replace grid axes ({field: [values]}) or Optuna ranges")
    search: SearchConfig = spec(factory=SearchConfig, doc="grid, optuna or adaptive (orchestrator/search/kinds.py)")
    fit: FitConfig = spec(factory=FitConfig, doc="how the law is fitted")
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

    @classmethod
    def from_saved(cls, data: Any) -> SweepConfig:
        """A sweep as an experiment saved it (memlaw_sweep.json). The file holds every search knob with
        the default of the memlaw that wrote it; a knob its kind does not read was such a default (the
        sweep was validated when it was saved), even where the default has changed since (validate_seeds
        5 -> 7), so it is dropped here rather than refused as foreign, and old experiments still open."""
        search = data.get("search") if isinstance(data, Mapping) else None
        kind = search.get("kind", "grid") if isinstance(search, Mapping) else None
        if isinstance(kind, str) and kind in SEARCHES:
            read = SEARCHES[kind].knobs | {"kind"}
            data = {**data, "search": {k: v for k, v in search.items() if k in read or k not in ALL_KNOBS}}
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any, prefix: str = "", *, checks: Checks | None = None) -> SweepConfig:
        """The one way to build a sweep: every problem of `data` at once, or a valid SweepConfig.
        `checks(sweep, known problems)`: more problems for the same report (preflight.load_sweep
        passes what needs this machine: the base model's config, writable storage)."""
        data = _migrated(data)
        try:
            sweep = super().from_dict(data, prefix)
        except ConfigError as err:
            raise ConfigError(err.problems + _raw_problems(data, err.problems)) from None
        problems = sweep.space_problems()
        if checks is not None:
            problems += checks(sweep, problems)
        if problems:
            raise ConfigError(problems)
        return sweep

    def cross_checks(self) -> list[Problem]:
        problems = self._own_problems()
        if self.cluster_file is not None:
            problems.extend(cluster_problems(self))
        return problems

    def _own_problems(self) -> list[Problem]:
        problems = []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", self.name):
            problems.append(Problem("name", f"must be 1-100 letters, digits, '_', '.', '-', got {self.name!r}"))
        uri_problem = check_uri(self.storage_path)
        if uri_problem:
            problems.append(Problem("storage_path", uri_problem))
        elif self.storage_path.startswith("memory://"):
            problems.append(Problem("storage_path", "memory:// is private to each process; the results actor "
                                                    "and the driver need shared storage (a path or s3://, gs://)"))
        scheduler = search_of(self).scheduler_problem(self)
        if scheduler:
            problems.append(Problem("scheduler", scheduler))
        return problems + self._trainable_problems()

    def _trainable_problems(self) -> list[Problem]:
        problems = []
        if self.trainable != "zero" and self.zero != ZeroConfig():
            problems.append(Problem("zero", "only for trainable: zero"))
        if self.trainable == "zero" and self.resources.gpu > 0:
            problems.append(Problem("resources.gpu", "with trainable: zero the ranks take the GPUs: set "
                                                     "zero.gpu_per_worker instead"))
        if self.trainable == "zero" and (self.trial_timeout_s or self.trial_memory_mb):
            problems.append(Problem("trial_timeout_s" if self.trial_timeout_s else "trial_memory_mb",
                                    "per-trial limits apply to trainable: memorize only (not yet to zero's ranks)"))
        if self.trainable == "memorize" and self._trial_device() == "cuda" and self.resources.gpu == 0:
            problems.append(Problem("resources.gpu", "trial.device is cuda, so each trial needs a GPU: set "
                                                     "resources.gpu (e.g. 1), or device: auto"))
        if 0 < self.trial_memory_mb < MIN_TRIAL_MEMORY_MB:
            problems.append(Problem("trial_memory_mb", f"must be 0 (no limit) or at least {MIN_TRIAL_MEMORY_MB} "
                                                       f"(torch alone holds ~300 MB), got {self.trial_memory_mb:g}"))
        return problems

    def _trial_device(self) -> Any:
        return self.trial.get("device") if isinstance(self.trial, Mapping) else None

    def space_problems(self) -> list[Problem]:
        """The base trial, then every point or range of the space through its search kind."""
        try:
            base = self.base_trial
        except ConfigError as err:
            return err.prefixed("trial").problems
        if self.trainable == "zero" and (problems := trial_problems(base, self.zero)):
            return problems
        if self.space not in search_spaces.SPACES:
            return [Problem("space", f"unknown search space {self.space!r} "
                                     f"(allowed: {', '.join(sorted(search_spaces.SPACES))})")]
        bad_keys = [k for k in self.space_overrides if not isinstance(k, str)]
        if bad_keys:
            return [Problem(f"space_overrides.{k}", f"must be a dotted trial field such as adapter.rank, "
                                                    f"got {type(k).__name__} {k!r}") for k in bad_keys]
        return search_of(self).problems(self, base)

    # -- what the sweep resolves to ----------------------------------------------------------------
    @property
    def experiment_uri(self) -> str:
        if "://" in self.storage_path:
            return f"{self.storage_path.rstrip('/')}/{self.name}"
        return os.path.join(os.path.abspath(os.path.expanduser(self.storage_path)), self.name)

    @cached_property
    def base_trial(self) -> TrialConfig:
        """The base trial with what the sweep itself requires (its checkpoint cadence, the search
        kind's fields), resolved once; every trial of the sweep is this plus its sampled values."""
        values: dict[str, Any] = {"eval.checkpoint_every": self.checkpoint_every} if self.checkpoint_every else {}
        values.update(search_of(self).trial_overrides(self))
        return TrialConfig.from_dict(set_dotted(self.trial, values))

    def trial_config(self, values: Mapping[str, Any]) -> TrialConfig:
        """The TrialConfig of one trial of this sweep: the base trial with its sampled values."""
        return resolve_trial(self.base_trial, dict(values))

    def trial_limits(self) -> TrialLimits:
        return TrialLimits(timeout_s=self.trial_timeout_s, memory_mb=self.trial_memory_mb)

    def trial_count(self) -> int:
        return search_of(self).trial_count(self)


def _migrated(data: Any) -> Any:
    """Experiments saved before `fit:` existed hold `capacity_variable` at the top level."""
    if isinstance(data, Mapping) and "capacity_variable" in data and "fit" not in data:
        data = dict(data)
        data["fit"] = {"capacity_variable": data.pop("capacity_variable")}
    return data


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
