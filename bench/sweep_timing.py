"""What the sweep benches share: one sweep timed on a fresh local Ray, and each side of a comparison
run as its own child process (a fresh Ray and fresh module state per side), read back from the
child's last stdout line as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any


def timed_sweep(sweep) -> tuple[Any, float, float]:
    """(Tune's ResultGrid, seconds to start Ray, seconds from before Ray started to the sweep's end)."""
    from orchestrator.tune.ray_session import start_ray
    from orchestrator.tune.tuner import run_sweep

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    start = time.perf_counter()
    start_ray(None)
    ray_up = time.perf_counter() - start
    grid = run_sweep(sweep)
    return grid, ray_up, time.perf_counter() - start


def child_result(argv: list[str], env: dict[str, str], side: str) -> dict:
    """Run one side of a comparison; its last stdout line is its JSON result. Exits naming the side."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"the {side} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])
