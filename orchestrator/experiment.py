"""An experiment folder: its names, and the sweep saved in it. No Ray.

    <storage_path>/<name>/
      memlaw_sweep.json      the validated sweep that runs here (what `memlaw resume` continues)
      memlaw/                the records journal, snapshot and fit (orchestrator/record_log.py)
      optuna.journal         the Optuna study of an optuna sweep (orchestrator/searches.py; optuna-dashboard)
      <trial folders>        Tune's, each with memlaw_trial/ (config, evals, result.json, adapter)

`open_experiment(path)` is what the read-only commands (law, export, plot) and `memlaw resume` use:
it reads the saved sweep through the one validating constructor, SweepConfig.from_dict, and never
creates anything at `path`.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import SweepConfig
from orchestrator.storage import Store
from trainables.schema import ConfigError, Problem

SWEEP_FILE = "memlaw_sweep.json"


@dataclass(frozen=True)
class Experiment:
    """A sweep and the folder its results live in."""

    uri: str
    sweep: SweepConfig

    @classmethod
    def of(cls, sweep: SweepConfig) -> Experiment:
        return cls(sweep.experiment_uri, sweep)

    def save_sweep(self) -> None:
        Store(self.uri).write_json(SWEEP_FILE, self.sweep.to_dict())


def open_experiment(path: str) -> Experiment:
    """The experiment at `path`, its saved sweep fully validated; ConfigError when there is none."""
    store = Store(path)
    if not store.exists(SWEEP_FILE):
        raise ConfigError([Problem("", f"{path}: not a memlaw experiment (no {SWEEP_FILE})")])
    try:
        sweep = SweepConfig.from_dict(store.read_json(SWEEP_FILE))
    except ValueError as err:  # ConfigError, or JSON that does not parse
        problems = err.problems if isinstance(err, ConfigError) else [Problem("", str(err))]
        raise ConfigError([Problem(f"{SWEEP_FILE}: {p.field}" if p.field else SWEEP_FILE, p.message)
                           for p in problems]) from None
    return Experiment(sweep.experiment_uri, sweep)
