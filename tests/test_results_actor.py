"""The results actor on a real local Ray: de-duplication, restarts, reload from storage, gauges.

One local Ray for the module (1 CPU, no dashboard, 100 MiB object store); the last test shuts it
down and starts it again, as a whole-cluster restart. Every actor works on its own temporary
experiment folder, so what it reloads is exactly what the test can refit offline with
`build_report(RecordLog.for_experiment(path).all())`.

Ray's metrics: ray.util.metrics gauges go from the worker to the node's metrics agent, which runs
inside the dashboard *agent* (started by the raylet on every node, with or without
`include_dashboard`) and serves Prometheus text on the node's MetricsExportPort, every few
seconds (up to ~10 s here). Run with `-s` to see the measured refit latencies.
"""

from __future__ import annotations

import math
import re
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a real local Ray: actors killed, restarted, the cluster restarted
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the editable install may predate the packages' __init__ files

from orchestrator.tune.ray_session import default_token_auth  # noqa: E402

default_token_auth()  # RAY_AUTH_MODE before Ray is imported, as memlaw's own drivers do
import ray  # noqa: E402

from orchestrator.tune import results_actor as ra  # noqa: E402
from orchestrator.report.law_report import build_report  # noqa: E402
from orchestrator.records.journal import FIT, JOURNAL, LAW_FOLDER, RecordLog  # noqa: E402
from orchestrator.records.trial_record import record_from_result  # noqa: E402
from trainables import metric_names as K  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402

# address="local": always a new local instance. Without it ray.init() joins RAY_ADDRESS or the cluster
# named in /tmp/ray/ray_current_cluster (which ray.cluster_utils.Cluster writes), i.e. another test run's.
INIT = dict(address="local", num_cpus=1, include_dashboard=False, object_store_memory=100 * 2**20,
            _node_ip_address="127.0.0.1", namespace=ra.NAMESPACE)
LAW = dict(C=2.0, alpha=0.75, beta=0.6, b=0.05)
RANKS = (1, 2, 4, 8)
LENGTHS = (64, 128, 256, 512)
LOSS_INIT = 6.0
GROUP = "tiny-s|random|0|paper|sft"
FIT_KEYS = ("alpha", "beta", "C", "b", "r2")
WAIT_S = 30.0


@pytest.fixture(scope="module")
def local_ray():
    assert not ray.is_initialized(), "another test left Ray running"
    ray.init(**INIT)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def start(local_ray):
    """get_or_create that kills, at teardown, every actor it started and waits until its name is free."""
    started: list[tuple[str, object]] = []

    def _start(sweep: str, path: str):
        actor = ra.get_or_create(sweep, path)
        started.append((sweep, actor))
        return actor

    yield _start
    if not ray.is_initialized():
        return
    for _, actor in started:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already dead, or a handle from a cluster that was restarted
            pass
    names = {ra.actor_name(sweep) for sweep, _ in started}
    deadline = time.monotonic() + 20
    while names & {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)


# -- records --------------------------------------------------------------------------------------


def config(rank: int, ell: int, seed: int = 42) -> dict:
    cfg = TrialConfig().to_dict()
    cfg["adapter"]["rank"], cfg["data"]["target_tokens"], cfg["seed"] = rank, ell, seed
    return cfg


def make_record(trial_id: str, rank: int, ell: int, delta: float, status: str = "ok",
                sweep: str = "s", seed: int = 42) -> dict:
    result = {K.STEP: 300, K.LOSS_INIT: LOSS_INIT, K.LOSS_FINAL: LOSS_INIT - delta, K.DELTA_LOSS: delta,
              K.RANK: rank, K.TARGET_TOKENS: ell, K.TRAINABLE_PARAMS: 128 * rank,
              K.BITS_PER_PARAM: ell * delta / math.log(2) / (128 * rank), K.WALL_S: 1.0, K.FINISHED: True,
              "timestamp": 1_700_000_000.0, "time_total_s": 3.0, "node_ip": "127.0.0.1"}
    return record_from_result(trial_id, sweep, config(rank, ell, seed=seed), result, status=status,
                              error=None if status == "ok" else "boom").to_dict()


