"""The cluster a sweep is pinned to (`cluster_file: cluster.yaml`): trial resources against its node types.

Checked before Ray starts: a trial that no node type of the launcher file could ever hold would
leave the autoscaler waiting forever. Reads the YAML only; no Ray.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Protocol

from trainables.schema import ConfigError, Problem
from trainables.yaml_input import load_yaml_mapping
from trainables.zero_config import ZeroConfig


class PinnedSweep(Protocol):
    """What the check reads of a sweep (orchestrator/config/sweep.py's SweepConfig, which calls it)."""

    cluster_file: str | None
    trainable: str
    zero: ZeroConfig
    resources: Any  # sweep.ResourcesConfig: cpu, gpu, custom


def node_types(path: str) -> dict[str, dict[str, float]]:
    """Each node type's resources as a cluster launcher file states them (available_node_types)."""
    data = load_yaml_mapping(path)
    types = data.get("available_node_types")
    if not isinstance(types, Mapping) or not types:
        raise ConfigError([Problem("cluster_file", f"{path} has no available_node_types")])
    out = {}
    for name, node in types.items():
        resources = node.get("resources") if isinstance(node, Mapping) else None
        out[str(name)] = dict(resources) if isinstance(resources, Mapping) else {}
    return out


def cluster_problems(sweep: PinnedSweep) -> list[Problem]:
    """Trials that no node of the pinned cluster could ever hold (the autoscaler would wait forever)."""
    try:
        types = node_types(os.path.expanduser(sweep.cluster_file))
    except ConfigError as err:
        return err.problems
    except OSError as err:
        return [Problem("cluster_file", str(err))]
    unstated = sorted(name for name, res in types.items() if "GPU" not in res)
    if unstated:
        return [Problem("cluster_file", f"node type(s) {unstated} do not state resources: {{GPU: n}}; "
                                        "state them so GPU requests can be checked")]
    largest = max(res["GPU"] for res in types.values())
    z = sweep.zero
    if sweep.trainable == "zero" and z.gpu_per_worker > largest:
        return [Problem("zero.gpu_per_worker", f"{z.gpu_per_worker:g} GPUs per rank, but the largest node of "
                                               f"{sweep.cluster_file} has {largest:g}")]
    if sweep.trainable == "zero" and z.pack and z.gpus_per_trial() > largest:
        return [Problem("zero.workers_per_trial", f"pack: true puts {z.workers_per_trial} ranks x "
                                                  f"{z.gpu_per_worker:g} GPUs = {z.gpus_per_trial():g} GPUs on one "
                                                  f"node, but the largest node of {sweep.cluster_file} has "
                                                  f"{largest:g}")]
    if sweep.resources.gpu > largest:
        return [Problem("resources.gpu", f"{sweep.resources.gpu:g} GPUs per trial, but the largest node of "
                                         f"{sweep.cluster_file} has {largest:g}")]
    return []
