"""Certification that lasts (trainables/certification.py), against hand-worked histories."""

from __future__ import annotations

import json

import pytest

from trainables import metric_names as K
from trainables.certification import CertificationTrack, track_of

STEPS = [10, 20, 30, 40, 50, 60]


@pytest.mark.parametrize("history, first_stable, losses", [
    ([0, 0, 1, 1, 1, 1], 30, 0),  # certified at 30 and kept
    ([0, 1, 0, 1, 0, 1], 60, 2),  # churn: certified at 20, lost twice, stable only from the last
    ([1, 1, 0, 0, 1, 1], 50, 1),
    ([1, 1, 1, 1, 1, 0], 101, 1),  # lost at the end: not stable, censored at budget + 1
    ([0, 0, 0, 0, 0, 0], 101, 0),  # never certified
    ([1, 1, 1, 1, 1, 1], 10, 0),
])
def test_stable_figure_and_losses_by_hand(history, first_stable, losses):
    track = track_of([bool(c) for c in history], STEPS)
    assert track.metrics(budget_steps=100) == {K.STABLE_CERTIFIED_FROM: first_stable, K.CERTIFICATION_LOSSES: losses}


def test_the_track_round_trips_through_a_checkpoint_and_counts_on():
    history = [True, False, True]
    track = track_of(history, [1, 2, 3])
    back = CertificationTrack.from_dict(json.loads(json.dumps(track.to_dict())))
    assert back == track
    back.observe(4, False)
    assert (back.losses, back.stable_certified_from(9)) == (2, 10)
    assert CertificationTrack.from_dict(None) == CertificationTrack()  # a checkpoint written before the track


def test_early_stop_certified_ends_the_trial_at_its_first_fully_certified_evaluation(tmp_path):
    """README: `eval.early_stop_certified` ends a trial once every target token is certified. The same
    trial without it runs its whole budget; with it, it stops at the first evaluation where every
    sequence is certified, with the metrics of that evaluation."""
    from trainables import metric_names as K
    from trainables.config import TrialConfig
    from trainables.memorize import train

    base = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 8},
            "data": {"kind": "random", "target_tokens": 8}, "budget": {"preset": "cpu", "steps": 300, "lr": 3e-2},
            "eval": {"every": 20}}
    full = train(TrialConfig.from_dict(base), tmp_path / "full")
    early = train(TrialConfig.from_dict({**base, "eval": {"every": 20, "early_stop_certified": True}}),
                  tmp_path / "early")
    assert full[K.STEP] == 300 and full[K.FRAC_SEQUENCES_CERTIFIED] == 1.0, full  # the task is learnable
    assert early[K.FRAC_SEQUENCES_CERTIFIED] == 1.0 and early[K.STEP] < 300 and early[K.STEP] % 20 == 0, early
    assert early[K.STEP] == full[K.STEPS_TO_CERTIFIED], (early[K.STEP], full[K.STEPS_TO_CERTIFIED])
