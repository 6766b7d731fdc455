"""A process that holds the embedded Ray with its dashboard (what `memlaw sweep --dashboard` starts,
through the same orchestrator.tune.ray_session.start_ray) and a results actor with a known fit, until its
stdin closes. Prints one JSON line: {"url", "actor_id", "fit_lines"}.

    python tests/embedded_dashboard_host.py EXPERIMENT_DIR SWEEP
"""

from __future__ import annotations

import json
import sys
import time

from orchestrator.tune.ray_session import start_ray


def main(experiment: str, sweep: str) -> None:
    url = start_ray(None, num_cpus=1, dashboard=True)
    import ray

    from orchestrator.tune import results_actor as ra
    from orchestrator.tune.sweep_output import fit_line
    from test_results_actor import law_records

    actor = ra.get_or_create(sweep, experiment)
    for record in law_records(sweep):  # one at a time: a refit (and its log line) per record or batch
        ray.get(actor.add.remote(record))
    report = ray.get(actor.report.remote(wait_s=30.0))
    time.sleep(1.0)  # the refit thread prints right after it publishes the fit
    actor_id = ray.get_actor(ra.actor_name(sweep), namespace=ra.NAMESPACE)._actor_id.hex()
    print(json.dumps({"url": url, "actor_id": actor_id, "fit_lines": fit_line(report)}), flush=True)
    sys.stdin.read()
    ray.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
