"""The orchestrator's shape, checked: reading an experiment needs no Ray, one dispatch on the search
kind, no import cycle, no environment changed at import, field docs in --help."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, memlaw_cmd
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


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO / folder).glob("*.py"))]


def test_only_searches_dispatches_on_the_search_kind():
    """A new search kind is one file: no other module compares `search.kind` with a name."""
    offenders = []
    for path in _python_files("orchestrator", "trainables", "search_spaces", "bench"):
        if path.name == "searches.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and "search.kind" in ast.unparse(node.left):
                offenders.append(f"{path.name}:{node.lineno}")
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


def test_orchestrator_has_no_import_cycle():
    """Every import (top level or inside a function) between orchestrator's modules, as a graph."""
    modules = {f"orchestrator.{p.stem}": p for p in _python_files("orchestrator") if p.stem != "__init__"}
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

    trial = subprocess.run(memlaw_cmd("trial", "--help"), cwd=REPO, capture_output=True, text=True, timeout=60)
    sweep = subprocess.run(memlaw_cmd("sweep", "--help"), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert trial.returncode == 0 and sweep.returncode == 0
    for name, doc, _ in TrialConfig.field_docs():
        line = next(line for line in trial.stdout.splitlines() if line.split()[:1] == [name])
        assert doc[:40] in line
    for name, doc, _ in SweepConfig.field_docs():
        assert any(line.split()[:1] == [name] and doc[:40] in line for line in sweep.stdout.splitlines()), name
