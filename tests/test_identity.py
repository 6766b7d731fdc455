"""A record counts once per configuration (issue 24, item 1): a restarted experiment that trains
every grid point again under new trial ids must not double a single point of the law, and two
different results of one configuration are named, never averaged (orchestrator/records/identity.py)."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.cli import main as cli
from orchestrator.cli.output import EXIT_BAD_INPUT
from orchestrator.records.identity import distinct, identity
from orchestrator.records.journal import RecordLog, law_rows
from orchestrator.report import law_report
from test_records import law_records, record
from trainables import metric_names as K


def renamed(rec, trial_id: str, **metrics):
    """The same configuration under another trial id (what a restarted Tune run sends)."""
    return dataclasses.replace(rec, trial_id=trial_id, metrics={**rec.metrics, **metrics}, ended_at=2e9)


def test_a_restarted_grid_is_counted_once_and_its_intervals_do_not_narrow():
    once = law_records()
    twice = once + [renamed(r, f"{r.trial_id}-again") for r in once]
    single, doubled = law_report.build_report("law", once), law_report.build_report("law", twice)
    assert doubled["records"] == 70 and doubled["trials_accepted"] == single["trials_accepted"] == 35
    assert doubled["trials_ok"] == 32 and doubled["trials_failed"] == {"nan": 2, "oom": 1}
    for label, group in single["groups"].items():  # the duplicate check: repeats add no information
        assert doubled["groups"][label]["fit"] == group["fit"]
        assert doubled["groups"][label]["n_rows"] == group["n_rows"]
    assert len(doubled["repeated"]["duplicates"]) == 32 and len(doubled["repeated"]["superseded"]) == 3
    text = law_report.format_report(doubled)
    assert "32 records repeat a configuration already counted (same config and seed, same result)" in text
    assert len(law_rows(twice)) == len(law_rows(once)) == 32


def test_two_different_results_of_one_configuration_are_a_named_conflict():
    first = record("t-first", rank=4, ell=128)
    other = renamed(first, "t-other", **{K.DELTA_LOSS: first.metrics[K.DELTA_LOSS] + 0.5})
    seen = distinct([first, other])
    assert [r.trial_id for r in seen.records] == ["t-first"] and not seen.duplicates
    (conflict,) = seen.conflicts
    assert conflict.counted == "t-first" and conflict.other == "t-other" and set(conflict.differs) == {K.DELTA_LOSS}
    report = law_report.build_report("law", [first, other])
    assert report["trials_accepted"] == 1 and report["conflicts"][0]["other"] == "t-other"
    assert "conflict: trials t-first and t-other trained the same configuration" in law_report.format_report(report)


def test_memlaw_law_prints_a_conflict_and_strict_refuses_it(tmp_path, capsys):
    from test_structure import finished_experiment

    uri = finished_experiment(tmp_path)
    log = RecordLog.for_experiment(uri)
    counted = next(r for r in log.all() if r.ok)
    assert log.add(renamed(counted, "late", **{K.DELTA_LOSS: counted.metrics[K.DELTA_LOSS] * 2}))
    assert cli.main(["law", "--experiment", uri]) == 0
    out = capsys.readouterr().out
    assert f"conflict: trials {counted.trial_id} and late" in out and "35 trials accepted" in out
    assert cli.main(["law", "--experiment", uri, "--strict"]) == EXIT_BAD_INPUT
    assert "1 configurations have two different results (--strict)" in capsys.readouterr().err


def test_a_stopped_or_failed_record_gives_way_to_a_result_of_its_configuration():
    stopped = record("t-1", status="stopped")
    failed = renamed(record("t-2", status="error"), "t-2")
    ok = record("t-3")
    assert identity(stopped) == identity(failed) == identity(ok)
    seen = distinct([stopped, failed, ok])
    assert [r.trial_id for r in seen.records] == ["t-3"]
    assert sorted(seen.superseded) == [("t-3", "t-1"), ("t-3", "t-2")]
    report = law_report.build_report("law", [stopped, failed, ok])
    assert report["trials_failed"] == {} and report["trials_unfinished"] == {} and report["trials_ok"] == 1


def test_without_a_result_a_configuration_counts_once_as_its_latest_final_record():
    seen = distinct([record("a", status="nan"), record("b", status="oom"), record("c", status="stopped")])
    assert [r.trial_id for r in seen.records] == ["b"]
    assert law_report.build_report("law", [record("a", status="nan"), record("b", status="nan")])[
        "trials_failed"] == {"nan": 1}


@pytest.mark.parametrize("seed", [1, 2])
def test_replicates_with_their_own_seeds_are_distinct(seed):
    a, b = record("a", seed=seed), record("b", seed=seed + 10)
    assert identity(a) != identity(b) and len(distinct([a, b]).records) == 2


def test_a_record_without_a_stored_hash_is_identified_by_its_config():
    rec = record("a")
    bare = dataclasses.replace(rec, trial_id="b", config_hash="")
    assert identity(bare) == identity(rec) and distinct([rec, bare]).duplicates == [("a", "b")]
