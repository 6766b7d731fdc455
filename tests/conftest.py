"""Shared fixtures: every test run gets its own model cache, so tiny presets are really built,
saved and re-loaded through `from_pretrained`, and nothing leaks into the user's ~/.cache."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
#: Set by .ci/run, which installs the system tools: a missing one then fails its tests instead of
#: skipping them, so CI always runs them.
REQUIRE_SYSTEM_TOOLS = "MEMLAW_REQUIRE_SYSTEM_TOOLS"


def system_tool(name: str, install: str) -> str:
    """The path of a Debian binary a test drives (chromium, prometheus). Missing: a skip whose
    reason names the install command (pytest -ra lists it in the summary), or a failure when
    MEMLAW_REQUIRE_SYSTEM_TOOLS is set (CI)."""
    path = shutil.which(name)
    if path:
        return path
    not_here(f"{name} is not installed: {install} (or run `bash .ci/run`, which installs it)")


def require_root(what: str) -> None:
    """Tests that mount a tmpfs or listen as another user need root (CI runs as root): otherwise
    the same loud skip, or failure under MEMLAW_REQUIRE_SYSTEM_TOOLS, as a missing system tool."""
    if os.geteuid() != 0:
        not_here(f"{what} needs root (CI runs as root; run `sudo make test` to include it)")


def not_here(message: str) -> None:
    """Skip with `message` named in the summary, or fail where CI requires the real thing."""
    if os.environ.get(REQUIRE_SYSTEM_TOOLS):
        pytest.fail(f"{message}; {REQUIRE_SYSTEM_TOOLS} is set, so this is a failure, not a skip")
    pytest.skip(f"SKIPPED, NOT RUN: {message}")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("memlaw-cache")
    old = os.environ.get("MEMLAW_CACHE")
    os.environ["MEMLAW_CACHE"] = str(cache)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield cache
    if old is None:
        os.environ.pop("MEMLAW_CACHE", None)
    else:
        os.environ["MEMLAW_CACHE"] = old


def memlaw_cmd(*args: str) -> list[str]:
    """The installed CLI, run as a module so tests need nothing on PATH."""
    return [sys.executable, "-m", "orchestrator.cli.main", *args]


def print_figure(request, line: str) -> None:
    """Write a test's figure past pytest's output capture, so it shows in a passing run too."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)
