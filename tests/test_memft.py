"""MemFT token weights (docs/science.md §3), checked against hand-computed values.

Notation as in trainables/memft.py: L [B, T] per-token losses, mask [B, T] real target tokens,
S = {L >= τ} (sub-threshold), A = {L < τ} (learned), τ = -ln(0.5 + m).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trainables.methods import WindowKnobs
from trainables.memft import (
    LN2,
    WindowState,
    any_subthreshold,
    batch_for_step,
    curriculum_size,
    curriculum_stage_start,
    epoch_curriculum,
    first_false,
    learned_threshold,
    mean_weights,
    mixed_weights,
    ot_weights,
    position_factor,
    sliding_window_weights,
    steps_per_epoch,
)



def nll(*probs: float) -> list[float]:
    """Losses -ln p for the given target-token probabilities."""
    return [-math.log(p) for p in probs]


def tensor(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def bools(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


# -- threshold ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("margin, tau", [(0.0, LN2), (0.2, -math.log(0.7)), (0.49, -math.log(0.99))])
def test_learned_threshold(margin, tau):
    assert learned_threshold(margin) == pytest.approx(tau, rel=1e-12)


@pytest.mark.parametrize("margin", [-0.1, 0.5, 0.7])
def test_learned_threshold_rejects_margin_outside_range(margin):
    with pytest.raises(ValueError, match="threshold_margin"):
        learned_threshold(margin)


def test_loss_exactly_ln2_is_subthreshold_and_just_below_is_learned():
    ln2 = torch.tensor(LN2, dtype=torch.float32)
    below = torch.nextafter(ln2, torch.tensor(0.0))
    losses = torch.stack([ln2, below, torch.tensor(3.0)]).unsqueeze(0)  # p = 0.5, p > 0.5, p small
    mask = torch.ones(1, 3, dtype=torch.bool)
    w = ot_weights(losses, mask, margin=0.0)
    torch.testing.assert_close(w, tensor([[0.5, 0.0, 0.5]]), rtol=0, atol=0)
    assert any_subthreshold(ln2.view(1, 1), torch.ones(1, 1, dtype=torch.bool), 0.0)
    assert not any_subthreshold(below.view(1, 1), torch.ones(1, 1, dtype=torch.bool), 0.0)


def test_any_subthreshold_ignores_padding():
    losses = tensor([[0.1, 5.0]])
    assert not any_subthreshold(losses, bools([[1, 0]]), 0.0)
    assert any_subthreshold(losses, bools([[1, 1]]), 0.0)


# -- OT, margin and the mix λ ---------------------------------------------------------------------
def test_ot_weights_hand_computed_with_padding():
    # p = 0.9 (learned), 0.4 and 0.1 (sub-threshold), then a padded slot with a large loss.
    losses = tensor([nll(0.9, 0.4, 0.1) + [7.0]])
    mask = bools([[1, 1, 1, 0]])
    w = ot_weights(losses, mask, margin=0.0)
    torch.testing.assert_close(w, tensor([[0.0, 0.5, 0.5, 0.0]]), rtol=0, atol=0)


def test_ot_weights_pool_over_batch_rows():
    # [2, 3]: S = {(0,1), (1,0)}; padding at (1,2) has a big loss but must stay at 0.
    losses = tensor([nll(0.8, 0.3, 0.99), nll(0.2, 0.7) + [9.0]])
    mask = bools([[1, 1, 1], [1, 1, 0]])
    w = ot_weights(losses, mask, margin=0.0)
    torch.testing.assert_close(w, tensor([[0.0, 0.5, 0.0], [0.5, 0.0, 0.0]]), rtol=0, atol=0)


def test_margin_moves_token_between_half_and_half_plus_m_into_s():
    losses = tensor([nll(0.9, 0.6, 0.3)])  # 0.6 lies in (0.5, 0.5 + 0.2]
    mask = torch.ones(1, 3, dtype=torch.bool)
    plain = ot_weights(losses, mask, margin=0.0)
    margin = ot_weights(losses, mask, margin=0.2)
    torch.testing.assert_close(plain, tensor([[0.0, 0.0, 1.0]]), rtol=0, atol=0)
    torch.testing.assert_close(margin, tensor([[0.0, 0.5, 0.5]]), rtol=0, atol=0)
    assert not any_subthreshold(losses[:, :2], mask[:, :2], 0.0)
    assert any_subthreshold(losses[:, :2], mask[:, :2], 0.2)


@pytest.mark.parametrize("mix", [0.0, 0.25, 0.6, 1.0])
def test_mix_weights_hand_computed(mix):
    losses = tensor([nll(0.9, 0.2, 0.8, 0.45, 0.7)])  # S = positions 1, 3; A = 0, 2, 4; T = 5
    mask = torch.ones(1, 5, dtype=torch.bool)
    w = mixed_weights(losses, mask, margin=0.0, mix=mix)
    w_sub, w_learned = (1 - mix) / 5 + mix / 2, (1 - mix) / 5
    expected = tensor([[w_learned, w_sub, w_learned, w_sub, w_learned]])
    torch.testing.assert_close(w, expected, rtol=1e-6, atol=0)
    # the share on S is |S|/T + λ (1 − |S|/T): never below SFT's, and a learned token never above 1/T
    assert float(w[:, [1, 3]].sum()) == pytest.approx(2 / 5 + mix * (1 - 2 / 5), abs=1e-6)
    assert float(w[0, 0]) <= 1 / 5 + 1e-6


def test_a_large_learned_set_gets_no_more_than_its_sft_weight():
    """The old absolute ratio ρ = 0.59 gave 10 learned tokens of 1024 41 % of the weight; the mix can't."""
    losses = torch.full((1, 1024), 3.0)
    losses[0, :10] = 0.01  # 10 learned tokens
    mask = torch.ones(1, 1024, dtype=torch.bool)
    for mix in (0.0, 0.41, 1.0):
        w = mixed_weights(losses, mask, 0.0, mix)
        assert float(w[0, :10].sum()) == pytest.approx((1 - mix) * 10 / 1024, rel=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_mix_zero_is_sft_bit_for_bit(seed):
    g = torch.Generator().manual_seed(seed)
    losses = torch.rand(2, 7, generator=g) * 2.0
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    n_sub = int((mask & (losses >= LN2)).sum())
    assert 0 < n_sub < int(mask.sum())  # both sets non-empty, else the test would not test the mix
    for margin in (0.0, 0.2):
        for empty in ("mean", "skip"):
            w = mixed_weights(losses, mask, margin=margin, mix=0.0, empty=empty)
            assert torch.equal(w, mean_weights(mask))
            assert torch.equal((losses * w).sum(), (losses * mean_weights(mask)).sum())  # the loss, bit for bit


def test_mix_one_is_ot_and_skip_leaves_nothing_when_all_learned():
    losses = tensor([nll(0.9, 0.3, 0.8)])
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert torch.equal(mixed_weights(losses, mask, 0.0, 1.0), ot_weights(losses, mask, 0.0))
    learned = tensor([nll(0.9, 0.7, 0.8)])
    assert float(mixed_weights(learned, mask, 0.0, 1.0, "skip").abs().sum()) == 0.0
    torch.testing.assert_close(mixed_weights(learned, mask, 0.0, 0.25, "skip"), torch.full((1, 3), 0.75 / 3))
    torch.testing.assert_close(mixed_weights(learned, mask, 0.0, 0.25, "mean"), torch.full((1, 3), 1 / 3))


def test_mix_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="mix"):
        mixed_weights(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), 0.0, 1.5)


