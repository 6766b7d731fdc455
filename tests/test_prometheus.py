"""The live law through a real Prometheus: Debian's `prometheus`, scraping with the config Ray generates.

Ray's dashboard head writes two files into the session folder (dashboard/modules/metrics/
metrics_head.py and reporter_head.py): `metrics/prometheus/prometheus.yml`, a scrape config whose
only job reads its targets from `prom_metrics_service_discovery.json`, which lists every node's
metrics export address. So the head needs the dashboard; everything here binds 127.0.0.1. The test
keeps Ray's config, shortens the scrape interval to 1 s, and runs its own Prometheus (never the
Debian service) with storage in a temporary folder.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from orchestrator.tune.ray_session import default_token_auth  # noqa: E402

default_token_auth()  # RAY_AUTH_MODE before Ray is imported, as memlaw's own drivers do
import ray
from conftest import print_figure, system_tool
from orchestrator.tune import results_actor as ra
from orchestrator.tune.ray_session import loopback_node_ip
from ray_heads import free_port
from test_grafana_dashboard import load as load_dashboard
from test_grafana_dashboard import panel_queries
from test_results_actor import law_records

SWEEP = "promsweep"


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(promql)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
    except OSError:
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus() -> str:
    return system_tool("prometheus", "apt-get install -y prometheus")


@pytest.fixture
def ray_head_with_dashboard():
    assert not ray.is_initialized(), "another test left Ray running"
    with loopback_node_ip():  # the embedded default's loopback binding, plus the dashboard head
        ray.init(address="local", num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=free_port(), object_store_memory=100 * 2**20, namespace=ra.NAMESPACE)
    try:
        yield Path(ray._private.worker._global_node.get_session_dir_path())
    finally:
        ray.shutdown()


def prometheus_config(session: Path, tmp: Path) -> Path:
    """Ray's generated scrape config, with a 1 s scrape interval."""
    generated = session / "metrics" / "prometheus" / "prometheus.yml"
    discovery = session / "prom_metrics_service_discovery.json"
    wait_for(lambda: generated.is_file() and discovery.is_file(), 60, f"{generated} and {discovery}")
    config = yaml.safe_load(generated.read_text())
    assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == [str(discovery)], config
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_prometheus_scrapes_the_alpha_the_actor_reports(prometheus, ray_head_with_dashboard, tmp_path, request):
    binary = prometheus
    actor = ra.get_or_create(SWEEP, str(tmp_path / "exp"))
    ray.get([actor.add.remote(record) for record in law_records(SWEEP)])
    report = ray.get(actor.report.remote(wait_s=30.0))
    expected = {label: group["fit"]["alpha"] for label, group in report["groups"].items()}
    assert expected and all(a is not None for a in expected.values()), report
    reported_at = time.monotonic()

    port = free_port()
    config = prometheus_config(ray_head_with_dashboard, tmp_path)
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        promql = f'ray_memlaw_law_alpha{{sweep="{SWEEP}"}}'
        rows = wait_for(lambda: query(port, promql), 120, f"{promql} in Prometheus (log: {log.name})", every=1.0)
        waited = time.monotonic() - reported_at
        got = {row["metric"]["group"]: float(row["value"][1]) for row in rows}
        assert got.keys() == expected.keys(), (got, expected)
        for label, alpha in expected.items():
            assert math.isclose(got[label], alpha, rel_tol=1e-9), (label, got[label], alpha)
        for title, expr in panel_queries(load_dashboard()).items():  # the shipped Grafana panels, as Grafana asks
            concrete = expr.replace("$sweep", SWEEP).replace("$group", ".*")
            assert wait_for(lambda q=concrete: query(port, q), 30, f"data for panel {title}: {concrete}"), title
        targets = len(json.loads((ray_head_with_dashboard / "prom_metrics_service_discovery.json").read_text())[0]
                      ["targets"])
        print_figure(request, f"[prometheus] alpha {next(iter(got.values())):.6f} of {len(got)} group(s) queried "
                              f"from Prometheus {waited:.1f} s after the actor's report ({targets} scrape targets "
                              f"from Ray's service discovery, scrape interval 1 s); all {len(panel_queries(load_dashboard()))} "
                              f"Grafana panel queries return data")
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()
        ray.kill(actor, no_restart=True)
