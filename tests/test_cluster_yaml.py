"""cluster.yaml (AWS) and cluster-gcp.yaml: valid for Ray's own autoscaler schema, they say what
memlaw's clusters promise, and they describe the same cluster node type for node type."""

from __future__ import annotations

import pytest
import yaml

import ray
from conftest import REPO
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_FILES = ("cluster.yaml", "cluster-gcp.yaml")


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def is_spot(node_config: dict) -> bool:
    """AWS: a spot market request; GCP: the SPOT provisioning model (or the older preemptible flag)."""
    aws = node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    scheduling = node_config.get("scheduling", {})
    scheduling = scheduling[0] if isinstance(scheduling, list) else scheduling
    gcp = scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible") is True
    return aws or gcp


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_file_validates_against_rays_autoscaler_schema(name):
    # What `ray up` does: fill in the provider's defaults, then validate against ray-schema.json
    # (jsonschema.ValidationError on any unknown or mistyped field).
    validate_config(prepare_config(load(name)))


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_file_machines_and_security(name):
    cfg = load(name)
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"GPU": 0}
    drivers = [t for t in types.values() if "memlaw_driver" in t.get("resources", {})]
    assert drivers and not any(is_spot(t["node_config"]) for t in drivers)
    spot = [t for t in types.values() if is_spot(t["node_config"])]
    assert len(spot) >= 2 and all(t["min_workers"] == 0 and t["max_workers"] > 0 for t in spot)
    assert all(t["resources"].get("GPU", 0) >= 1 for t in spot)  # stated, for sweeps' cluster_file checks
    assert cfg["provider"]["cache_stopped_nodes"] is False and cfg["idle_timeout_minutes"] > 0
    assert cfg["docker"]["image"].startswith(f"rayproject/ray:{ray_pin()}-")
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    assert all("RAY_AUTH_MODE=token" in c for c in cfg["worker_start_ray_commands"] if "ray start" in c)


def test_the_clouds_describe_the_same_cluster():
    aws, gcp = (load(name) for name in CLUSTER_FILES)
    assert aws["head_node_type"] == gcp["head_node_type"]
    assert set(aws["available_node_types"]) == set(gcp["available_node_types"])
    for name, node in aws["available_node_types"].items():
        other = gcp["available_node_types"][name]
        assert node["resources"] == other["resources"], name
        assert (node.get("min_workers"), node.get("max_workers")) == (other.get("min_workers"), other.get("max_workers"))
        assert is_spot(node["node_config"]) == is_spot(other["node_config"]), name
    for key in ("docker", "file_mounts", "setup_commands", "head_start_ray_commands", "worker_start_ray_commands",
                "idle_timeout_minutes", "max_workers"):
        assert aws[key] == gcp[key], key


def ray_pin() -> str:
    """The one Ray version memlaw installs: pyproject.toml's `ray[...]==X` (issue 28 item 8)."""
    import re
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [m.group(1) for d in deps if (m := re.fullmatch(r"ray\[[a-z,]+\]==([0-9.]+)", d.split(";")[0].strip()))]
    return pin


def test_ray_is_pinned_once_and_installed_at_the_pin():
    """The image tags follow the pin (test above); the installed Ray is the pinned one, so a new Ray
    release cannot change what runs without a change here."""
    assert ray.__version__ == ray_pin()


def test_the_lock_pins_every_dependency_inside_its_range_and_ray_at_the_pin():
    """requirements.lock (issue 25 item 5): what `make install` and CI install. Every dependency and test
    extra of pyproject.toml has exactly one pinned line, inside pyproject's range; Ray at the one pin."""
    import tomllib

    from packaging.requirements import Requirement

    lines = [ln for ln in (REPO / "requirements.lock").read_text().splitlines() if ln and not ln.startswith("#")]
    pins = dict(ln.split("==", 1) for ln in lines)
    assert len(pins) == len(lines) and all("==" in ln for ln in lines), "one exact pin per line"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        req = Requirement(spec)
        key = next((k for k in pins if k.lower().replace("_", "-") == req.name.lower().replace("_", "-")), None)
        assert key is not None, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pins[key], prereleases=True), (req.name, pins[key], str(req.specifier))
    assert pins["ray"] == ray_pin() and "+" not in pins["torch"]  # torch: no local tag, CPU and GPU alike
