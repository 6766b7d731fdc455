"""Provenance (issue 25 item 5): each run records what it ran on, exports carry it, and a trial's
config.yaml holds the values it used. No Ray; the trial at the end trains tiny-xs for two steps."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, not_here
from orchestrator.experiment import export as ex
from orchestrator.experiment import provenance as pv
from test_export_plot import experiment, synthetic_records


def pyproject_dependencies() -> list[str]:
    """The names in pyproject.toml's [project] dependencies, read from the file itself."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        block = re.search(r"^dependencies = \[(.*?)^\]", (REPO / "pyproject.toml").read_text(), re.S | re.M)
        specs = re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)
    else:
        specs = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec).group(0) for spec in specs]


# -- the facts ---------------------------------------------------------------------------------------


def test_a_run_records_versions_machine_and_command_line():
    facts = pv.run_facts("start", gpus=["NVIDIA H100 80GB HBM3"], ray_cluster={"nodes": 1},
                         argv=["memlaw", "sweep", "my file.yaml"])
    assert facts["kind"] == "start" and facts["started_at"].endswith("+00:00")
    assert facts["memlaw_version"] == importlib.metadata.version("memlaw")
    assert facts["python"] == platform.python_version() and facts["platform"] == platform.platform()
    assert facts["cpu_count"] == os.cpu_count() and facts["cpu"] and facts["host"]
    assert (facts["gpus"], facts["gpu_count"], facts["ray_cluster"]) == (["NVIDIA H100 80GB HBM3"], 1, {"nodes": 1})
    assert facts["argv"] == ["memlaw", "sweep", "my file.yaml"]
    assert facts["command"] == "memlaw sweep 'my file.yaml'"  # the exact command, quoted to run again
    names = pyproject_dependencies()
    assert len(names) >= 10 and "torch" in names and "ray" in names and "deepspeed" in names
    for name in names:  # every dependency, with the version installed here
        assert facts["dependencies"][name] == importlib.metadata.version(name), name
    assert pv.run_facts("resume")["argv"] == sys.argv  # by default, this process's command line
    json.dumps(facts)  # it goes into JSON as it is


def test_the_cpu_model_is_read_in_one_place():
    from orchestrator.reproduction import machine

    assert machine.cpu_model is pv.cpu_model


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def test_the_commit_is_the_checkouts_head_and_dirty_when_modified():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        not_here("memlaw does not run from a git checkout here (an installed copy has no commit to record; "
                 "run the tests in a clone)")
    commit, dirty = pv.git_state()
    assert pv.CHECKOUT == REPO.resolve()
    assert commit == _git("rev-parse", "HEAD")
    assert dirty == bool(_git("status", "--porcelain"))


def test_a_commit_is_only_memlaws_own(tmp_path, monkeypatch):
    """An installed memlaw inside another project's repository has no commit; neither has a folder
    outside any repository; and no git at all is no commit, never an error."""
    assert pv.git_state(tmp_path) == (None, None)
    if shutil.which("git") is not None:
        _git("init", "-q", cwd=tmp_path)
        (tmp_path / "site-packages").mkdir()
        assert pv.git_state(tmp_path / "site-packages") == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert pv.git_state() == (None, None)


# -- the file ----------------------------------------------------------------------------------------


def test_each_run_appends_its_entry(tmp_path):
    uri = str(tmp_path / "exp")
    assert pv.read_runs(uri) == ([], f"{pv.NONE_RECORDED}: the experiment has no provenance.json "
                                     "(made before memlaw recorded what each run ran on)")
    pv.record_run(uri, pv.run_facts("start", argv=["memlaw", "sweep", "a.yaml"]))
    pv.record_run(uri, pv.run_facts("resume", argv=["memlaw", "resume", uri]))
    runs, note = pv.read_runs(uri)
    assert note is None and [(r["kind"], r["argv"][1]) for r in runs] == [("start", "sweep"), ("resume", "resume")]
    assert json.loads((tmp_path / "exp" / pv.PROVENANCE_FILE).read_text()) == runs
    assert [p.name for p in (tmp_path / "exp").iterdir()] == [pv.PROVENANCE_FILE]  # no temp file left


def test_an_unreadable_provenance_file_is_kept_aside_not_overwritten(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / pv.PROVENANCE_FILE).write_text('[{"kind": "start", "torn')
    runs, note = pv.read_runs(str(folder))
    assert runs == [] and note.startswith(f"{pv.NONE_RECORDED}: provenance.json is unreadable")
    (folder / pv.PROVENANCE_FILE).write_text('{"kind": "start"}')
    assert pv.read_runs(str(folder)) == ([], f"{pv.NONE_RECORDED}: provenance.json is not a list of runs")
    pv.record_run(str(folder), {"kind": "resume"})
    assert (folder / "provenance.json.unreadable").read_text() == '{"kind": "start"}'
    assert pv.read_runs(str(folder)) == ([{"kind": "resume"}], None)


# -- exports -----------------------------------------------------------------------------------------


@pytest.fixture
def recorded(tmp_path) -> tuple[str, list[dict]]:
    """A fabricated experiment whose two runs were recorded."""
    uri = experiment(tmp_path, synthetic_records())
    pv.record_run(uri, pv.run_facts("start", gpus=[], argv=["memlaw", "sweep", "law.yaml"]))
    pv.record_run(uri, pv.run_facts("resume", gpus=[], argv=["memlaw", "resume", uri]))
    return uri, pv.read_runs(uri)[0]


