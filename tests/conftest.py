"""Shared fixtures: every test run gets its own model cache, so tiny presets are really built,
saved and re-loaded through `from_pretrained`, and nothing leaks into the user's ~/.cache; and its
own Ray token, auth mode and Ray temp folder (isolate_ray, below), set when this file is imported,
which pytest does before it imports any test module, so before anything imports Ray."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]  # tests/test_structure.py runs the slow-marker hook in a pytest of its own
EXAMPLES = REPO / "examples"
#: Set by .ci/run, which installs the system tools: a missing one then fails its tests instead of
#: skipping them, so CI always runs them.
REQUIRE_SYSTEM_TOOLS = "MEMLAW_REQUIRE_SYSTEM_TOOLS"


def isolate_ray() -> Path:
    """Every Ray this test run starts (in-process, CLI subprocesses, `ray start` heads) uses a token
    of its own and keeps its sessions in a folder of its own, removed at exit (issue 28 item 5).

    Before, tests used and chmodded the user's ~/.ray/auth_token and two modules set RAY_AUTH_MODE
    at import, so the mode depended on which files were collected, and Ray's sessions went to the
    machine's shared /tmp/ray. The token is a file (RAY_AUTH_TOKEN_PATH, 0600) rather than
    RAY_AUTH_TOKEN, so tests that hand a process a token of their own through RAY_AUTH_TOKEN still
    override it, as Ray's precedence says. The folder is short (Ray's socket paths must stay under
    108 bytes) and directly under the system temp dir."""
    root = Path(tempfile.mkdtemp(prefix="mlt-"))
    token = root / "auth_token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, secrets.token_hex(32).encode())
    os.close(fd)
    os.environ["RAY_AUTH_MODE"] = "token"  # memlaw's own default (ray_session.default_token_auth)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ["RAY_TMPDIR"] = str(root / "ray")
    atexit.register(shutil.rmtree, root, True)
    return root


assert "ray" not in sys.modules, "conftest must run before anything imports Ray"
RAY_ISOLATION = isolate_ray()


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


def memlaw_in_process(*args: str, cwd: Path | None = None, env: dict | None = None):
    """`memlaw ARGS` through cli.main in this process, as a CompletedProcess (returncode, stdout,
    stderr): the CLI without a subprocess wherever a subprocess is not the point of the test (a
    memlaw subprocess costs seconds of imports; issue 28 item 3). `env`: variables set for the call."""
    import contextlib
    import io
    import subprocess

    from orchestrator.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, saved = os.getcwd(), {k: os.environ.get(k) for k in (env or {})}
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as stop:  # argparse: --help (0) and usage errors (2)
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    finally:
        os.chdir(old_cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["memlaw", *args], code, out.getvalue(), err.getvalue())


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


# -- the slow marker, enforced (issue 28 item 3) ---------------------------------------------------
#: What makes a test slow, by definition: `make quick` (-m "not slow") must not start any of these.
SLOW_BY_DEFINITION = "starts Ray, runs a sweep, spawns the memlaw CLI or loads a real pretrained model"


class SlowWatch:
    """Watches one unmarked test for what only slow tests may do: a new Ray session under this run's
    RAY_TMPDIR (in-process or in any subprocess: a sweep starts one too), a memlaw CLI subprocess,
    or a real pretrained model (weights from a package: SmolLM2) resolved by trainables.model."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _sessions(self) -> set[str]:
        folder = Path(os.environ.get("RAY_TMPDIR", RAY_ISOLATION / "ray")) / "ray"  # Ray adds its own "ray"
        return {p.name for p in folder.glob("session_2*")} if folder.is_dir() else set()

    def __enter__(self) -> SlowWatch:
        import subprocess

        self._before = self._sessions()
        self._popen_init = subprocess.Popen.__init__
        watch = self

        def popen_init(popen, args, *a, **kw):
            text = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
            if "orchestrator.cli.main" in text or Path(text.split(" ")[0]).name == "memlaw":
                watch.seen.append(f"spawned the CLI ({text[:80]})")
            return watch._popen_init(popen, args, *a, **kw)

        subprocess.Popen.__init__ = popen_init
        self._model = sys.modules.get("trainables.model")
        if self._model is not None:
            self._resolve = self._model.resolve_source

            def resolve_source(cfg):  # the real pretrained model: a package's weights (SmolLM2) found
                source = self._resolve(cfg)  # a package that does not exist raises here: refused, not loaded
                if cfg.name.startswith(self._model.PACKAGE_PREFIX):
                    watch.seen.append(f"loaded a real model ({cfg.name})")
                return source

            self._model.resolve_source = resolve_source
        return self

    def __exit__(self, *exc) -> None:
        import subprocess

        subprocess.Popen.__init__ = self._popen_init
        if self._model is not None:
            self._model.resolve_source = self._resolve
        if self._sessions() - self._before:
            self.seen.append("started Ray")


def _watched(item):
    """Run one phase of an unmarked test under a SlowWatch; fail it if it did what only slow tests may."""
    if item.get_closest_marker("slow") is not None:
        return (yield)
    with SlowWatch() as watch:
        result = yield
    if watch.seen:
        pytest.fail(f"{item.nodeid} is not marked slow but {'; '.join(dict.fromkeys(watch.seen))}: mark it "
                    f"@pytest.mark.slow (slow = {SLOW_BY_DEFINITION}), or run the CLI in-process (cli.main)")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """Its fixtures too (a module's Ray head starts in the setup of its first test)."""
    return (yield from _watched(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _watched(item))
