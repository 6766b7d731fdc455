"""The live law through the Ray Jobs API, against one local head (`ray start --head` on 127.0.0.1)
shared by this module: `memlaw law --dashboard`, `memlaw submit` of a small sweep and its fit read
back, and every way the Jobs API fails as one line, exit 2."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, memlaw_cmd, print_figure
from orchestrator.tune.jobs import explain


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head with its dashboard (and job agent) on free loopback ports and a token of its own; jobs
    find `memlaw` and this checkout's packages on the head's PATH and PYTHONPATH, as a cluster with
    memlaw installed does. `head.env` is what a client of this cluster runs with: every process that
    talks to it gets the token through RAY_AUTH_TOKEN, never from the machine's ~/.ray/auth_token."""
    from ray_heads import start_head

    tmp = tmp_path_factory.mktemp("dash-head")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    h = start_head(tmp, env, num_cpus=2, dashboard=True)
    try:  # stopped also when the setup fails after the head started (it would outlive the test run)
        h.url, h.env = f"http://127.0.0.1:{h.dashboard_port}", env
        _wait_for_job_agent(h)
        yield h
    finally:
        h.stop()


def _client(head):
    """A Jobs SDK client with the head's token in its header: in a test process Ray may have been
    imported (by an earlier test) before RAY_AUTH_MODE was set, and then the SDK sends no token."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.env['RAY_AUTH_TOKEN']}"})


def _wait_for_job_agent(head, timeout: float = 90.0) -> None:
    """The head's job agent registers a few seconds after `Ray runtime started`."""
    url, client = head.url, _client(head)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = client.submit_job(entrypoint="true")
            break
        except RuntimeError as err:
            if "No available agent" not in str(err):
                raise
            time.sleep(1.0)
    else:
        raise AssertionError(f"no job agent at {url} within {timeout:.0f} s")
    while client.get_job_status(job) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(0.5)


def _law(url: str, sweep: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(memlaw_cmd("law", "--dashboard", url, "--sweep", sweep, "--json"), cwd=REPO,
                          capture_output=True, text=True, timeout=180, env=env or os.environ.copy())


@pytest.mark.slow
def test_law_through_the_dashboard_jobs_api(head, tmp_path):
    """A short job on the cluster reads the live actor and prints JSON; the CLI shows that fit."""
    fill = subprocess.run([sys.executable, str(REPO / "tests" / "fill_results_actor.py"), head.address,
                           "dashsweep", str(tmp_path / "exp")], cwd=REPO, capture_output=True, text=True,
                          timeout=180, env=head.env)
    assert fill.returncode == 0, fill.stderr[-3000:]
    expected = json.loads(fill.stdout.strip().splitlines()[-1])
    run = _law(head.url, "dashsweep", head.env)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout)
    assert got["trials_accepted"] == expected["trials_accepted"] > 0
    assert got["source"] == f"live: the results actor, through the Jobs API at {head.url}"
    label = next(iter(expected["groups"]))
    assert got["report"]["groups"][label]["fit"]["alpha"] == expected["groups"][label]["fit"]["alpha"]