def law_records(sweep: str, prefix: str = "t", seed: int = 0, failed: int = 2) -> list[dict]:
    """ranks × lengths from LAW with 1 % noise, plus `failed` NaN failures."""
    rng = np.random.default_rng(seed)
    out = []
    for rank in RANKS:
        for ell in LENGTHS:
            delta = (LAW["C"] * rank ** LAW["alpha"] * ell ** -LAW["beta"] + LAW["b"]) * math.exp(
                0.01 * rng.standard_normal())
            out.append(make_record(f"{prefix}-{rank}-{ell}", rank, ell, delta, sweep=sweep))
    out += [make_record(f"{prefix}-failed-{i}", 8, 64, 40.0, status="nan", sweep=sweep, seed=1000 + i)
            for i in range(failed)]  # their own seeds: a failure of a configuration that has a result is superseded
    return out


def storage_report(sweep: str, path: str) -> dict:
    return build_report(sweep, RecordLog.for_experiment(path).all())


def fits(report: dict) -> dict:
    return {label: {k: g["fit"][k] for k in FIT_KEYS} for label, g in report["groups"].items()}


def by_id(records: list[dict]) -> dict:
    return {r["trial_id"]: r for r in records}


def report(actor, wait_s: float = WAIT_S) -> dict:
    return ray.get(actor.report.remote(wait_s=wait_s), timeout=wait_s + 60)


def actor_state(actor) -> dict:
    """The GCS actor table entry (State, NumRestarts, Pid); a private API Ray's own tests use."""
    return ray._private.state.actors(actor._actor_id.hex())


# -- tests ----------------------------------------------------------------------------------------


