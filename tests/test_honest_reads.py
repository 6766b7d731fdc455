"""Experiments that never lie (issue 14), through the real command line:

- a damaged file in an experiment's record log (a truncated entry, an unknown status, a torn
  snapshot, a stray `.DS_Store`) is reported by `memlaw law --experiment`, `export` and `plot`: one
  warning line with the count, then one line per file with its reason, exit 0; `--strict` exits 2
  and writes nothing; `law --json` stays valid JSON and lists the damage;
- the read-only commands (law, plot, export, the reading half of resume) create nothing at a
  mistyped path, and export's input errors are one line, exit 2;
- `memlaw trial --out DIR` never overwrites an existing trial without `--resume` or `--force`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, memlaw_cmd, memlaw_in_process, print_figure
from orchestrator.records.journal import JOURNAL, LAW_FOLDER, SNAPSHOT, RecordLog
from test_records import law_records
from test_structure import finished_experiment

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def memlaw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in this process (the read commands' behaviour is the point, not a subprocess)."""
    return memlaw_in_process(*args, cwd=REPO, env={"HF_HUB_OFFLINE": "1"})


def damage(uri: str) -> list[str]:
    """A truncated entry, an unknown status, and a stray file, as a foreign hand leaves them."""
    journal = Path(uri) / LAW_FOLDER / JOURNAL
    entries = sorted(journal.iterdir())
    truncated, unknown = entries[-1], entries[-2]
    truncated.write_bytes(truncated.read_bytes()[:100])
    unknown.write_text(unknown.read_text().replace('"status":"ok"', '"status":"okay"'))
    (journal / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return [f"{JOURNAL}/{truncated.name}", f"{JOURNAL}/{unknown.name}", f"{JOURNAL}/.DS_Store"]


def warning_block(stderr: str, head: str = "warning") -> list[str]:
    """The damage report: its first line, then the indented per-file lines."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"{head}: ") and LAW_FOLDER in line]
    assert len(starts) == 1, stderr
    block = [lines[starts[0]]]
    for line in lines[starts[0] + 1:]:
        if not line.startswith("  "):
            break
        block.append(line)
    return block


def test_damaged_and_stray_files_are_reported_by_law_export_and_plot(tmp_path, request):
    uri = finished_experiment(tmp_path)
    names = damage(uri)
    total = len(law_records())
    law = memlaw("law", "--experiment", uri, "--json")
    assert law.returncode == 0 and "Traceback" not in law.stderr, law.stderr[-2000:]
    report = json.loads(law.stdout)  # warnings went to stderr: stdout is JSON
    assert report["trials_accepted"] == total - 2
    assert sorted(d["name"] for d in report["damaged"]) == sorted(names)
    assert {d["name"]: d["kind"] for d in report["damaged"]}[f"{JOURNAL}/.DS_Store"] == "stray"
    csv, png = tmp_path / "rows.csv", tmp_path / "law.png"
    runs = {"law": memlaw("law", "--experiment", uri), "export": memlaw("export", uri, "--out", str(csv)),
            "plot": memlaw("plot", uri, "--out", str(png)), "law --json": law}
    for command, run in runs.items():
        assert run.returncode == 0 and "Traceback" not in run.stderr, (command, run.stderr[-2000:])
        block = warning_block(run.stderr)
        assert "2 damaged files left out" in block[0] and "1 stray file ignored" in block[0], (command, block)
        assert len(block) == 4 and sorted(line.split(": ", 1)[0].strip() for line in block[1:]) == sorted(names)
        assert any("truncated or not JSON" in line for line in block)
        assert any("unknown status 'okay'" in line for line in block)
    assert len(csv.read_text().splitlines()) == 1 + total - 2 and png.is_file()
    print_figure(request, f"damage: {len(names)} files ({', '.join(names)}) reported by law, law --json, export, "
                          f"plot, each exit 0 with {total - 2} of {total} records")

    csv.unlink(), png.unlink()
    strict = {"law": memlaw("law", "--experiment", uri, "--strict", "--json"),
              "export": memlaw("export", uri, "--out", str(csv), "--strict"),
              "plot": memlaw("plot", uri, "--out", str(png), "--strict")}
    for command, run in strict.items():
        assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr, (command, run.stderr)
        assert "(--strict)" in warning_block(run.stderr, "error")[0]
    assert not csv.exists() and not png.exists()


def test_a_torn_snapshot_is_reported_and_the_journal_entries_are_used(tmp_path):
    uri = finished_experiment(tmp_path)
    log = RecordLog.for_experiment(uri)
    log.snapshot()  # all 35 records folded in
    extra = law_records(seed=1)[:2]
    for i, record in enumerate(extra):
        assert log.add(type(record)(**{**record.to_dict(), "trial_id": f"late{i}"}))
    snap = Path(uri) / LAW_FOLDER / SNAPSHOT
    snap.write_bytes(snap.read_bytes()[:200])
    for args in (("law", "--experiment", uri, "--json"), ("export", uri, "--out", str(tmp_path / "r.csv"))):
        run = memlaw(*args)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
        block = warning_block(run.stderr)
        assert "1 damaged file left out" in block[0] and block[1].startswith(f"  {SNAPSHOT}: torn or unreadable")
        assert "fell back to the journal entries" in block[1]
    assert json.loads(memlaw("law", "--experiment", uri, "--json").stdout)["trials_accepted"] == 2


# -- read-only commands create nothing; input errors are one line ------------------------------------
def one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr and run.stdout == "", run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    return run.stderr


def test_read_only_commands_create_nothing_at_a_mistyped_path(tmp_path):
    typo = tmp_path / "memlaw-runz" / "law-grid"
    for args in (("law", "--experiment", str(typo)), ("law", "--experiment", str(typo), "--json"),
                 ("plot", str(typo), "--out", str(tmp_path / "law.png")),
                 ("export", str(typo), "--out", str(tmp_path / "rows.csv")), ("resume", str(typo))):
        stderr = one_error_line(memlaw(*args))
        assert str(typo) in stderr
        assert sorted(os.listdir(tmp_path)) == [], (args, os.listdir(tmp_path))


@pytest.mark.parametrize("case", ["missing", "extension", "out-under-a-file", "out-is-a-folder", "scheme"])
def test_export_input_errors_are_one_line_exit_2(tmp_path, case):
    uri = finished_experiment(tmp_path / "runs")
    (tmp_path / "a-file").write_text("not a folder")
    path, out, says = {
        "missing": (str(tmp_path / "nowhere"), str(tmp_path / "r.csv"), "no experiment folder at"),
        "extension": (uri, str(tmp_path / "r.json"), "must end in one of .parquet, .csv"),
        "out-under-a-file": (uri, str(tmp_path / "a-file" / "r.csv"), "is a file, not a folder"),
        "out-is-a-folder": (uri, str(tmp_path / "runs.csv"), "it is a folder"),
        "scheme": ("nosuch://bucket/exp", str(tmp_path / "r.csv"), "unknown storage scheme 'nosuch'"),
    }[case]
    if case == "out-is-a-folder":
        (tmp_path / "runs.csv").mkdir()
    before = sorted(os.listdir(tmp_path))
    stderr = one_error_line(memlaw("export", path, "--out", out))
    assert says in stderr
    assert sorted(os.listdir(tmp_path)) == before


# -- an existing trial folder ------------------------------------------------------------------------
QUICK_TRIAL = {"model": {"name": "tiny-xs"}, "adapter": {"rank": 1}, "data": {"target_tokens": 8},
               "budget": {"preset": "cpu", "steps": 2}, "eval": {"every": 1, "checkpoint_every": 1},
               "device": "cpu"}


def test_trial_refuses_an_existing_trial_folder_unless_resume_or_force(tmp_path):
    trial = tmp_path / "trial.yaml"
    trial.write_text(yaml.safe_dump(QUICK_TRIAL))
    out = tmp_path / "out"
    (out / "checkpoints" / "step-00000099").mkdir(parents=True)
    (out / "config.yaml").write_text("an earlier trial\n")
    (out / "result.json").write_text('{"earlier": true}')
    (out / "mine.txt").write_text("not memlaw's")
    stderr = one_error_line(memlaw("trial", str(trial), "--out", str(out)))
    assert f"{out} already holds a trial" in stderr and "--resume" in stderr and "--force" in stderr
    assert (out / "result.json").read_text() == '{"earlier": true}' and (out / "checkpoints" / "step-00000099").is_dir()
    run = memlaw("trial", str(trial), "--out", str(out), "--force", "--json", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((out / "result.json").read_text())["steps"] == 2
    assert not (out / "checkpoints" / "step-00000099").exists()  # nothing of the old trial outlives it
    assert (out / "mine.txt").read_text() == "not memlaw's"  # and nothing memlaw did not write is touched
    assert one_error_line(memlaw("trial", str(trial), "--out", str(out)))  # now it holds a trial again
    # issue 24 item 7: --resume with another config is refused before anything in the folder changes
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    stderr = one_error_line(memlaw("trial", str(trial), "--out", str(out), "--resume", "--set", "budget.steps=60"))
    assert f"--resume: the checkpoint in {out} was trained with another config (budget.steps 2 -> 60)" in stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_nothing_to_resume_only_when_every_trial_of_tunes_state_terminated(tmp_path):
    """issue 25 item 2: `memlaw resume` on a finished experiment says so before Ray starts; a state with a
    trial not TERMINATED, or fewer trials than the sweep has, still resumes."""
    from orchestrator.cli.sweep_commands import nothing_to_resume
    from orchestrator.experiment.folder import open_experiment

    uri = finished_experiment(tmp_path)
    experiment = open_experiment(uri)
    n = experiment.sweep.trial_count()

    def state(statuses: list[str]) -> None:
        trials = [[json.dumps({"trial_id": f"t{i}", "status": s}), "{}"] for i, s in enumerate(statuses)]
        (Path(uri) / "experiment_state-2026-01-01_00-00-00.json").write_text(
            json.dumps({"trial_data": trials, "runner_data": {}}))

    assert nothing_to_resume(experiment) is None  # no Tune state at all: resume_problem's case
    state(["TERMINATED"] * n)
    said = nothing_to_resume(experiment)
    assert said.startswith(f"memlaw resume: nothing to resume: all {n} trials of law finished")
    assert f"memlaw law --experiment {uri}" in said
    state(["TERMINATED"] * (n - 1) + ["ERROR"])
    assert nothing_to_resume(experiment) is None
    state(["TERMINATED"] * (n - 1))
    assert nothing_to_resume(experiment) is None


def test_an_experiment_saved_under_an_older_default_still_opens(tmp_path):
    """memlaw_sweep.json holds every search knob with the default of the memlaw that wrote it. When
    validate_seeds' default moved from 5 to 7, every grid experiment saved before was refused as 'only
    for search.kind optuna' by law, export, plot and resume. A saved sweep drops the knobs its kind does
    not read; a sweep file a person writes is still refused for them."""
    from orchestrator.config.sweep import SweepConfig
    from orchestrator.experiment.folder import SWEEP_FILE, open_experiment
    from trainables.schema import ConfigError

    uri = finished_experiment(tmp_path)
    saved = json.loads((Path(uri) / SWEEP_FILE).read_text())
    saved["search"]["validate_seeds"] = 5
    (Path(uri) / SWEEP_FILE).write_text(json.dumps(saved))
    assert open_experiment(uri).sweep.search.kind == "grid"
    with pytest.raises(ConfigError, match="validate_seeds: only for search.kind optuna"):
        SweepConfig.from_dict(saved)
    saved["search"]["no_such_knob"] = 1
    (Path(uri) / SWEEP_FILE).write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="no_such_knob"):
        open_experiment(uri)
