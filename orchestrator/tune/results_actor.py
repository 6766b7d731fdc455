"""The results actor: one named, detached Ray actor per sweep that holds the live law.

A thin shell around `record_log` (durable, de-duplicated records) and `law_report` (the fit):

- `add(record)` persists the record *before* it returns (the journal write is the
  acknowledgement), ignores a trial id it already has (at-least-once delivery, retried calls and
  re-sent records count once) and wakes the refit thread.
- The refit thread fits whatever has arrived; records that land during a fit are covered by the
  next one (debouncing). Each fit is written to `fit.json`, published as gauges, and printed as
  one line per group on the actor's stdout (alpha, beta, R^2, points, with intervals): Ray keeps
  it in the actor's log, which the dashboard shows (Actors -> the actor -> Logs).
- `max_restarts=-1`: after a crash or a kill, Ray re-runs the constructor, which reloads every
  record from storage, so the restarted actor's state equals a refit from storage.
- `num_cpus=0` so it never takes a trial's slot; its state is small and lives on disk, since Ray's
  memory monitor prefers to kill restartable workers.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray

from orchestrator.config.sweep import FitConfig
from orchestrator.experiment.folder import ExperimentBusy, in_use
from orchestrator.report.law_report import build_report
from orchestrator.tune.ray_session import NAMESPACE
from orchestrator.records.journal import FIT, RecordLog
from orchestrator.records.trial_record import TrialRecord
from orchestrator.tune.sweep_output import fit_line

logger = logging.getLogger(__name__)
ACTOR_PREFIX = "memlaw-results:"
#: Gauge names as they appear in Prometheus (Ray prefixes each with `ray_`). Lower case only: Ray's
#: exporter lower-cases names, so a gauge named `memlaw_law_C` is scraped as `ray_memlaw_law_c`.
GAUGES = {
    "alpha": "memlaw_law_alpha", "beta": "memlaw_law_beta", "C": "memlaw_law_c", "b": "memlaw_law_b",
    "r2": "memlaw_law_r2", "n_points": "memlaw_law_points", "n_rows": "memlaw_trials_accepted",
}
FAILED_GAUGE = "memlaw_trials_failed"


def actor_name(sweep: str) -> str:
    return f"{ACTOR_PREFIX}{sweep}"


class _Gauges:
    """The fit of every group as ray.util.metrics gauges tagged by sweep and group."""

    def __init__(self, sweep: str):
        from ray.util.metrics import Gauge

        self.sweep = sweep
        self.fit = {key: Gauge(name, description=f"memlaw live law: {key} of the current fit",
                               tag_keys=("sweep", "group")) for key, name in GAUGES.items()}
        self.failed = Gauge(FAILED_GAUGE, description="memlaw: failed trials by category",
                            tag_keys=("sweep", "category"))

    def publish(self, report: dict[str, Any]) -> None:
        for label, group in report["groups"].items():
            tags = {"sweep": self.sweep, "group": label}
            values = {**group["fit"], "n_rows": group["n_rows"]}
            for key, gauge in self.fit.items():
                if values.get(key) is not None:
                    gauge.set(float(values[key]), tags=tags)
        for category, count in report["trials_failed"].items():
            self.failed.set(float(count), tags={"sweep": self.sweep, "category": category})


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=8)
class ResultsActor:
    def __init__(self, sweep: str, experiment_uri: str, fit: FitConfig = FitConfig()):
        self.sweep, self.experiment_uri, self.fit = sweep, experiment_uri, fit
        self.log = RecordLog.for_experiment(experiment_uri)
        self._cond = threading.Condition()
        self._accepted = len(self.log.records)  # version: records accepted so far
        self._fitted = -1
        self._report: dict[str, Any] | None = None
        self._arrivals: dict[int, float] = {}
        self.last_latency_s: float | None = None
        self._gauges = _Gauges(sweep)
        threading.Thread(target=self._refit_loop, name="memlaw-refit", daemon=True).start()

    # -- the API -----------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {"sweep": self.sweep, "experiment_uri": self.experiment_uri,
                "fit": self.fit.to_dict()}

    def add(self, record: dict[str, Any]) -> bool:
        """Persist then count a record; False if its trial id was already accepted."""
        new = self.log.add(TrialRecord.from_dict(record))
        if new:
            with self._cond:
                self._accepted += 1
                self._arrivals[self._accepted] = time.perf_counter()
                self._cond.notify_all()
        return new

    def report(self, wait_s: float = 5.0, at_least: int = 0) -> dict[str, Any]:
        """The current fit; waits up to `wait_s` for it to cover every record accepted so far, and
        (`at_least`) for that many records to have arrived (a caller that has just sent one)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while (self._fitted < self._accepted or self._accepted < at_least) and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            report = dict(self._report or build_report(self.sweep, [], self.fit))
        report["fit_latency_s"] = self.last_latency_s
        return report

    def records(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.log.all()]

    def snapshot(self) -> None:
        self.log.snapshot()

    # -- the refit thread ------------------------------------------------------------------------
    def _refit_loop(self) -> None:
        while True:
            with self._cond:
                while self._fitted >= self._accepted:
                    self._cond.wait()
                version = self._accepted
            report = build_report(self.sweep, self.log.all(), self.fit)
            with self._cond:
                self._report, self._fitted = report, version
                arrived = self._arrivals.pop(version, None)
                for v in [v for v in self._arrivals if v <= version]:
                    self._arrivals.pop(v)
                if arrived is not None:
                    self.last_latency_s = time.perf_counter() - arrived
                self._cond.notify_all()
            try:  # fit.json is a cache, the gauges and the log line views: failing any must not end the refits
                self.log.store.write_json(FIT, report)
                self._gauges.publish(report)
                for line in fit_line(report):
                    print(f"memlaw {time.strftime('%Y-%m-%d %H:%M:%S')} sweep {self.sweep}: {line}", flush=True)
            except Exception:
                logger.exception("memlaw: could not write %s or publish gauges; refits go on", FIT)