@pytest.mark.parametrize("mix", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("probs, what", [((0.9, 0.8, 0.99), "empty S"), ((0.1, 0.4, 0.5), "empty A")])
def test_one_empty_set_gives_the_plain_mean(mix, probs, what):
    losses = tensor([nll(*probs) + [4.0]])
    mask = bools([[1, 1, 1, 0]])
    w = mixed_weights(losses, mask, margin=0.0, mix=mix)
    torch.testing.assert_close(w, tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]]), rtol=1e-6, atol=0, msg=what)


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("mix", [0.0, 0.2, 0.5, 1.0])
def test_weights_sum_to_one_and_vanish_on_padding(margin, mix):
    g = torch.Generator().manual_seed(7)
    losses = torch.rand(3, 6, generator=g) * 2.5
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 5:] = False
    mask[2, 2:] = False
    w = mixed_weights(losses, mask, margin=margin, mix=mix)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(w[~mask].abs().sum()) == 0.0
    assert bool((w >= 0).all())


def test_mean_weights_with_padding():
    w = mean_weights(bools([[1, 1, 0], [1, 0, 0]]))
    torch.testing.assert_close(w, tensor([[1 / 3, 1 / 3, 0.0], [1 / 3, 0.0, 0.0]]))


# -- first_false ---------------------------------------------------------------------------------------
def test_first_false_per_row_with_length_convention():
    flags = bools([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]])
    mask = bools([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    # row 1: the only False sits on padding -> "no such position" = its length 3
    assert first_false(flags, mask).tolist() == [2, 3, 0]


# -- sliding window ------------------------------------------------------------------------------------
def test_position_factor_before_inside_and_beyond_the_window():
    a, width, decay = 5, 50, 20.0
    f = position_factor(60, anchor=a, width=width, decay=decay, beyond=0.01)
    assert f.shape == (60,)
    assert f[:a].tolist() == [1.0] * a
    for t in (a, a + 1, a + 20, a + width - 1):
        assert float(f[t]) == pytest.approx(math.exp(-(t - a) / decay), rel=1e-6)
    assert f[a + width:].tolist() == pytest.approx([0.01] * (60 - a - width))


def test_position_factor_with_fractional_width():
    # e = 1.5 with window 3 gives W = 4.5: positions a .. a+4 lie inside.
    f = position_factor(10, anchor=2, width=4.5, decay=20.0, beyond=0.01)
    assert float(f[6]) == pytest.approx(math.exp(-4 / 20))
    assert float(f[7]) == pytest.approx(0.01)


def sigmoid_base(loss: float, kappa: float = 10.0) -> float:
    return 1.0 / (1.0 + math.exp(-kappa * (loss - LN2)))


def test_sliding_window_anchor_at_first_wrong_argmax():
    losses_list = [0.1, 0.5, 2.0, 1.5, 0.3, 3.0]
    losses = tensor([losses_list])
    correct = bools([[1, 1, 0, 1, 0, 1]])  # first wrong argmax at t = 2
    mask = torch.ones(1, 6, dtype=torch.bool)
    knobs = WindowKnobs(window=2)  # W = 2: t = 2, 3 inside; 4, 5 beyond
    w = sliding_window_weights(losses, correct, mask, [0], WindowState(), knobs)
    factor = [1.0, 1.0, 1.0, math.exp(-1 / 20), 0.01, 0.01]
    raw = [sigmoid_base(x) * f for x, f in zip(losses_list, factor)]
    expected = torch.tensor([[r / sum(raw) for r in raw]])
    torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-7)


def test_sliding_window_ignores_errors_on_padding_and_zeroes_padding():
    losses = tensor([[1.0, 2.0, 5.0, 5.0]])
    correct = bools([[1, 1, 0, 0]])  # the wrong argmaxes lie on padding only
    mask = bools([[1, 1, 0, 0]])
    state = WindowState()
    w = sliding_window_weights(losses, correct, mask, [3], state, WindowKnobs(window=1))
    base = [sigmoid_base(1.0), sigmoid_base(2.0)]
    expected = torch.tensor([[base[0] / sum(base), base[1] / sum(base), 0.0, 0.0]])
    torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-7)
    assert state.anchor[3] == -1  # no error recorded


