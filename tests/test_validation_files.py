"""The validation's files are read with the same care as the journal (issue 24, item 4): a damaged
`validation/validation.json` is reported on stderr and left out (`--strict`: exit 2), never shown as
the validation nor a crash; a planned validation without a summary is "incomplete", with no verdict;
a torn `validation/plan.json` makes `memlaw resume` refuse before Ray starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main as cli
from orchestrator.cli.output import EXIT_BAD_INPUT
from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.folder import VALIDATION, VALIDATION_PLAN_FILE, VALIDATION_SUMMARY_FILE, Experiment


def optuna_experiment(tmp_path: Path) -> Path:
    sweep = SweepConfig.from_dict({"name": "opt", "trial": {"model": {"name": "tiny-xs"}}, "space": "memft_optuna",
                                   "search": {"kind": "optuna"}, "num_samples": 2, "storage_path": str(tmp_path)})
    experiment = Experiment.of(sweep)
    experiment.save_sweep()
    (Path(experiment.uri) / VALIDATION).mkdir()
    return Path(experiment.uri)


DAMAGE = {"truncated": b'{"seeds": [1, 2], "metr', "binary": b"\x00\xff\xfe\x01", "list": b"[]", "empty": b"{}",
          "arms-wrong": json.dumps({"seeds": [1], "metrics": ["m"], "primary": {}, "arms": [1], "verdict": {}}).encode(),
          "folder": None}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_summary_is_reported_and_left_out(tmp_path, capsys, damage):
    uri = optuna_experiment(tmp_path)
    path = uri / VALIDATION / VALIDATION_SUMMARY_FILE
    if DAMAGE[damage] is None:
        path.mkdir()
    else:
        path.write_bytes(DAMAGE[damage])
    assert cli.main(["best", str(uri), "--json"]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert shown["validation"] is None and shown["damaged"][0]["name"] == f"{VALIDATION}/{VALIDATION_SUMMARY_FILE}"
    assert err.startswith(f"warning: {uri}/validation: 1 damaged file left out") and "Traceback" not in err
    assert cli.main(["best", str(uri)]) == 0 and "verdict" not in capsys.readouterr().out
    assert cli.main(["best", str(uri), "--strict"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(f"error: {uri}/validation: 1 damaged file left out")


def test_a_planned_validation_without_a_summary_is_incomplete_with_no_verdict(tmp_path, capsys):
    uri = optuna_experiment(tmp_path)
    plan = {"arms": [{"label": "SFT", "knobs": {"method.name": "sft"}}], "seeds": [11, 12], "metrics": ["m"],
            "primary": {"metric": "m", "mode": "max"}}
    (uri / VALIDATION / VALIDATION_PLAN_FILE).write_text(json.dumps(plan))
    assert cli.main(["best", str(uri), "--json"]) == 0
    validation = json.loads(capsys.readouterr().out)["validation"]
    assert validation["incomplete"] and (validation["done"], validation["planned"]) == (0, 2)
    assert cli.main(["best", str(uri)]) == 0
    out = capsys.readouterr().out
    assert f"held-out validation incomplete: 0 of 2 arms x seeds done, no verdict yet; `memlaw resume {uri}`" in out
    assert "verdict:" not in out


def test_a_torn_plan_is_refused_by_resume_before_ray_starts(tmp_path, capsys):
    from orchestrator.cli.sweep_commands import resume_problem

    uri = optuna_experiment(tmp_path)
    (uri / VALIDATION / VALIDATION_PLAN_FILE).write_text('{"arms": [')
    problem = resume_problem(str(uri))
    assert problem.startswith(f"error: cannot resume {uri}: ")  # Tune's state is missing here, named first
    (uri / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [], "runner_data": {}}))
    problem = resume_problem(str(uri))
    assert f"the validation's plan {VALIDATION_PLAN_FILE} is torn or unreadable" in problem
    assert cli.main(["best", str(uri)]) == 0  # reading: the plan's damage is reported, not a crash
    assert "validation/plan.json: torn or unreadable" in capsys.readouterr().err


def test_stopped_validation_trials_are_not_done_and_not_failed():
    """A Ctrl-C leaves `stopped` records: the validation is incomplete (no verdict) and they are not failures."""
    from orchestrator.search.validation_plan import arm_of, progress, summarize_validation
    from test_records import record

    sweep = SweepConfig.from_dict({"name": "opt", "trial": {"model": {"name": "tiny-xs"}}, "space": "memft_optuna",
                                   "search": {"kind": "optuna", "metrics": ["greedy_exact_match"]}})
    plan = {"arms": [{"label": "SFT", "knobs": {"method.name": "sft"}, "search": None}], "seeds": [11, 12],
            "metrics": ["greedy_exact_match"], "primary": {"metric": "greedy_exact_match", "mode": "max"}}
    hashes = {seed: h for h, (_, seed) in arm_of(plan, sweep).items()}
    ok = record("a", seed=11)
    ok = type(ok)(**{**ok.to_dict(), "config_hash": hashes[11]})
    stopped = type(ok)(**{**ok.to_dict(), "trial_id": "b", "status": "stopped", "config_hash": hashes[12]})
    assert progress(plan, sweep, [ok, stopped]) == (1, 2)
    summary = summarize_validation(plan, sweep, [ok, stopped])
    assert summary["arms"][0]["failed"] == 0 and summary["arms"][0]["seeds_done"] == 1


@pytest.mark.parametrize("inside", ["validation", "memorize_00000_0/deeper"])
def test_a_sweep_cannot_take_a_folder_inside_another_experiment(tmp_path, capsys, inside):
    """Issue 24, item 8: a sweep named `validation` pointed at an Optuna experiment merged into its
    validation phase; any folder inside an experiment is refused, before Ray starts."""
    import yaml

    uri = optuna_experiment(tmp_path)
    storage = uri / inside
    sweep = tmp_path / "inner.yaml"
    name = storage.name
    sweep.write_text(yaml.safe_dump({"name": name, "trial": {"model": {"name": "tiny-xs"}}, "space": "law_grid_smoke",
                                     "storage_path": str(storage.parent)}))
    before = sorted(str(p) for p in uri.rglob("*"))
    assert cli.main(["sweep", str(sweep), "--verbose"]) == EXIT_BAD_INPUT  # --verbose: a Ray start would show
    err = capsys.readouterr().err
    assert f"{storage} lies inside the experiment {uri}" in err and "Started a local Ray" not in err
    assert sorted(str(p) for p in uri.rglob("*")) == before
