"""memlaw's shape, checked: reading an experiment needs no Ray, one dispatch on the search kind, the
import contracts (and that they can fail), no import cycle, no module over 500 lines, no environment
changed at import, field docs in --help."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, memlaw_cmd, memlaw_in_process
from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.folder import SWEEP_FILE, Experiment, open_experiment
from orchestrator.records.journal import RecordLog
from test_records import law_records
from trainables.schema import ConfigError

#: Run the CLI with Ray (and DeepSpeed) unimportable: any import of them fails at once.
NO_RAY = ("import sys\n"
          "for name in ('ray', 'deepspeed'): sys.modules[name] = None\n"
          "from orchestrator.cli.main import main\n"
          "sys.exit(main(sys.argv[1:]))\n")


def finished_experiment(tmp_path: Path) -> str:
    """A real experiment folder: the saved sweep and a journal of 35 records (32 ok, 3 failed)."""
    sweep = SweepConfig.from_dict({"name": "law", "trial": {"model": {"name": "tiny-xs"}},
                                   "space": "law_grid_smoke", "storage_path": str(tmp_path)})
    experiment = Experiment.of(sweep)
    experiment.save_sweep()
    log = RecordLog.for_experiment(experiment.uri)
    for record in law_records():
        assert log.add(record)
    return experiment.uri


def run_without_ray(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_RAY, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow  # spawns the CLI: a process where Ray cannot be imported
def test_law_export_and_plot_of_an_experiment_need_no_ray(tmp_path):
    uri = finished_experiment(tmp_path)
    law = run_without_ray("law", "--experiment", uri, "--json")
    assert law.returncode == 0, law.stderr
    report = json.loads(law.stdout)
    assert report["trials_accepted"] == len(law_records()) and {f["group"] for f in report["fits"]} == {
        "tiny-s|random|0|paper|sft", "tiny-s|random|0|paper|memft"}
    out = tmp_path / "rows.csv"
    export = run_without_ray("export", uri, "--out", str(out))
    assert export.returncode == 0, export.stderr
    assert len(out.read_text().splitlines()) == 1 + len(law_records())
    png = tmp_path / "law.png"
    plot = run_without_ray("plot", uri, "--out", str(png))
    assert plot.returncode == 0, plot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_reads_its_experiment_without_ray(tmp_path):
    """What `memlaw resume` reads before it starts Ray: the saved sweep, fully validated."""
    uri = finished_experiment(tmp_path)
    code = ("import sys\nsys.modules['ray'] = None\n"
            "from orchestrator.config.preflight import model_problems\n"
            "from orchestrator.experiment.folder import open_experiment\n"
            f"e = open_experiment({uri!r})\n"
            "assert model_problems(e.sweep) == [] and e.sweep.trial_count() == 6\n"
            "print(e.uri)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == uri


def test_a_saved_sweep_is_validated_like_a_sweep_file(tmp_path):
    uri = finished_experiment(tmp_path)
    saved = json.loads((Path(uri) / SWEEP_FILE).read_text())
    (Path(uri) / SWEEP_FILE).write_text(json.dumps({**saved, "space_overrides": {"adapter.rank": [0]}}))
    with pytest.raises(ConfigError) as err:
        open_experiment(uri)
    assert [p.field for p in err.value.problems] == [f"{SWEEP_FILE}: space_overrides.adapter.rank"]
    assert err.value.problems[0].message == "must be in [1, 65536], got 0"


def test_a_sweep_saved_before_fit_existed_still_opens(tmp_path):
    uri = finished_experiment(tmp_path)
    saved = json.loads((Path(uri) / SWEEP_FILE).read_text())
    old = {k: v for k, v in saved.items() if k != "fit"} | {"capacity_variable": "trainable_params"}
    (Path(uri) / SWEEP_FILE).write_text(json.dumps(old))
    assert open_experiment(uri).sweep.fit.capacity_variable == "trainable_params"


PACKAGES = ("orchestrator", "trainables", "search_spaces")
MAX_MODULE_LINES = 500


def _python_files(*folders: str) -> list[Path]:
    """Every module under the folders, subpackages included."""
    return [p for folder in folders for p in sorted((REPO / folder).rglob("*.py"))]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_only_the_search_registries_dispatch_on_the_search_kind():
    """A new search kind is one class in search/kinds.py and its row in tune/searchers.py: no other
    module compares `search.kind` with a name."""
    registries = {REPO / "orchestrator" / "search" / "kinds.py", REPO / "orchestrator" / "tune" / "searchers.py"}
    offenders = []
    for path in _python_files(*PACKAGES, "bench"):
        if path in registries:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and "search.kind" in ast.unparse(node.left):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions; not those for type checkers only."""
    names = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_import_cycle_between_modules():
    """Every import (top level or inside a function) between memlaw's modules, as a graph: no cycle.
    (The import-linter contracts check cycles between sibling packages; this checks modules.)"""
    modules = {_module_name(p): p for p in _python_files(*PACKAGES) if p.name != "__init__.py"}
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, f"import cycle: {' -> '.join([*path, m, n])}"
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_no_module_over_the_size_limit():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in _python_files(*PACKAGES, "bench")}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_package_says_what_lives_there():
    """Each package's __init__.py has a docstring (what lives there, what it may import), and sets
    nothing up: importing a package never imports its modules."""
    for init in _python_files(*PACKAGES):
        if init.name != "__init__.py" or init.parent.name == "search_spaces":
            continue
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init.relative_to(REPO)} has no docstring"
        assert all(isinstance(n, ast.Expr) for n in tree.body), f"{init.relative_to(REPO)} runs code at import"


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts (pyproject.toml) on the tree at `root`, in a fresh process."""
    script = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(script), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, env=env)


def test_import_contracts_hold():
    done = _lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("orchestrator/law/fit.py", "from orchestrator.report import findings", "layered"),
    ("orchestrator/report/plot.py", "import ray", "below the Ray glue"),
    ("orchestrator/cli/main.py", "import ray", "only by the Ray glue"),
    ("orchestrator/search/best_trials.py", "import torch", "never imports torch"),
    ("trainables/data.py", "import orchestrator.records.storage", "never import orchestrator"),
    ("orchestrator/tune/callbacks.py", "from orchestrator.tune import tuner", "no import circle"),
])
def test_a_broken_arrow_fails_the_contracts(tmp_path, module, line, contract):
    """The contracts can fail: a copy of the tree with one wrong import, lazy (inside a function) as
    a lazy import still counts, breaks exactly the contract named."""
    for folder in PACKAGES:
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n\ndef _wrong_arrow():\n    {line}  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    broken = [ln for ln in done.stdout.splitlines() if ln.endswith("BROKEN") or "BROKEN (" in ln]
    assert any(contract in ln for ln in broken) or contract in done.stdout.split("Broken contracts")[-1], done.stdout


def test_importing_orchestrator_changes_no_environment():
    code = ("import os, json\nbefore = dict(os.environ)\n"
            "import orchestrator, orchestrator.config.sweep, orchestrator.search.kinds, orchestrator.experiment.folder, "
            "orchestrator.report.law_report, orchestrator.tune.ray_session\n"
            "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_field_docs_reach_help():
    from trainables.config import TrialConfig

    trial, sweep = memlaw_in_process("trial", "--help"), memlaw_in_process("sweep", "--help")
    assert trial.returncode == 0 and sweep.returncode == 0
    for name, doc, _ in TrialConfig.field_docs():
        line = next(line for line in trial.stdout.splitlines() if line.split()[:1] == [name])
        assert doc[:40] in line
    for name, doc, _ in SweepConfig.field_docs():
        assert any(line.split()[:1] == [name] and doc[:40] in line for line in sweep.stdout.splitlines()), name


def test_the_test_run_has_its_own_ray_token_and_temp_folder():
    """issue 28 item 5: conftest gives the run its own token file and Ray temp folder before Ray is
    imported; a Ray started here writes its session there and never reads ~/.ray/auth_token."""
    import stat

    from conftest import RAY_ISOLATION

    token = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    assert token.parent == RAY_ISOLATION and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text()) == 64 and os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_TMPDIR"] == str(RAY_ISOLATION / "ray") and "RAY_AUTH_TOKEN" not in os.environ
    from orchestrator.tune.ray_session import token_file

    assert token_file() == str(token)  # memlaw's own reading of the token follows the path too


def test_an_unmarked_test_that_spawns_the_cli_fails_and_a_slow_one_passes(pytester):
    """issue 28 item 3: conftest's SlowWatch fails a test not marked slow that does what only slow
    tests may (here: spawn the memlaw CLI); the same test marked slow passes. Run in a pytest of its own."""
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    spawn = ("import subprocess, sys\n"
             "def _cli():\n"
             "    subprocess.run([sys.executable, '-m', 'orchestrator.cli.main', '--help'], capture_output=True,"
             " check=True)\n")
    pytester.makepyfile(test_spawns=spawn + "def test_unmarked():\n    _cli()\n\n"
                        "import pytest\n@pytest.mark.slow\ndef test_marked():\n    _cli()\n\n"
                        "def test_quiet():\n    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_unmarked is not marked slow but spawned the CLI*"])
