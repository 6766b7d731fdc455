"""The live law from another shell (issue 15.1): a running default sweep answers
`memlaw law --experiment DIR --live` from a second process, with a connect timeout, and an ended one
says so and gives the fit from storage.

Driven by progress, not the clock (issue 28 item 6): half the sweep's trials hang (the `hang` fault
drill) until the sweep's trial time limit ends them, one trial at a time, so the sweep is live for
HANG_S seconds after each of their records whatever the machine's speed; the test queries when the
journal has grown and asserts the live count against the journal, never against elapsed time."""

from __future__ import annotations

import json
import statistics
import subprocess
import time

import pytest
import yaml

from conftest import REPO, memlaw_cmd, print_figure

TRIAL = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 1},
         "data": {"kind": "random", "target_tokens": 32}, "budget": {"preset": "cpu", "steps": 200},
         "eval": {"every": 100}, "inject_at_step": 150}
#: Each hanging trial holds the sweep live this long (its time limit): the window one query must land in.
HANG_S = 15


def query(experiment) -> tuple[dict, str, float]:
    """One `law --live` query: always exit 0 with a fit, live or (a sweep that ended, even while the
    query was inside its Ray: issue 24 item 5) from storage, said as such, within the query's deadline."""
    from orchestrator.tune.live_query import QUERY_DEADLINE_S

    t0 = time.monotonic()
    done = subprocess.run(memlaw_cmd("law", "--experiment", str(experiment), "--live", "--json"), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - t0 < QUERY_DEADLINE_S + 15
    return json.loads(done.stdout), done.stderr, time.monotonic() - t0


def wrong_sweep_is_one_line(experiment) -> None:
    """`--address A --sweep WRONG` on a live Ray: one line, exit 2 (it was a ValueError traceback)."""
    address = json.loads((experiment / "memlaw_live.json").read_text())["address"]
    done = subprocess.run(memlaw_cmd("law", "--address", address, "--sweep", "wrong"), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == (f"error: no memlaw sweep 'wrong' on the Ray at {address} "
                                                            "(is --sweep right?)"), done.stderr


def journaled(experiment) -> int:
    """Records the sweep's results actor has persisted (it journals a record before counting it)."""
    from orchestrator.records.journal import RecordLog

    return len(RecordLog.for_experiment(str(experiment)).all()) if (experiment / "memlaw_sweep.json").exists() else 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_second_process_watches_the_accepted_count_grow(tmp_path, request):
    sweep = tmp_path / "live.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "live", "trial": TRIAL, "space": "law_grid_smoke", "search": {"kind": "grid"},
        "space_overrides": {"adapter.rank": [1, 2, 4], "data.target_tokens": [32], "inject_fault": ["none", "hang"]},
        "resources": {"cpu": 1}, "max_concurrency": 1, "max_failures": 0, "trial_timeout_s": HANG_S,
        "storage_path": str(tmp_path / "runs")}))
    experiment = tmp_path / "runs" / "live"
    log = (tmp_path / "sweep.log").open("w")
    proc = subprocess.Popen(memlaw_cmd("sweep", str(sweep), "--dashboard"), cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 400
        while not (experiment / "memlaw_live.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.5)
        check_dashboard((tmp_path / "sweep.log").read_text())
        seen, latencies = [], []
        while len(seen) < 2:  # a query after the journal grows: three hangs give at least two live windows
            assert proc.poll() is None and time.monotonic() < deadline, (seen, (tmp_path / "sweep.log").read_text()[-3000:])
            done = journaled(experiment)
            if done == 0 or (seen and done <= seen[-1]):
                time.sleep(0.2)
                continue
            report, _, seconds = query(experiment)
            if not seen:
                wrong_sweep_is_one_line(experiment)
            assert report["source"].startswith("live: the results actor on Ray at 127.0.0.1:"), report["source"]
            assert report["trials_accepted"] >= done, (report["trials_accepted"], done)  # never behind the journal
            seen.append(report["trials_accepted"])
            latencies.append(seconds)
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert seen[0] < seen[1], seen
    after, stderr, _ = query(experiment)
    assert after["source"].startswith("storage (not live: the sweep is not running")
    assert "showing the fit from storage instead" in stderr and after["trials_accepted"] == 6
    assert after["trials_failed"] == {"timeout": 3}  # the hangs, ended by the time limit, none in the fit
    printed = (tmp_path / "sweep.log").read_text()
    assert f"memlaw law --experiment {experiment} --live" in printed and f"experiment   {experiment}" in printed
    assert "driver_artifacts" not in printed and "== Status ==" not in printed  # Tune's header is not shown
    assert "6/6 done  rank " in printed and "ETA 0s" in printed
    table = printed[printed.index("every trial of live"):].splitlines()[1:9]
    assert table[0].split() == ["rank", "ℓ", "ΔL", "certified", "greedy", "EM", "status"]
    statuses = [row.split()[-1] for row in table[2:]]
    assert sorted(statuses) == ["ok"] * 3 + ["timeout"] * 3, table
    print_figure(request, f"live law from a second process: accepted counts {seen} (journal-driven); query latency "
                          f"median {statistics.median(latencies):.2f} s over {len(latencies)} queries")


def check_dashboard(printed: str) -> None:
    """`memlaw sweep --dashboard` printed its dashboard's URL, which answers only with the token."""
    import re
    import urllib.error
    import urllib.request

    from orchestrator.tune.ray_session import token_file

    url = re.search(r"dashboard +(http://127\.0\.0\.1:\d+)", printed).group(1)
    assert "the page asks once for the Ray token" in printed
    try:
        urllib.request.urlopen(f"{url}/api/version", timeout=30)
        raise AssertionError("the dashboard answered without the token")
    except urllib.error.HTTPError as err:
        assert err.code == 401
    token = open(token_file()).read().strip()
    request = urllib.request.Request(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read())["ray_version"]


@pytest.mark.slow  # spawns the CLI: the CLI process and its deadline
def test_an_unreachable_address_fails_within_the_timeout():
    t0 = time.monotonic()
    done = subprocess.run(memlaw_cmd("law", "--address", "127.0.0.1:1", "--json"), cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "could not reach the sweep's Ray at 127.0.0.1:1 within 10 s" in done.stderr
    assert time.monotonic() - t0 < 40


@pytest.mark.slow  # spawns the CLI: the CLI process
def test_live_without_a_running_sweep_gives_the_stored_fit(tmp_path):
    from test_structure import finished_experiment

    uri = finished_experiment(tmp_path)
    done = subprocess.run(memlaw_cmd("law", "--experiment", uri, "--live", "--json"), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"] == f"storage (not live: the sweep is not running (no memlaw_live.json in {uri}))"