def test_parquet_metadata_carries_the_runs(tmp_path, recorded):
    import pyarrow.parquet as pq

    uri, runs = recorded
    out = tmp_path / "law.parquet"
    ex.export(uri, str(out))
    meta = json.loads(pq.read_schema(out).metadata[ex.METADATA_KEY])  # as any Parquet reader sees it
    assert meta["runs"] == runs and meta["runs_note"] is None and len(runs) == 2
    assert meta["runs"][0]["dependencies"]["torch"] == importlib.metadata.version("torch")
    assert meta["memlaw_version"] == importlib.metadata.version("memlaw") and meta["rows"] == 24
    assert ex.export_metadata(str(out)) == meta
    assert not (tmp_path / "law.parquet.provenance.json").exists()


def test_csv_gets_its_provenance_beside_it(tmp_path, recorded):
    uri, runs = recorded
    out = tmp_path / "law.csv"
    ex.export(uri, str(out))
    beside = json.loads((tmp_path / "law.csv.provenance.json").read_text())
    assert beside["runs"] == runs and beside["rows"] == 24 and beside["experiment"] == uri
    assert ex.export_metadata(str(out)) == beside
    assert len(ex.read_export(str(out))) == 24  # the CSV itself is unchanged: rows only


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_an_experiment_made_before_provenance_exports_and_says_none_recorded(tmp_path, suffix, capsys):
    from orchestrator.cli.read_commands import cmd_export

    uri = experiment(tmp_path, synthetic_records())  # no provenance.json
    out = str(tmp_path / f"law{suffix}")
    assert cmd_export(argparse.Namespace(path=uri, out=out, strict=False)) == 0
    meta = ex.export_metadata(out)
    assert meta["runs"] == [] and meta["runs_note"].startswith("none recorded: the experiment has no provenance.json")
    assert meta["rows"] == 24 and len(ex.read_export(out)) == 24
    said = capsys.readouterr()
    assert said.out.startswith(f"memlaw export: 24 trials -> {out}")
    assert "memlaw export: note: run provenance none recorded" in said.err


# -- the trial's config.yaml -------------------------------------------------------------------------


def test_the_resolved_config_fills_in_every_run_time_choice():
    import torch

    from trainables.config import TrialConfig
    from trainables.model import default_paper_layer
    from trainables.resolved import resolved_config

    paper = TrialConfig.from_dict({"adapter": {"rank": 4}, "data": {"num_sequences": 5}, "device": "auto"})
    used = resolved_config(paper, 6, torch.device("cpu"))
    assert (used.adapter.layer, used.adapter.dropout, used.adapter.alpha) == (default_paper_layer(6), 0.1, 4.0)
    assert (used.device, used.dtype, used.budget.batch_size) == ("cpu", "float32", 5)
    assert paper.adapter.layer is None and paper.device == "auto"  # the config as given is untouched
    assert TrialConfig.from_dict(used.to_dict()) == used  # a valid trial file, the same trial
    peft = TrialConfig.from_dict({"adapter": {"placement": "peft", "layers": [1], "alpha": 2.0},
                                  "data": {"num_sequences": 3}, "budget": {"batch_size": 8}})
    used = resolved_config(peft, 6, torch.device("cuda", 1))
    assert (used.adapter.layer, used.adapter.layers, used.adapter.dropout, used.adapter.alpha) == (None, (1,), 0.0, 2.0)
    assert (used.device, used.budget.batch_size) == ("cuda:1", 3)  # 8 of 3 sequences is all 3


def test_a_trial_writes_the_values_it_used_and_resume_names_only_real_changes(tmp_path):
    from dataclasses import replace

    from orchestrator.cli.trial_commands import _checkpoint_mismatch
    from trainables.config import TrialConfig
    from trainables.memorize import MemorizationTrial
    from trainables.model import paper_layer
    from trainables.resolved import resolved_here

    cfg = TrialConfig.from_dict({"model": {"name": "tiny-xs"}, "adapter": {"rank": 1}, "data": {"target_tokens": 4},
                                 "budget": {"preset": "cpu", "steps": 2}, "eval": {"every": 2}})
    trial = MemorizationTrial(cfg, tmp_path)
    trial.run()
    written = TrialConfig.from_yaml(str(tmp_path / "config.yaml"))
    assert written == resolved_here(cfg) and written.config_hash() != cfg.config_hash()
    assert written.adapter.layer == paper_layer(cfg.adapter, trial.n_layers) and cfg.adapter.layer is None
    assert (written.adapter.dropout, written.adapter.alpha, written.device) == (0.1, 1.0, "cpu")
    assert written.budget.batch_size == cfg.data.num_sequences and cfg.budget.batch_size is None
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text(json.dumps({"config_hash": cfg.config_hash()}))
    longer = replace(cfg, budget=replace(cfg.budget, steps=60))
    said = _checkpoint_mismatch(longer, tmp_path, checkpoint)
    assert "(budget.steps 2 -> 60)" in said  # not adapter.layer 1 -> None: that is the same trial