def test_sliding_window_without_error_is_proportional_to_base():
    losses_list = [0.2, 0.69, 0.9, 1.3]
    losses = tensor([losses_list])
    mask = torch.ones(1, 4, dtype=torch.bool)
    correct = torch.ones(1, 4, dtype=torch.bool)
    w = sliding_window_weights(losses, correct, mask, [0], WindowState(), WindowKnobs())
    base = [sigmoid_base(x) for x in losses_list]
    torch.testing.assert_close(w, torch.tensor([[b / sum(base) for b in base]]), rtol=1e-5, atol=1e-7)


def test_sliding_window_tiny_total_falls_back_to_plain_mean():
    # κ = 50 and every loss 0: each base weight is σ(-50 ln 2) ≈ 1e-15, far below 1e-5 in total.
    losses = torch.zeros(1, 4)
    mask = bools([[1, 1, 1, 0]])
    w = sliding_window_weights(losses, torch.ones(1, 4, dtype=torch.bool), mask, [0], WindowState(),
                               WindowKnobs(kappa=50.0))
    torch.testing.assert_close(w, tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]]), rtol=1e-6, atol=0)


def test_sliding_window_rows_have_their_own_anchor():
    losses = tensor([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])
    correct = bools([[0, 1, 1], [1, 1, 0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    state = WindowState()
    w = sliding_window_weights(losses, correct, mask, [10, 11], state, WindowKnobs(window=1))
    assert state.anchor == {10: 0, 11: 2}
    # row 0: anchor 0, window 1 -> factors 1, .01, .01; row 1: anchor 2 -> 1, 1, 1
    raw = torch.tensor([[1.0, 0.01, 0.01], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(w, raw / raw.sum(), rtol=1e-5, atol=1e-7)


def update(state: WindowState, anchor: int | None, seq: int = 0, rule: str = "per_patience") -> float:
    k = WindowKnobs()
    return state.update(seq, anchor, k.growth, k.max_expansion, k.patience, rule)


def test_window_expansion_per_patience_grows_after_three_stalls_caps_at_four_and_resets():
    state = WindowState()
    assert update(state, 7) == 1.0  # first sight of the anchor
    assert [update(state, 7) for _ in range(3)] == [1.0, 1.0, 1.5]  # 3 stalled steps -> +0.5
    assert [update(state, 7) for _ in range(3)] == [1.5, 1.5, 2.0]
    seen = [update(state, 7) for _ in range(30)]
    assert max(seen) == 4.0 and seen[-1] == 4.0
    assert seen[:9] == [2.0, 2.0, 2.5, 2.5, 2.5, 3.0, 3.0, 3.0, 3.5]
    assert update(state, 9) == 1.0  # the anchor moved
    assert [update(state, 9) for _ in range(3)] == [1.0, 1.0, 1.5]


def test_window_expansion_official_grows_every_step_once_stalled_three():
    """The official trainer: stalls 1, 2 keep e = 1; from the 3rd stalled step on, +0.5 per step to 4."""
    assert WindowKnobs().growth_rule == "every_step"  # the default is the official rule
    state = WindowState()
    assert update(state, 7, rule="every_step") == 1.0
    seen = [update(state, 7, rule="every_step") for _ in range(10)]
    assert seen == [1.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.0, 4.0]  # the cap after 9 steps in all
    assert update(state, 8, rule="every_step") == 1.0  # the anchor moved: reset
    assert [update(state, 8, rule="every_step") for _ in range(3)] == [1.0, 1.0, 1.5]


def test_window_expansion_resets_when_no_error_and_sequences_are_independent():
    state = WindowState()
    for _ in range(4):
        update(state, 3, seq=0)
        update(state, 5, seq=1)
    assert state.expansion == {0: 1.5, 1: 1.5}
    assert update(state, None, seq=0) == 1.0
    assert update(state, 3, seq=0) == 1.0  # the anchor came back: a move, not a stall
    assert update(state, 5, seq=1) == 1.5


def test_expanded_window_reaches_further_in_the_weights():
    losses = torch.full((1, 8), 2.0)
    correct = bools([[1, 0, 1, 1, 1, 1, 1, 1]])  # anchor 1
    mask = torch.ones(1, 8, dtype=torch.bool)
    state, knobs = WindowState(), WindowKnobs(window=2, growth_rule="per_patience")
    runs = [sliding_window_weights(losses, correct, mask, [0], state, knobs) for _ in range(4)]
    # steps 1-3: W = 2 -> t = 3 is beyond; step 4: e = 1.5, W = 3 -> t = 3 is inside
    for w in runs[:3]:
        assert float(w[0, 3] / w[0, 0]) == pytest.approx(0.01, rel=1e-5)
    assert float(runs[3][0, 3] / runs[3][0, 0]) == pytest.approx(math.exp(-2 / 20), rel=1e-5)
    assert float(runs[3][0, 4] / runs[3][0, 0]) == pytest.approx(0.01, rel=1e-5)


def test_window_state_round_trips_through_json():
    state = WindowState()
    for _ in range(4):
        update(state, 6, seq=2)
    back = WindowState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state
    assert update(back, 6, seq=2) == update(state, 6, seq=2)


# -- curriculum ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("step, size", [(0, 2), (19, 2), (20, 4), (39, 4), (40, 6), (59, 6), (60, 8), (79, 8),
                                        (80, 10), (99, 10), (100, 10)])
def test_curriculum_size_grows_in_fifths(step, size):
    assert curriculum_size(step, total_steps=100, stages=5, n=10) == size


@pytest.mark.parametrize("step, start", [(0, 0), (19, 0), (20, 20), (55, 40), (80, 80), (99, 80)])
def test_curriculum_stage_start(step, start):
    assert curriculum_stage_start(step, total_steps=100, stages=5) == start


@pytest.mark.parametrize("total, stages, n, sizes", [
    (7, 3, 5, [2, 2, 2, 4, 4, 5, 5]),  # stages start at steps 0, 3, 5
    (10, 5, 2, [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]),  # ceil(2·k/5): 1, 1, 2, 2, 2; never below one
    (4, 1, 3, [3, 3, 3, 3]),
])
def test_curriculum_size_uneven(total, stages, n, sizes):
    assert [curriculum_size(s, total, stages, n) for s in range(total)] == sizes


@pytest.mark.parametrize("total, stages", [(100, 5), (7, 3), (10, 4), (3, 3), (1000, 7)])
def test_stage_start_is_the_first_step_of_the_same_stage(total, stages):
    def size(s):
        return curriculum_size(s, total, stages, 1000)

    for step in range(total):
        start = curriculum_stage_start(step, total, stages)
        assert 0 <= start <= step
        assert size(start) == size(step)
        assert start == 0 or size(start - 1) < size(start)


@pytest.mark.parametrize("pool, batch, steps", [(10, None, 1), (10, 10, 1), (10, 3, 4), (2, 3, 1), (9, 3, 3)])
def test_steps_per_epoch(pool, batch, steps):
    assert steps_per_epoch(pool, batch) == steps


def test_epoch_curriculum_full_batch_has_the_official_boundaries_20_40_60_80():
    # full-batch training: one step is one epoch; 5 stages of 20 epochs, the full set the rest
    got = [epoch_curriculum(s, stages=5, stage_epochs=20, n=10, batch_size=None) for s in range(200)]
    expected = [(2, 0)] * 20 + [(4, 20)] * 20 + [(6, 40)] * 20 + [(8, 60)] * 20 + [(10, 80)] * 120
    assert got == expected


def test_epoch_curriculum_counts_epochs_over_each_stage_pool():
    # n = 10, batch 3, K = 5, E = 2: pools 2, 4, 6, 8 take 1, 2, 2, 3 steps per epoch -> stages of
    # 2, 4, 4, 6 steps starting at 0, 2, 6, 10; the full set from step 16 on
    got = [epoch_curriculum(s, 5, 2, 10, 3) for s in range(20)]
    expected = ([(2, 0)] * 2 + [(4, 2)] * 4 + [(6, 6)] * 4 + [(8, 10)] * 6 + [(10, 16)] * 4)
    assert got == expected


# -- batches -------------------------------------------------------------------------------------------
def test_batch_for_step_is_deterministic():
    pool = np.arange(20) + 100
    a = [batch_for_step(s, pool, 3, seed=5).tolist() for s in range(20)]
    b = [batch_for_step(s, pool, 3, seed=5).tolist() for s in range(20)]
    assert a == b
    assert a != [batch_for_step(s, pool, 3, seed=6).tolist() for s in range(20)]


@pytest.mark.parametrize("n, batch_size", [(10, 3), (10, 5), (7, 1), (9, 8)])
def test_batch_for_step_covers_the_pool_once_per_epoch(n, batch_size):
    pool = np.arange(n) * 3 + 1
    per_epoch = -(-n // batch_size)
    orders = []
    for epoch in range(3):
        batches = [batch_for_step(epoch * per_epoch + k, pool, batch_size, seed=1) for k in range(per_epoch)]
        assert all(0 < len(b) <= batch_size for b in batches)
        order = np.concatenate(batches)
        assert sorted(order.tolist()) == pool.tolist()
        orders.append(order.tolist())
    if n > 2:
        assert len({tuple(o) for o in orders}) > 1  # epochs reshuffle


def test_batch_for_step_counts_from_start_step():
    pool = np.arange(12)
    for step in range(8):
        assert batch_for_step(step + 40, pool, 5, seed=3, start_step=40).tolist() == \
            batch_for_step(step, pool, 5, seed=3).tolist()


@pytest.mark.parametrize("batch_size", [None, 6, 100])
def test_batch_for_step_returns_whole_pool_when_batch_covers_it(batch_size):
    pool = np.array([4, 1, 3, 0, 5, 2])
    for step in (0, 1, 17):
        assert batch_for_step(step, pool, batch_size, seed=0).tolist() == pool.tolist()
