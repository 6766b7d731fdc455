"""Results actors on a long-lived cluster (issue 24, item 9), tested on a `ray start` head of the
test's own.

Before: the detached actor outlived its sweep, so a new sweep of the same name with other storage
(or a moved copy resumed) failed with a RuntimeError traceback naming the old path, and left
`memlaw_sweep.json` behind so that the retry was refused. Now: an actor whose run has ended (its
experiment's lock free: the run finished or died) is taken over by the next sweep of that name; one
whose run is alive is refused in one line, exit 2, before the new experiment folder says it exists.
An actor still outlives its sweep on purpose: `memlaw law --address/--dashboard` answers after it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, memlaw_cmd

TRIAL = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 1},
         "data": {"kind": "random", "target_tokens": 16}, "budget": {"preset": "cpu", "steps": 40},
         "eval": {"every": 20}}


def sweep_file(tmp_path, storage, steps: int = 40):
    path = tmp_path / f"same-{storage.name}.yaml"
    path.write_text(yaml.safe_dump({"name": "same", "trial": {**TRIAL, "budget": {**TRIAL["budget"], "steps": steps}},
                                    "space": "law_grid_smoke", "space_overrides": {"adapter.rank": [1],
                                                                                   "data.target_tokens": [16]},
                                    "resources": {"cpu": 1}, "max_concurrency": 1, "storage_path": str(storage)}))
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_actors_end_with_their_sweep_and_a_dead_runs_actor_is_taken_over(tmp_path):
    from ray_heads import start_head

    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    (tmp_path / "head").mkdir()
    head = start_head(tmp_path / "head", env, num_cpus=2)
    try:
        def memlaw(*args, **kw):
            return subprocess.run(memlaw_cmd(*args), cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=300, **kw)

        # a run that is alive holds the name: another storage is refused, and leaves no experiment behind
        first = subprocess.Popen(memlaw_cmd("sweep", str(sweep_file(tmp_path, tmp_path / "s1", steps=100000)),
                                            "--address", head.address), cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 180
        while not (tmp_path / "s1" / "same" / "memlaw_live.json").exists():  # its actor is up
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
        refused = memlaw("sweep", str(sweep_file(tmp_path, tmp_path / "s2")), "--address", head.address)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert f"sweep name 'same' is in use on this cluster by a run of the experiment {tmp_path / 's1' / 'same'}" \
            in refused.stderr
        assert not (tmp_path / "s2" / "same" / "memlaw_sweep.json").exists()  # the retry is not refused for it

        os.killpg(first.pid, signal.SIGKILL)  # the run dies; its detached actor stays behind
        first.wait(timeout=60)
        taken = memlaw("sweep", str(sweep_file(tmp_path, tmp_path / "s2")), "--address", head.address)
        assert taken.returncode == 0, taken.stderr[-3000:]
        asked = memlaw("law", "--address", head.address, "--sweep", "same")  # the new run's actor answers
        assert asked.returncode == 0 and "1 trials accepted" in asked.stdout, asked.stderr[-2000:]
        assert f"live: the results actor on Ray at {head.address}" in asked.stdout
        again = memlaw("sweep", str(sweep_file(tmp_path, tmp_path / "s3")), "--address", head.address)
        assert again.returncode == 0, again.stderr[-3000:]  # a finished run's actor is taken over too
    finally:
        head.stop()
    print(f"\nactor lifetime: refused while the first run lived; taken over after it died and after a finished run "
          f"({sys.platform})")
