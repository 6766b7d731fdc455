"""A run's entry in its experiment's provenance.json, with the facts that need torch or Ray.

orchestrator/experiment/provenance.py reads everything else and writes the file; it never imports
torch or Ray (`memlaw export` reads the file without them), so the GPUs this driver sees and the Ray
cluster the trials run on are read here, where both are loaded already. The driver may be a CPU head
node of a GPU cluster: the cluster's resources say what the trials had.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from orchestrator.experiment.provenance import record_run, run_facts

log = logging.getLogger(__name__)


def record_this_run(experiment_uri: str, resumed: bool) -> None:
    """Append this run (a sweep's start, or a resume) to the experiment's provenance.json. Call it
    holding the experiment's run lock, after Ray started. A fact that cannot be read is None; a write
    that fails raises, as the sweep's other files do."""
    facts = run_facts("resume" if resumed else "start", gpus=local_gpus(), ray_cluster=ray_cluster())
    record_run(experiment_uri, facts)


def local_gpus() -> list[str] | None:
    """The names of the GPUs torch sees in this process ([] without any); None when torch cannot say."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as err:  # noqa: BLE001 - provenance never stops a sweep
        log.debug("no GPU facts: %s", err)
        return None


def ray_cluster() -> dict[str, Any] | None:
    """Alive nodes, CPUs, GPUs and accelerator types of the Ray cluster this driver is connected to."""
    try:
        resources = ray.cluster_resources()
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    except Exception as err:  # noqa: BLE001 - provenance never stops a sweep
        log.debug("no Ray cluster facts: %s", err)
        return None
    return {"nodes": nodes, "CPU": resources.get("CPU"), "GPU": resources.get("GPU"),
            "accelerator_types": sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))}
