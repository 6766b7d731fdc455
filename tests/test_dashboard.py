"""`memlaw law --dashboard URL` against a local head through the Ray Jobs API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from orchestrator.ray_session import default_token_auth  # noqa: E402

default_token_auth()  # RAY_AUTH_MODE before Ray is imported, as memlaw's own drivers do
import ray
from orchestrator import results_actor as ra
from test_results_actor import law_records


@pytest.mark.slow
def test_law_through_the_dashboard_jobs_api(tmp_path):
    """A short job on the cluster reads the live actor and prints JSON; the CLI shows that fit."""
    from ray.cluster_utils import Cluster

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env_path}"  # jobs run `memlaw`
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port,
        "object_store_memory": 100 * 2**20})
    try:
        ray.init(address=cluster.address, namespace=ra.NAMESPACE)
        actor = ra.get_or_create("dashsweep", str(tmp_path / "exp"))
        ray.get([actor.add.remote(record) for record in law_records("dashsweep")])
        expected = ray.get(actor.report.remote(wait_s=10.0))
        run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "law", "--dashboard",
                              f"http://127.0.0.1:{port}", "--sweep", "dashsweep", "--json"],
                             capture_output=True, text=True, timeout=180, env=os.environ.copy())
        assert run.returncode == 0, run.stderr[-2000:]
        got = json.loads(run.stdout)
        assert got["trials_accepted"] == expected["trials_accepted"] > 0
        label = next(iter(expected["groups"]))
        assert got["report"]["groups"][label]["fit"]["alpha"] == expected["groups"][label]["fit"]["alpha"]
    finally:
        os.environ["PATH"] = env_path
        ray.shutdown()
        cluster.shutdown()
