"""The embedded Ray's dashboard in a real browser (issue 15.5): headless Chromium (Debian's package)
logs in with the Ray token the way the dashboard's own dialog does, opens the results actor and
finds its latest fit line in the actor's logs; the same check through the dashboard's HTTP API.

The host is tests/embedded_dashboard_host.py: orchestrator.tune.ray_session.start_ray(dashboard=True),
what `memlaw sweep --dashboard` starts, with a results actor fed a known law.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from browser import CHROMIUM, Browser
from conftest import REPO, system_tool
from orchestrator.tune.ray_session import token_file

SCREENSHOT = "dashboard_results_actor.png"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embedded-dash")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "embedded_dashboard_host.py"), str(tmp / "exp"),
                             "browsersweep"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=(tmp / "host.err").open("w"), text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line, (tmp / "host.err").read_text()[-3000:]
        yield {**json.loads(line), "tmp": tmp}
    finally:
        proc.stdin.close()  # the host shuts its Ray down and exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _token() -> str:
    return os.environ.get("RAY_AUTH_TOKEN") or Path(token_file()).read_text().strip()


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


@pytest.mark.slow
def test_the_dashboard_http_api_shows_the_actor_and_its_fit_line(embedded):
    url, actor_id, latest = embedded["url"], embedded["actor_id"], embedded["fit_lines"][-1]
    assert url.startswith("http://127.0.0.1:")
    assert _get(f"{url}/api/version")[0] == 401  # token auth is on
    status, body = _get(f"{url}/api/v0/actors?filter_keys=actor_id&filter_predicates=%3D&filter_values={actor_id}",
                        _token())
    assert status == 200, body
    actor = json.loads(body)["data"]["result"]["result"][0]
    assert actor["class_name"] == "ResultsActor" and actor["name"] == "memlaw-results:browsersweep"
    status, log = _get(f"{url}/api/v0/logs/file?actor_id={actor_id}&suffix=out&lines=50", _token())
    assert status == 200 and log.strip().splitlines()[-1].endswith(f"sweep browsersweep: {latest}"), log[-2000:]


@pytest.fixture(scope="module")
def chromium() -> str:
    return system_tool(CHROMIUM, "apt-get install -y chromium")


@pytest.mark.slow
def test_headless_chromium_finds_the_results_actor_and_its_latest_fit(chromium, embedded):
    """Log in as the dashboard's dialog does (POST /api/authenticate with the bearer token: the server
    sets its HttpOnly cookie), open the actor's page, show its stdout log newest first."""
    url, actor_id, latest = embedded["url"], embedded["actor_id"], embedded["fit_lines"][-1]
    shot = embedded["tmp"] / SCREENSHOT
    browser = Browser(chromium, embedded["tmp"] / "chromium-profile", width=1800, height=1300)

    async def check(page):
        await page.send("Page.enable")
        await page.goto(f"{url}/")
        await page.wait_for_text("Authentication Token", timeout=60)  # without the cookie: the token dialog
        status = await page.evaluate(f"fetch('/api/authenticate', {{method: 'POST', headers: {{Authorization: "
                                     f"'Bearer {_token()}'}}}}).then(r => r.status)", await_promise=True)
        assert status == 200
        await page.send("Page.reload")  # the SPA re-reads its auth state with the cookie set
        await page.wait_for_text("Recent jobs", timeout=90)  # the overview, signed in
        # Then the actor's page through the SPA's router (navigating and reloading at once raced:
        # the reload could land before the navigation and reload the overview).
        await page.evaluate(f"location.hash = '#/actors/{actor_id}'")
        text = await page.wait_for_text("ResultsActor", "memlaw-results:browsersweep", "STDOUT", timeout=90)
        assert "Authentication Token Required" not in text
        clicked = await page.evaluate("(() => { const tab = [...document.querySelectorAll('button')]"
                                      ".find(b => b.innerText.trim() === 'STDOUT'); tab && tab.click(); "
                                      "return !!tab; })()")
        assert clicked
        await page.wait_for_text("sweep browsersweep: law after", timeout=60)
        # Reverse (newest first) before looking for the latest line: the log viewer renders only the rows
        # in its viewport, so in file order the newest line can be off screen and absent from the text.
        reversed_ = await page.evaluate("(() => { const r = [...document.querySelectorAll('input[type=checkbox]')]"
                                        ".pop(); r && r.click(); return !!r; })()")
        assert reversed_
        await page.wait_for_text(f"sweep browsersweep: {latest}", timeout=60)
        await page.evaluate("window.scrollTo(0, 0)")
        await asyncio.sleep(1.0)
        await page.screenshot(shot)

    try:
        browser.run(check)
    finally:
        browser.close()
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("MEMLAW_KEEP_SCREENSHOT")  # docs/figures/ is refreshed with this set
    if keep:
        shutil.copyfile(shot, Path(keep) / SCREENSHOT)
