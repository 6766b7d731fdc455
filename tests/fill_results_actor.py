"""Join a running cluster, give its results actor for SWEEP the synthetic law records of
test_results_actor, and print the actor's report as one JSON line.

    python tests/fill_results_actor.py ADDRESS SWEEP EXPERIMENT_DIR

A process of its own, as a sweep's driver is: a test process may have imported Ray before token
authentication was configured (Ray reads RAY_AUTH_MODE once, at import), and such a driver cannot
join a cluster that asks for a token. Here the environment is set before Ray is imported.
"""

from __future__ import annotations

import json
import sys

from orchestrator.tune.ray_session import default_token_auth


def main(address: str, sweep: str, experiment: str) -> None:
    default_token_auth()
    import ray

    from orchestrator.tune import results_actor as ra
    from test_results_actor import law_records

    ray.init(address=address, namespace=ra.NAMESPACE, log_to_driver=False)
    try:
        actor = ra.get_or_create(sweep, experiment)
        ray.get([actor.add.remote(record) for record in law_records(sweep)])
        print(json.dumps(ray.get(actor.report.remote(wait_s=10.0))), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
