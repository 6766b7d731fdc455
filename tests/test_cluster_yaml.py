"""cluster.yaml: valid for Ray's own autoscaler schema, and it says what memlaw's clusters promise."""

from __future__ import annotations

import yaml

import ray
from conftest import REPO
from ray.autoscaler._private.util import prepare_config, validate_config


def load() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_autoscaler_schema():
    # What `ray up` does: fill in the provider's defaults, then validate against ray-schema.json
    # (jsonschema.ValidationError on any unknown or mistyped field).
    validate_config(prepare_config(load()))


def test_cluster_yaml_machines_and_security():
    cfg = load()
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"GPU": 0}
    drivers = [t for t in types.values() if "memlaw_driver" in t.get("resources", {})]
    assert drivers and all("InstanceMarketOptions" not in t["node_config"] for t in drivers)
    spot = [t for t in types.values() if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    assert len(spot) >= 2 and all(t["min_workers"] == 0 and t["max_workers"] > 0 for t in spot)
    assert cfg["provider"]["cache_stopped_nodes"] is False and cfg["idle_timeout_minutes"] > 0
    assert cfg["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    assert all("RAY_AUTH_MODE=token" in c for c in cfg["worker_start_ray_commands"] if "ray start" in c)
