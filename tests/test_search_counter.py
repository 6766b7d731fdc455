"""orchestrator/tune/search_counter.py: a trial Tune counted but did not save before a driver kill
(the R3 drill's failure of 2026-12-06: counter 4, three trials saved, a ghost in the limiter) gives
its place back before Tuner.restore, so the resumed search still runs num_samples trials."""

from __future__ import annotations

import json

import ray.cloudpickle as cloudpickle

from orchestrator.tune.search_counter import reconcile_search_counter

STAMP = "2026-12-06_19-54-50"


def _snapshot(folder, saved: list[str], counter: int, live: set[str]) -> None:
    trial_data = [[json.dumps({"trial_id": t}), "{}"] for t in saved]
    (folder / f"experiment_state-{STAMP}.json").write_text(json.dumps({"trial_data": trial_data}))
    state = {"counter": counter, "total_samples": 6, "finished": False, "experiment": None,
             "name:ConcurrencyLimiter": {"live_trials": set(live), "num_unfinished_live_trials": len(live)}}
    with open(folder / f"search_gen_state-{STAMP}.json", "wb") as fh:
        cloudpickle.dump(state, fh)


def _state(folder) -> dict:
    with open(folder / f"search_gen_state-{STAMP}.json", "rb") as fh:
        return cloudpickle.load(fh)


def test_a_counted_but_unsaved_trial_gives_its_place_and_its_slot_back(tmp_path):
    _snapshot(tmp_path, ["a", "b", "c"], counter=4, live={"c", "ghost"})
    assert reconcile_search_counter(str(tmp_path)) == ["ghost"]
    state = _state(tmp_path)
    limiter = state["name:ConcurrencyLimiter"]
    assert state["counter"] == 3 and limiter["live_trials"] == {"c"} and limiter["num_unfinished_live_trials"] == 1
    assert reconcile_search_counter(str(tmp_path)) == []  # a second resume finds it consistent


def test_a_consistent_snapshot_is_left_byte_for_byte(tmp_path):
    _snapshot(tmp_path, ["a", "b", "c"], counter=3, live={"c"})
    before = (tmp_path / f"search_gen_state-{STAMP}.json").read_bytes()
    assert reconcile_search_counter(str(tmp_path)) == []
    assert (tmp_path / f"search_gen_state-{STAMP}.json").read_bytes() == before
    assert reconcile_search_counter(str(tmp_path / "missing")) == [] and reconcile_search_counter("s3://b/x") == []


def test_a_damaged_snapshot_is_left_for_tune_to_report(tmp_path):
    _snapshot(tmp_path, ["a", "b", "c"], counter=4, live={"c", "ghost"})
    (tmp_path / f"experiment_state-{STAMP}.json").write_text('{"trial_data": [["{\\"trial')  # torn write
    before = (tmp_path / f"search_gen_state-{STAMP}.json").read_bytes()
    assert reconcile_search_counter(str(tmp_path)) == []
    assert (tmp_path / f"search_gen_state-{STAMP}.json").read_bytes() == before