def test_records_sent_twice_and_concurrently_count_once(start, tmp_path):
    path = str(tmp_path / "exp")
    actor = start("dedup", path)
    records = law_records("dedup")
    ids = {r["trial_id"] for r in records}
    # every record three times from this handle, once more from a second handle (found by name)
    # on other threads, all in flight at once: the actor runs up to 8 calls at a time
    second = ra.find("dedup")
    sent = [(r["trial_id"], actor.add.remote(r)) for _ in range(3) for r in records]
    lock = threading.Lock()

    def send(chunk):
        got = [(r["trial_id"], second.add.remote(r)) for r in chunk]
        with lock:
            sent.extend(got)

    threads = [threading.Thread(target=send, args=(records[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 4 * len(records)
    outcomes = ray.get([ref for _, ref in sent], timeout=120)
    accepted = [tid for (tid, _), new in zip(sent, outcomes) if new]
    assert sorted(accepted) == sorted(ids), "each trial id is accepted exactly once"
    assert not any(ray.get([actor.add.remote(r) for r in records])), "a later re-send is refused too"

    rep = report(actor)
    assert rep["trials_accepted"] == len(ids) == 18 and rep["trials_ok"] == 16
    assert rep["trials_failed"] == {"nan": 2} and rep["trial_ids"] == sorted(ids)
    assert rep["groups"][GROUP]["fit"]["n_points"] == 16
    assert rep["groups"][GROUP]["fit"]["alpha"] == pytest.approx(0.75, abs=0.03)
    assert len(list((tmp_path / "exp" / LAW_FOLDER / JOURNAL).iterdir())) == 18  # one journal file per id
    assert by_id(ray.get(actor.records.remote())) == by_id(records)
    assert fits(rep) == fits(storage_report("dedup", path))


def test_killed_actor_restarts_with_the_records_and_fit_from_storage(start, tmp_path):
    path = str(tmp_path / "exp")
    actor = start("restart", path)
    records = law_records("restart")
    assert all(ray.get([actor.add.remote(r) for r in records]))
    before = report(actor)
    assert before["trials_accepted"] == len(records)

    old_pid = actor_state(actor)["Pid"]
    killed_at = time.time()
    ray.kill(actor, no_restart=False)  # asynchronous: wait until Ray has really restarted it
    deadline = time.monotonic() + WAIT_S
    while not (actor_state(actor)["NumRestarts"] >= 1 and actor_state(actor)["State"] == "ALIVE"):
        assert time.monotonic() < deadline, f"not restarted within {WAIT_S} s: {actor_state(actor)}"
        time.sleep(0.1)
    after = report(actor)  # the same handle: Ray re-ran the constructor, which reloaded storage
    assert actor_state(actor)["Pid"] != old_pid, "a new worker process"
    assert after["updated_at"] > killed_at, "a fresh fit made by the restarted actor"

    offline = storage_report("restart", path)
    assert after["trial_ids"] == offline["trial_ids"] == before["trial_ids"]
    assert after["trials_failed"] == offline["trials_failed"] == {"nan": 2}
    stored = [r.to_dict() for r in RecordLog.for_experiment(path).all()]
    assert by_id(ray.get(actor.records.remote())) == by_id(stored) == by_id(records)
    assert fits(after) == fits(offline) == fits(before)  # exactly: the fit does not depend on order
    assert after["groups"] == offline["groups"]

    # de-duplication survives the restart; new records still land
    assert not any(ray.get([actor.add.remote(r) for r in records]))
    assert ray.get(actor.add.remote(make_record("late", 16, 1024, 0.3, sweep="restart")))
    assert report(actor)["trials_accepted"] == len(records) + 1


def test_refits_go_on_when_the_fit_cache_cannot_be_written(start, tmp_path):
    """fit.json is only a cache: failing to write it must not stop the live fit."""
    path = tmp_path / "exp"
    (path / LAW_FOLDER / FIT).mkdir(parents=True)  # a folder where the file should go: every write fails
    actor = start("cache", str(path))
    records = law_records("cache", failed=0)
    for i, record in enumerate(records[:6]):
        assert ray.get(actor.add.remote(record))
        rep = report(actor, wait_s=10.0)
        assert rep["trials_accepted"] == i + 1 and record["trial_id"] in rep["trial_ids"]
    assert rep["groups"][GROUP]["fit"]["n_points"] == 6
    assert (path / LAW_FOLDER / FIT).is_dir()


def test_get_or_create_refuses_other_storage_while_its_run_lives_and_takes_over_after(start, tmp_path):
    from orchestrator.experiment.folder import ExperimentBusy, exclusive_run

    actor = start("owned", str(tmp_path / "a"))
    assert ra.get_or_create("owned", str(tmp_path / "a"))._actor_id == actor._actor_id
    with exclusive_run(str(tmp_path / "a")):  # a run holds experiment a
        with pytest.raises(ExperimentBusy, match="is in use on this cluster by a run of the experiment"):
            ra.get_or_create("owned", str(tmp_path / "b"))
        assert ray.get(actor.info.remote())["experiment_uri"] == str(tmp_path / "a")
        assert ra.find("owned")._actor_id == actor._actor_id
    taken = ra.get_or_create("owned", str(tmp_path / "b"))  # that run has ended: its actor is replaced
    assert taken._actor_id != actor._actor_id and ray.get(taken.info.remote())["experiment_uri"] == str(tmp_path / "b")
    assert ra.retire("owned") and not ra.retire("owned")
    start("owned", str(tmp_path / "a"))
    start("owned-too", str(tmp_path / "b"))
    with pytest.raises(LookupError, match="2 memlaw sweeps"):
        ra.find()


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int, name: str) -> list[tuple[dict, float]]:
    """(labels, value) of every sample of `name` on the node's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line[len(name):].rpartition("} ")
            samples.append((dict(LABEL.findall(labels)), float(value.split()[0])))
    return samples


def test_gauges_reach_the_metrics_export_endpoint(start, tmp_path):
    actor = start("gauges", str(tmp_path / "exp"))
    records = law_records("gauges", failed=3)
    assert all(ray.get([actor.add.remote(r) for r in records]))
    rep = report(actor)
    assert rep["trials_accepted"] == len(records)
    alpha = rep["groups"][GROUP]["fit"]["alpha"]
    (node,) = ray.nodes()
    port = node["MetricsExportPort"]
    name = "ray_" + ra.GAUGES["alpha"]

    seen, deadline, errors = None, time.monotonic() + 30.0, []
    while time.monotonic() < deadline:
        try:
            samples = [(labels, v) for labels, v in scrape(port, name)
                       if labels.get("sweep") == "gauges" and labels.get("group") == GROUP]
        except OSError as err:  # the agent may still be starting its HTTP server
            errors.append(repr(err))
            samples = []
        if samples:
            seen = samples[-1]
            if seen[1] == pytest.approx(alpha, rel=1e-6):
                break
        time.sleep(0.5)
    assert seen is not None, f"no {name} for sweep 'gauges' on port {port} in 30 s; errors: {errors[-3:]}"
    labels, value = seen
    assert value == pytest.approx(alpha, rel=1e-6), (value, alpha)
    assert labels["sweep"] == "gauges" and labels["group"] == GROUP
    # the other gauges of the same fit, already exported with it
    rows = [v for lab, v in scrape(port, "ray_" + ra.GAUGES["n_rows"]) if lab.get("sweep") == "gauges"]
    assert rows == [16.0]
    failed = {lab.get("category"): v for lab, v in scrape(port, "ray_" + ra.FAILED_GAUGE)
              if lab.get("sweep") == "gauges"}
    assert failed == {"nan": 3.0}
    print(f"\n{name}{{sweep=gauges,group={GROUP}}} = {value} on port {port}")


def test_fit_latency_is_reported(start, tmp_path):
    path = str(tmp_path / "exp")
    actor = start("latency", path)
    assert all(ray.get([actor.add.remote(r) for r in law_records("latency", failed=0)]))
    report(actor)
    latencies, round_trips = [], []
    for i in range(10):
        record = make_record(f"extra-{i}", 2 ** (i % 4), 64 * 2 ** (i % 5), 0.2 + 0.01 * i, sweep="latency")
        t0 = time.perf_counter()
        assert ray.get(actor.add.remote(record))
        rep = report(actor)
        round_trips.append(time.perf_counter() - t0)
        assert record["trial_id"] in rep["trial_ids"]
        assert rep["fit_latency_s"] is not None and rep["fit_latency_s"] >= 0
        latencies.append(rep["fit_latency_s"])
    ms = [1e3 * v for v in latencies]
    trips = [1e3 * v for v in round_trips]
    print(f"\nadd -> updated fit (16-26 records): actor-side fit_latency_s median "
          f"{statistics.median(ms):.1f} ms, max {max(ms):.1f} ms; client add + report round trip median "
          f"{statistics.median(trips):.1f} ms, max {max(trips):.1f} ms")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # fit.json is written right after each fit
        fit_file = RecordLog.for_experiment(path).store.read_json(FIT)
        if len(fit_file["trial_ids"]) == 26:
            break
        time.sleep(0.1)
    assert fit_file["groups"] == rep["groups"]


def test_whole_cluster_restart_reloads_every_record(start, tmp_path):
    path = str(tmp_path / "exp")
    actor = ra.get_or_create("persist", path)  # dies with this cluster
    records = law_records("persist", failed=1)
    assert all(ray.get([actor.add.remote(r) for r in records]))
    before = report(actor)

    ray.shutdown()  # the detached actor dies with the local cluster
    ray.init(**INIT)  # the module fixture shuts this one down
    with pytest.raises(ValueError):
        ray.get_actor(ra.actor_name("persist"), namespace=ra.NAMESPACE)
    actor = start("persist", path)
    after = report(actor)
    offline = storage_report("persist", path)
    assert after["trials_accepted"] == len(records) and after["trial_ids"] == offline["trial_ids"]
    assert by_id(ray.get(actor.records.remote())) == by_id(records)
    assert fits(after) == fits(offline) == fits(before)
    assert after["groups"] == offline["groups"]
    assert ra.find()._actor_id == actor._actor_id  # the only memlaw sweep on the new cluster

