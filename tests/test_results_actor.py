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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the editable install may predate the packages' __init__ files

import orchestrator  # noqa: E402,F401  (sets RAY_AUTH_MODE before Ray is imported)
import ray  # noqa: E402

from orchestrator import results_actor as ra  # noqa: E402
from orchestrator.law_report import build_report  # noqa: E402
from orchestrator.record_log import FIT, JOURNAL, LAW_FOLDER, RecordLog  # noqa: E402
from orchestrator.records import record_from_result  # noqa: E402
from trainables import metric_names as K  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402

INIT = dict(num_cpus=1, include_dashboard=False, object_store_memory=100 * 2**20, _node_ip_address="127.0.0.1",
            namespace=ra.NAMESPACE)
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


# -- records --------------------------------------------------------------------------------------


def config(rank: int, ell: int) -> dict:
    cfg = TrialConfig().to_dict()
    cfg["adapter"]["rank"], cfg["data"]["target_tokens"] = rank, ell
    return cfg


def make_record(trial_id: str, rank: int, ell: int, delta: float, status: str = "ok", sweep: str = "s") -> dict:
    result = {K.STEP: 300, K.LOSS_INIT: LOSS_INIT, K.LOSS_FINAL: LOSS_INIT - delta, K.DELTA_LOSS: delta,
              K.RANK: rank, K.TARGET_TOKENS: ell, K.TRAINABLE_PARAMS: 128 * rank,
              K.BITS_PER_PARAM: ell * delta / math.log(2) / (128 * rank), K.WALL_S: 1.0,
              "timestamp": 1_700_000_000.0, "time_total_s": 3.0, "node_ip": "127.0.0.1"}
    return record_from_result(trial_id, sweep, config(rank, ell), result, status=status,
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
    out += [make_record(f"{prefix}-failed-{i}", 8, 64, 40.0, status="nan", sweep=sweep) for i in range(failed)]
    return out


def storage_report(sweep: str, path: str) -> dict:
    return build_report(sweep, RecordLog.for_experiment(path).all())


def fits(report: dict) -> dict:
    return {label: {k: g["fit"][k] for k in FIT_KEYS} for label, g in report["groups"].items()}


def by_id(records: list[dict]) -> dict:
    return {r["trial_id"]: r for r in records}


def report(actor, wait_s: float = WAIT_S) -> dict:
    return ray.get(actor.report.remote(wait_s=wait_s), timeout=wait_s + 60)


def stop(actor) -> None:
    ray.kill(actor, no_restart=True)


# -- tests ----------------------------------------------------------------------------------------


def test_records_sent_twice_and_concurrently_count_once(local_ray, tmp_path):
    path = str(tmp_path / "exp")
    actor = ra.get_or_create("dedup", path)
    records = law_records("dedup")
    ids = {r["trial_id"] for r in records}
    # every record three times from this handle, once more from a second handle (found by name)
    # on other threads, all in flight at once: the actor runs up to 8 calls at a time
    second = ra.find("dedup")
    refs = [actor.add.remote(r) for _ in range(3) for r in records]
    more: list = []
    lock = threading.Lock()

    def send(chunk):
        got = [second.add.remote(r) for r in chunk]
        with lock:
            more.extend(got)

    threads = [threading.Thread(target=send, args=(records[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = ray.get(refs + more, timeout=120)
    sent = [r["trial_id"] for _ in range(3) for r in records] + [r["trial_id"] for r in sum(
        (records[i::3] for i in range(3)), [])]
    accepted = [tid for tid, new in zip(sent, outcomes) if new]
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
    stop(actor)


def test_killed_actor_restarts_with_the_records_and_fit_from_storage(local_ray, tmp_path):
    path = str(tmp_path / "exp")
    actor = ra.get_or_create("restart", path)
    records = law_records("restart")
    assert all(ray.get([actor.add.remote(r) for r in records]))
    before = report(actor)
    assert before["trials_accepted"] == len(records)

    killed_at = time.time()
    ray.kill(actor, no_restart=False)
    after = report(actor)  # the same handle: Ray re-runs the constructor, which reloads storage
    assert ray._private.state.actors(actor._actor_id.hex())["NumRestarts"] >= 1
    assert after["updated_at"] > killed_at, "a fresh fit made by the restarted actor"

    offline = storage_report("restart", path)
    assert after["trial_ids"] == offline["trial_ids"] == before["trial_ids"]
    assert after["trials_failed"] == offline["trials_failed"] == {"nan": 2}
    assert by_id(ray.get(actor.records.remote())) == by_id([r.to_dict() for r in RecordLog.for_experiment(path).all()])
    assert fits(after) == fits(offline) == fits(before)  # exactly: the fit does not depend on order
    assert after["groups"] == offline["groups"]

    # de-duplication survives the restart; new records still land
    assert not any(ray.get([actor.add.remote(r) for r in records]))
    assert ray.get(actor.add.remote(make_record("late", 16, 1024, 0.3, sweep="restart")))
    assert report(actor)["trials_accepted"] == len(records) + 1
    stop(actor)


def test_get_or_create_refuses_other_storage(local_ray, tmp_path):
    actor = ra.get_or_create("owned", str(tmp_path / "a"))
    assert ra.get_or_create("owned", str(tmp_path / "a"))._actor_id == actor._actor_id
    with pytest.raises(RuntimeError, match="already runs with storage"):
        ra.get_or_create("owned", str(tmp_path / "b"))
    assert ray.get(actor.info.remote())["experiment_uri"] == str(tmp_path / "a")
    assert ra.find("owned")._actor_id == actor._actor_id
    second = ra.get_or_create("owned-too", str(tmp_path / "b"))
    with pytest.raises(LookupError, match="2 memlaw sweeps"):
        ra.find()
    stop(second)
    stop(actor)


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


def test_gauges_reach_the_metrics_export_endpoint(local_ray, tmp_path):
    actor = ra.get_or_create("gauges", str(tmp_path / "exp"))
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
    assert seen is not None, f"no {name} sample for sweep 'gauges' on port {port} within 30 s; errors: {errors[-3:]}"
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
    stop(actor)


def test_fit_latency_is_reported(local_ray, tmp_path):
    path = str(tmp_path / "exp")
    actor = ra.get_or_create("latency", path)
    assert all(ray.get([actor.add.remote(r) for r in law_records("latency", failed=0)]))
    report(actor)
    latencies, round_trips = [], []
    for i in range(10):
        record = make_record(f"extra-{i}", 2 ** (i % 4), 64 * 2 ** (i % 5), 0.2 + 0.01 * i, sweep="latency")
        start = time.perf_counter()
        assert ray.get(actor.add.remote(record))
        rep = report(actor)
        round_trips.append(time.perf_counter() - start)
        assert record["trial_id"] in rep["trial_ids"]
        assert rep["fit_latency_s"] is not None and rep["fit_latency_s"] >= 0
        latencies.append(rep["fit_latency_s"])
    print(f"\nadd -> updated fit (16-26 records): actor-side fit_latency_s median {statistics.median(latencies) * 1e3:.1f} ms,"
          f" max {max(latencies) * 1e3:.1f} ms; client add+report round trip median "
          f"{statistics.median(round_trips) * 1e3:.1f} ms, max {max(round_trips) * 1e3:.1f} ms")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # fit.json is written right after each fit
        fit_file = RecordLog.for_experiment(path).store.read_json(FIT)
        if len(fit_file["trial_ids"]) == 26:
            break
        time.sleep(0.1)
    assert fit_file["groups"] == rep["groups"]
    stop(actor)


def test_whole_cluster_restart_reloads_every_record(local_ray, tmp_path):
    path = str(tmp_path / "exp")
    actor = ra.get_or_create("persist", path)
    records = law_records("persist", failed=1)
    assert all(ray.get([actor.add.remote(r) for r in records]))
    before = report(actor)

    ray.shutdown()  # the detached actor dies with the local cluster
    ray.init(**INIT)  # the module fixture shuts this one down
    with pytest.raises(ValueError):
        ray.get_actor(ra.actor_name("persist"), namespace=ra.NAMESPACE)
    actor = ra.get_or_create("persist", path)
    after = report(actor)
    offline = storage_report("persist", path)
    assert after["trials_accepted"] == len(records) and after["trial_ids"] == offline["trial_ids"]
    assert by_id(ray.get(actor.records.remote())) == by_id(records)
    assert fits(after) == fits(offline) == fits(before)
    assert after["groups"] == offline["groups"]
    assert ra.find()._actor_id == actor._actor_id  # the only memlaw sweep on the new cluster
    stop(actor)
