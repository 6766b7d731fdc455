"""A real trial reports the information measures as trainables/information.py defines them, and a
resumed trial (per-token L_init restored from its checkpoint) reports the same bits as a straight one.
tiny-xs, 12 steps: a few seconds."""

from __future__ import annotations

import math

import pytest

from trainables import information, metric_names as K
from trainables.config import TrialConfig
from trainables.memorize import INIT_LOSSES_FILE, MemorizationTrial, evaluate_teacher_forced, latest_checkpoint

TINY_CANDIDATES = 509  # the byte tokenizer's 512 ids minus its 3 special tokens


def cfg() -> TrialConfig:
    return TrialConfig.from_dict({
        "model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 4},
        "data": {"kind": "random", "target_tokens": 24, "num_sequences": 2},
        "budget": {"preset": "cpu", "steps": 12, "lr": 3e-2}, "eval": {"every": 3, "checkpoint_every": 1},
        "threads": 1})


def _bits(result):
    return {k: result[k] for k in K.INFORMATION_KEYS}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    trial = MemorizationTrial(cfg(), out)
    return trial, trial.run(), out


def test_the_trial_reports_bits_as_defined(straight):
    trial, result, _ = straight
    assert result[K.CANDIDATE_TOKENS] == TINY_CANDIDATES
    assert result[K.LOSS_CHANCE] == pytest.approx(math.log(TINY_CANDIDATES))
    tf = evaluate_teacher_forced(trial.model, trial.corpus)  # the final adapter, evaluated again
    expected = information.bits_above_chance(trial.init_losses, tf.losses, tf.mask, TINY_CANDIDATES,
                                               random_targets=True)
    assert result[K.BITS_ABOVE_CHANCE] == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= result[K.BITS_ABOVE_CHANCE] <= 48 * math.log2(TINY_CANDIDATES)
    n_certified = round(result[K.FRAC_P_GT_HALF] * 48)
    assert result[K.CERTIFIED_BITS] == pytest.approx(n_certified * math.log2(TINY_CANDIDATES))
    assert result[K.BITS_ABOVE_CHANCE_PER_PARAM] == pytest.approx(result[K.BITS_ABOVE_CHANCE] / result[K.TRAINABLE_PARAMS])
    assert result[K.DROP_BELOW_CHANCE] == pytest.approx(result[K.LOSS_REF] - result[K.LOSS_FINAL])
    assert result[K.LOSS_REF] <= min(result[K.LOSS_INIT], result[K.LOSS_CHANCE]) + 1e-6
    # the tiny random-init model starts above chance: ΔL counts more than the drop below chance
    assert result[K.LOSS_INIT] > result[K.LOSS_CHANCE] and result[K.DELTA_LOSS] > result[K.DROP_BELOW_CHANCE]


def test_a_resumed_trial_reports_the_same_bits(straight, tmp_path):
    """Stop a copy at step 6 (a checkpoint, as a killed trial leaves one), resume it in a new process-like
    trial object: L_init,t comes back from the checkpoint, so the bits match the straight run's."""
    _, result, out = straight
    assert (latest_checkpoint(out / "checkpoints") / INIT_LOSSES_FILE).is_file()
    halfway = MemorizationTrial(cfg(), tmp_path / "half")
    halfway._start(None)
    while halfway.step < 6:
        halfway.train_step()
    halfway.evals_done = 2
    ckpt = halfway.save_checkpoint(tmp_path / "half" / "checkpoints")
    resumed = MemorizationTrial(cfg(), tmp_path / "resumed").run(resume_from=ckpt)
    assert resumed[K.BITS_ABOVE_CHANCE] is not None
    assert _bits(resumed) == pytest.approx(_bits(result))