@pytest.mark.slow
def test_a_sweep_submitted_as_a_job_answers_through_the_dashboard(head, tmp_path, request):
    """`memlaw submit` starts a 2-trial sweep as a Ray Job; its log has the live lines and the final
    table, and `memlaw law --dashboard URL --sweep NAME` reads its fit from the same cluster."""

    sweep_file = tmp_path / "job.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "jobsweep", "trial": {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 1},
                                      "data": {"kind": "random", "target_tokens": 32},
                                      "budget": {"preset": "cpu", "steps": 40}, "eval": {"every": 20}},
        "space": "law_grid_cpu", "space_overrides": {"adapter.rank": [1, 2], "data.target_tokens": [32]},
        "search": {"kind": "grid"}, "resources": {"cpu": 1}, "max_concurrency": 2}))
    relative = subprocess.run(memlaw_cmd("submit", str(sweep_file), "--dashboard", head.url), cwd=REPO,
                              capture_output=True, text=True, timeout=120, env=head.env)
    assert relative.returncode == 2 and "storage_path 'memlaw-runs' is relative" in relative.stderr
    t0 = time.monotonic()
    done = subprocess.run(memlaw_cmd("submit", str(sweep_file), "--dashboard", head.url,
                                     "--storage", str(tmp_path / "runs")),
                          cwd=REPO, capture_output=True, text=True, timeout=180, env=head.env)
    assert done.returncode == 0, done.stderr[-2000:]
    job = done.stdout.strip()
    assert f"ray job logs --follow {job} --address {head.url}" in done.stderr
    client = _client(head)
    deadline = time.monotonic() + 400
    while (status := client.get_job_status(job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(1.0)
    logs = client.get_job_logs(job)
    assert status == "SUCCEEDED", logs[-3000:]
    seconds = time.monotonic() - t0
    assert "2/2 done  rank 2 x ℓ 32" in logs or "2/2 done  rank 1 x ℓ 32" in logs, logs[-3000:]
    assert "every trial of jobsweep" in logs and f"experiment   {tmp_path / 'runs' / 'jobsweep'}" in logs
    run = _law(head.url, "jobsweep", head.env)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout)
    assert got["trials_accepted"] == 2 and got["sweep"] == "jobsweep"
    assert sorted(got["report"]["trial_ids"]) == sorted(
        json.loads(line)["trial_id"] for line in _journal(tmp_path / "runs" / "jobsweep"))
    print_figure(request, f"memlaw submit: a 2-trial sweep as a Ray Job, submitted to done in {seconds:.0f} s "
                          "(under load); its fit read back through the Jobs API")


def _journal(experiment):
    from orchestrator.records.journal import RecordLog

    return [json.dumps(r.to_dict()) for r in RecordLog.for_experiment(str(experiment)).all()]


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in run.stderr, run.stderr
    return lines[0]


@pytest.mark.slow
def test_jobs_api_refusals_are_one_line_each(head):
    """A wrong token (403), no token (401): one line each, exit 2, nothing submitted."""
    wrong = _one_error_line(_law(head.url, "x", env={**head.env, "RAY_AUTH_TOKEN": "0" * 32}))
    assert "refused memlaw's Ray token (403)" in wrong
    none = _one_error_line(_law(head.url, "x", env={**head.env, "RAY_AUTH_MODE": "disabled"}))
    assert "asks for a Ray token (401)" in none


@pytest.mark.slow  # spawns the CLI: the CLI process and its environment
def test_an_unreachable_dashboard_and_a_missing_token_are_one_line_each(tmp_path):
    from ray_heads import free_port

    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    line = _one_error_line(_law(url, "x", {**os.environ, "RAY_AUTH_MODE": "token",
                                           "RAY_AUTH_TOKEN": secrets.token_hex(32)}))
    assert "cannot reach a Ray dashboard at http://127.0.0.1:" in line and time.monotonic() - t0 < 60
    none = _one_error_line(_law(url, "x", {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"},
                                           "RAY_AUTH_MODE": "token", "HOME": str(tmp_path),
                                           "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no-token")}))
    assert none.startswith(f"error: memlaw has no Ray token to send to the dashboard at {url}"), none


def test_no_job_agent_reads_as_what_to_do():
    """The Jobs API's 500 while the head's job agent is not up yet (ray/dashboard/modules/job/job_head.py)."""
    err = RuntimeError("Request failed with status code 500: No available agent to submit job, please try "
                       "again later.")
    assert explain(err, "http://127.0.0.1:8265") == (
        "the dashboard at http://127.0.0.1:8265 has no job agent yet (Ray starts it a few seconds after the head); "
        "try again, and if it persists check the head's dashboard_agent.log")
