"""The README's "Using it" block runs in order, as written, after `make demo` (issue 25 item 8).

Before, its second command line that trains (`memlaw sweep examples/law_grid_cpu.yaml`) was refused,
because the demo had already made memlaw-runs/law-grid-cpu. Here every line of the block is taken
from README.md and run in order through memlaw's CLI (in-process: cli.main, the same argv), in a
fresh folder holding a copy of examples/ whose trials are shrunk (tiny-xs, a few steps, 2-point
grids, no held-out validation) so the block takes a minute, not an hour. Two lines are not run,
each for a stated reason: the venv activation (the test runs inside it) and `memlaw reproduce`
(it reruns the paper's sweeps, minutes; tests/test_reproduction.py covers it on a real sweep).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import json

import pandas as pd
import pytest
import yaml

from conftest import REPO, print_figure
from orchestrator.records.journal import RecordLog
from trainables import metric_names as K

NOT_RUN = {".": "the venv activation: the test already runs inside it",
           "reproduce": "reruns the paper's sweeps (minutes); tests/test_reproduction.py runs it on a real sweep"}
SMALL_TRIAL = {"model": {"name": "tiny-xs"}, "budget": {"steps": 20}, "eval": {"every": 10}}


def readme_block() -> list[str]:
    """The command lines of the README's "Using it" block, comments and continuation lines dropped."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Using it\n.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [shlex.join(shlex.split(line, comments=True)) for line in block.splitlines()]
    return [line for line in lines if line]


def _shrink(path: Path) -> None:
    """The same file, a few seconds of work: tiny-xs, 20 steps, the first 2 values of each axis."""
    doc = yaml.safe_load(path.read_text())
    trial = doc.get("trial", doc)
    for section, values in SMALL_TRIAL.items():
        trial.setdefault(section, {}).update(values)
    if "space_overrides" in doc:
        doc["space_overrides"] = {k: v[:2] if k != "budget.steps" else [10, 20] for k, v in doc["space_overrides"].items()}
        doc["space_overrides"]["adapter.rank"] = [1, 2]
        doc["space_overrides"]["data.target_tokens"] = [16, 32]
    if doc.get("search", {}).get("kind") == "optuna":
        doc["num_samples"], doc["search"]["validate_top"] = 3, 0
        doc["search"].pop("validate_seeds", None)
    path.write_text(yaml.safe_dump(doc))


@pytest.mark.slow  # the block's sweeps start local Rays
@pytest.mark.timeout(900)
def test_the_readme_block_runs_in_order_after_make_demo(tmp_path, monkeypatch, capsys, request):
    from orchestrator.cli.main import main

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    for path in (tmp_path / "examples").glob("*.yaml"):
        if not path.name.startswith("paper_"):
            _shrink(path)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # make demo, on the shrunk grid; a second demo is a new experiment, never merged
        assert main(["demo", "--file", "examples/law_grid_cpu.yaml"]) == 0
    runs = tmp_path / "memlaw-runs"
    assert sorted(p.name for p in runs.iterdir()) == ["demo", "demo-2"]
    assert [len(RecordLog.for_experiment(str(runs / n)).all()) for n in ("demo", "demo-2")] == [8, 8]
    ran, skipped = 0, []
    for line in readme_block():
        argv = shlex.split(line)
        if argv[0] in NOT_RUN or argv[1] in NOT_RUN:
            skipped.append(line)
            continue
        assert argv[0] == "memlaw", line
        code = main(argv[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"{line}\n{out[-2000:]}\n{err[-2000:]}"
        if argv[1] == "validate":  # the demo made no law-grid-cpu: nothing to warn of
            assert "is a valid sweep" in out and "exists" not in out, out
        ran += 1
    assert {shlex.split(line)[1] if line.startswith("memlaw") else "." for line in skipped} == set(NOT_RUN)
    for name in ("law-grid-cpu", "law-grid-cpu-2", "memft-optuna-cpu", "convergence-tiny", "law-grid-converged"):
        assert (tmp_path / "memlaw-runs" / name / "memlaw_sweep.json").is_file(), name
    # the grid sweep end to end: every point once, the fit, the export and the figures
    records = RecordLog.for_experiment(str(runs / "law-grid-cpu")).all()
    assert len(records) == 8 and all(r.ok and r.metrics[K.STEP] == 20 and r.node_id for r in records)
    assert {(r.config["adapter"]["rank"], r.config["data"]["target_tokens"], r.config["seed"]) for r in records} == {
        (r, n, s) for r in (1, 2) for n in (16, 32) for s in (0, 1)}
    assert main(["law", "--experiment", str(runs / "law-grid-cpu"), "--json"]) == 0
    law = json.loads(capsys.readouterr().out)
    assert law["trials_accepted"] == 8 and law["fits"][0]["group"] == records[0].group and "alpha" in law["fits"][0]
    frame = pd.read_parquet(tmp_path / "results.parquet")
    assert sorted(frame["trial_id"]) == sorted(r.trial_id for r in records) and frame["trial_id"].is_unique
    assert (tmp_path / "law.png").read_bytes()[:8] == (tmp_path / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print_figure(request, f"README block: {ran} command lines run in order after the demo, exit 0 each; "
                          f"{len(skipped)} not run ({', '.join(sorted(NOT_RUN))})")


def test_validate_says_when_the_experiment_exists_and_what_sweep_then_needs(tmp_path, capsys):
    from orchestrator.cli.main import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "trial": {"model": {"name": "tiny-xs"}}, "space": "law_grid_smoke",
                                     "storage_path": str(tmp_path / "runs")}))
    assert main(["validate", str(sweep)]) == 0
    assert "exists" not in capsys.readouterr().out
    (tmp_path / "runs" / "s").mkdir(parents=True)
    (tmp_path / "runs" / "s" / "memlaw_sweep.json").write_text("{}")
    assert main(["validate", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert f"the experiment {tmp_path / 'runs' / 's'} exists" in out and "--resume" in out and "--new" in out
