"""A search never trains a knob set twice (issue 25 item 4): orchestrator/tune/optuna_study.py answers
a repeated suggestion from the earlier trial and asks the sampler again. Driven here without Ray
running: the searcher's suggest / on_trial_complete, as Tune calls them, on a real Optuna study."""

from __future__ import annotations

import optuna
from ray.tune.search import Searcher

from orchestrator.tune.optuna_study import ANSWERED_FROM, TUNE_TRIAL_ID, TaggedOptunaSearch, knob_key
from search_spaces.memft import MEMFT_KNOBS, OptunaSpace, Param, define_by_run

TWO_POINTS = OptunaSpace(params=(Param("method.name", "categorical", choices=("sft", "memft_sw")),))


def _searcher(space: OptunaSpace, metric="m", mode="max") -> TaggedOptunaSearch:
    return TaggedOptunaSearch(space=define_by_run(space), metric=metric, mode=mode,
                              sampler=optuna.samplers.TPESampler(seed=0))


def _value(params: dict) -> float:
    """A made-up objective that depends only on the knobs (a deterministic trial)."""
    return len(knob_key(params)) / 100.0


def test_no_knob_set_is_trained_twice_and_repeats_are_told_the_earlier_outcome():
    searcher = _searcher(MEMFT_KNOBS)
    trained = []
    for i in range(30):
        params = searcher.suggest(f"t{i}")
        assert params not in (None, Searcher.FINISHED)
        trained.append(knob_key(params))
        searcher.on_trial_complete(f"t{i}", {"m": _value(params)})
    assert len(set(trained)) == len(trained) == 30, "a knob set was trained twice"
    study = searcher._ot_study
    repeats = [t for t in study.trials if ANSWERED_FROM in t.user_attrs]
    assert repeats, "SFT has no knobs: the sampler must have drawn it more than once in 30 asks"
    by_tune_id = {t.user_attrs[TUNE_TRIAL_ID]: t for t in study.trials if TUNE_TRIAL_ID in t.user_attrs}
    for r in repeats:
        first = by_tune_id[r.user_attrs[ANSWERED_FROM]]
        assert r.params == first.params and r.values == first.values
        assert r.state == optuna.trial.TrialState.COMPLETE
    assert len(by_tune_id) == 30 and len(study.trials) == 30 + len(repeats)


def test_a_repeat_of_a_running_trial_waits_for_its_outcome_and_an_exhausted_space_ends_the_search():
    searcher = _searcher(TWO_POINTS)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert {first["method.name"], second["method.name"]} == {"sft", "memft_sw"}
    assert searcher.suggest("c") == Searcher.FINISHED  # only two knob sets exist
    waiting = [t for t in searcher._ot_study.trials if ANSWERED_FROM in t.user_attrs]
    assert waiting and all(t.state == optuna.trial.TrialState.RUNNING for t in waiting)
    searcher.on_trial_complete("a", {"m": 0.25})
    searcher.on_trial_complete("b", None, error=True)
    for t in searcher._ot_study.trials:
        if ANSWERED_FROM in t.user_attrs:  # every repeat is told its trial's outcome once that trial ends
            expected = ((optuna.trial.TrialState.COMPLETE, [0.25]) if t.user_attrs[ANSWERED_FROM] == "a"
                        else (optuna.trial.TrialState.FAIL, None))
            assert (t.state, t.values) == expected, (t.user_attrs[ANSWERED_FROM], t.state, t.values)


def test_repeats_survive_the_searchers_save_and_restore(tmp_path):
    """Tune saves the searcher with the experiment: a resumed search still knows what it trained."""
    searcher = _searcher(TWO_POINTS)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"m": 0.5})
    searcher.save(str(tmp_path / "searcher.pkl"))
    back = _searcher(TWO_POINTS)
    back.restore(str(tmp_path / "searcher.pkl"))
    params = back.suggest("b")
    assert params not in (None, Searcher.FINISHED)
    assert params["method.name"] != searcher._ot_trials["a"].params["method.name"]  # not the one trained
    assert len(back._knob_sets) == 2 and back.suggest("c") == Searcher.FINISHED