def get_or_create(sweep: str, experiment_uri: str, fit: FitConfig = FitConfig()):
    """The sweep's actor, started if needed. One left by an ended run of the same sweep name with
    other storage (a moved copy, a new experiment of that name; no run holds its experiment now)
    is retired and replaced; one whose experiment a run still holds is refused (ExperimentBusy)."""
    for _ in range(2):
        actor = ResultsActor.options(name=actor_name(sweep), namespace=NAMESPACE, lifetime="detached",
                                     get_if_exists=True).remote(sweep, experiment_uri, fit)
        old = ray.get(actor.info.remote())["experiment_uri"]
        if old == experiment_uri:
            return actor
        if in_use(old):
            raise ExperimentBusy(f"sweep name {sweep!r} is in use on this cluster by a run of the experiment {old}: "
                                 f"pick another --name, or wait for that run to end")
        retire(sweep)
    raise ExperimentBusy(f"the results actor of sweep {sweep!r} (experiment {old}) could not be replaced")


def retire(sweep: str, wait_s: float = 10.0) -> bool:
    """End the sweep's actor (its records are in the journal; the fit is refitted from storage) and
    wait until its name is free; False when there was none. An actor outlives its sweep on purpose
    (`memlaw law --dashboard/--address` still answers after the sweep ends); the next sweep of the
    same name with other storage retires it once no run holds its experiment (get_or_create)."""
    try:
        actor = ray.get_actor(actor_name(sweep), namespace=NAMESPACE)
    except ValueError:
        return False
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(actor_name(sweep), namespace=NAMESPACE)
        except ValueError:
            return True
        time.sleep(0.1)  # the name is released when the GCS has marked the actor dead: milliseconds
    return True


def find(sweep: str | None = None):
    """The named actor of `sweep`, or the only one in the namespace when `sweep` is None."""
    if sweep is not None:
        return ray.get_actor(actor_name(sweep), namespace=NAMESPACE)
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a.get("namespace") == NAMESPACE and a["name"].startswith(ACTOR_PREFIX)]
    if len(names) != 1:
        found = ", ".join(n[len(ACTOR_PREFIX):] for n in names) or "none"
        raise LookupError(f"pass --sweep NAME: {len(names)} memlaw sweeps on this cluster ({found})")
    return ray.get_actor(names[0], namespace=NAMESPACE)


def final_report(sweep: str, wait_s: float = 30.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep's fit once the actor has folded in every record, and the records (the end table)."""
    actor = find(sweep)
    return tuple(ray.get([actor.report.remote(wait_s=wait_s), actor.records.remote()]))
