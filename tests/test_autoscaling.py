"""cluster.yaml's node types on one machine: Ray's fake multi-node autoscaler scales from zero for a
sweep whose trials need the `memlaw_driver` resource, and back to zero once the nodes are idle.

The node types are cluster.yaml's own, read from the file and scaled down: every worker type keeps
its custom resources (memlaw_driver) and gets one CPU, no GPU and a small object store. GPU types
become CPU stand-ins that no trial here can use. The head advertises no CPU and no GPU, as in
cluster.yaml, so no trial can land on it.

Why not `ray.cluster_utils.AutoscalingCluster`: its start() and shutdown() run `ray stop --force`,
which would stop every Ray on this shared machine, and it reads
`fake_multi_node/example.yaml`, which the Ray 2.60 wheel does not ship. This test writes the same
config itself and starts the head as `ray start --head --block` with RAY_FAKE_CLUSTER=1, as
AutoscalingCluster does. The fake provider starts each node inside the autoscaler's monitor process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections import Counter

import pytest
import yaml

from conftest import REPO, memlaw_cmd, print_figure
from orchestrator.records.journal import RecordLog
from ray_heads import free_port, node_type, raylets, start_head
from test_sweep import SMOKE_TRIAL

FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"  # the fake provider's head id
IDLE_TIMEOUT_MIN = 0.1  # 6 s: nodes idle this long are terminated
NODE_OBJECT_STORE = 80 * 2**20


def scaled_node_types() -> dict[str, dict]:
    """cluster.yaml's worker node types with 1 CPU each, GPUs dropped, custom resources kept, ≤ 2 nodes."""
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    types = {}
    for name, spec in cluster["available_node_types"].items():
        if name == cluster["head_node_type"]:
            continue
        custom = {k: v for k, v in (spec.get("resources") or {}).items() if k not in ("CPU", "GPU")}
        types[name] = {"resources": {**custom, "CPU": 1, "object_store_memory": NODE_OBJECT_STORE},
                       "node_config": {}, "min_workers": 0, "max_workers": min(2, spec["max_workers"])}
    return types


def fake_cluster_config(gcs_port: int) -> dict:
    types = scaled_node_types()
    types["ray.head.default"] = {"resources": {"CPU": 0, "GPU": 0}, "node_config": {}, "max_workers": 0}
    return {
        "cluster_name": "memlaw-fake", "max_workers": sum(t["max_workers"] for t in types.values()),
        "upscaling_speed": 1.0, "idle_timeout_minutes": IDLE_TIMEOUT_MIN, "head_node_type": "ray.head.default",
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "available_node_types": types, "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
    }


def write_sweep(tmp, driver_resource: str) -> str:
    sweep = {"name": "autoscale", "trial": SMOKE_TRIAL, "space": "law_grid_smoke", "search": {"kind": "grid"},
             "space_overrides": {"adapter.rank": [1, 2], "data.target_tokens": [32, 64]},
             "resources": {"cpu": 1, "custom": {driver_resource: 1}}, "max_concurrency": 2,
             "storage_path": str(tmp / "runs"), "max_failures": 1}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return str(path)


def worker_nodes(head) -> dict[int, str]:
    """Worker nodes alive now: raylet pid -> node type (the head's raylet has no type)."""
    return {p.pid: t for p in raylets(head) if (t := node_type(p)) is not None}


def worker_types(head) -> Counter:
    return Counter(worker_nodes(head).values())


@pytest.mark.slow
@pytest.mark.timeout(600)  # a drill: its own deadline, not the suite default
def test_a_driver_resource_sweep_scales_up_from_zero_and_back_down(tmp_path, request):
    types = scaled_node_types()
    drivers = [name for name, t in types.items() if "memlaw_driver" in t["resources"]]
    assert drivers, "cluster.yaml has no node type with the memlaw_driver resource"
    port = free_port()
    config = tmp_path / "fake-cluster.yaml"
    config.write_text(yaml.safe_dump(fake_cluster_config(port)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN_PATH"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_FAKE_CLUSTER="1",
               AUTOSCALER_UPDATE_INTERVAL_S="1")
    head = start_head(tmp_path, env, num_cpus=0, port=port, extra=(f"--autoscaling-config={config}", "--num-gpus=0"))
    try:
        time.sleep(3)
        assert not worker_types(head), "worker nodes before any demand: min_workers must be 0"
        t0 = time.monotonic()
        out = open(tmp_path / "sweep.log", "w")
        proc = subprocess.Popen(memlaw_cmd("sweep", write_sweep(tmp_path, "memlaw_driver"), "--address",
                                           head.address), stdout=out, stderr=subprocess.STDOUT, env=env)
        first_up, peak, launched = None, Counter(), {}
        while proc.poll() is None:
            nodes = worker_nodes(head)
            launched.update(nodes)
            now = Counter(nodes.values())
            if now and first_up is None:
                first_up = time.monotonic() - t0
            if sum(now.values()) > sum(peak.values()):
                peak = now
            assert time.monotonic() - t0 < 900, "the sweep did not finish in 15 min"
            time.sleep(0.5)
        out.close()
        finished = time.monotonic()
        assert proc.returncode == 0, (tmp_path / "sweep.log").read_text()[-3000:]
        records = RecordLog.for_experiment(str(tmp_path / "runs" / "autoscale")).all()
        assert len(records) == 4 and all(r.ok for r in records), [(r.trial_id, r.status) for r in records]
        assert all(r.node_id and r.node_id != FAKE_HEAD_NODE_ID for r in records), "a trial ran on the head"
        assert first_up is not None and set(launched.values()) <= set(drivers), f"launched {launched}, drivers {drivers}"

        while worker_types(head):
            assert time.monotonic() - finished < 180, f"still up 180 s after the sweep: {dict(worker_types(head))}"
            time.sleep(0.5)
        down = time.monotonic() - finished
        after_last_trial = time.time() - max(r.ended_at for r in records)  # Tune's timestamps, whole seconds
        print_figure(request, f"[autoscaling] first node {first_up:.1f} s after the sweep started; at most "
                              f"{sum(peak.values())} worker nodes alive at once ({dict(peak)}), "
                              f"{len(launched)} launched in all; 4/4 trials on "
                              f"{len({r.node_id for r in records})} driver nodes; sweep {finished - t0:.0f} s; back "
                              f"to 0 nodes {after_last_trial:.0f} s after the last trial ended, {down:.1f} s after "
                              f"the driver exited (idle timeout {IDLE_TIMEOUT_MIN * 60:.0f} s)")
    finally:
        head.stop()
