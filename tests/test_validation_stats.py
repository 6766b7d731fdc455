"""The validation's statistics (orchestrator/search/validation_stats.py) against hand computation."""

from __future__ import annotations

import math

import pytest

from orchestrator.search.validation_stats import NO_WINNER, mean_interval, paired_difference, sign_flip_p, summarize, verdict

T_975_DF4 = 2.7764451051977987  # Student t, 0.975 quantile, 4 degrees of freedom (tables: 2.776)
T_975_DF2 = 4.302652729911275  # 2 degrees of freedom (tables: 4.303)


def test_mean_interval_by_hand():
    xs = [0.2, 0.4, 0.4, 0.6, 0.9]  # mean 0.5; deviations -.3 -.1 -.1 .1 .4; Σd² = 0.28; sd = √0.07
    e = mean_interval(xs)
    half = T_975_DF4 * math.sqrt(0.07) / math.sqrt(5)
    assert (e.n, e.mean) == (5, pytest.approx(0.5))
    assert (e.lo, e.hi) == (pytest.approx(0.5 - half, rel=1e-9), pytest.approx(0.5 + half, rel=1e-9))


def test_no_interval_below_two_values_and_zero_width_when_equal():
    assert mean_interval([]).to_dict() == {"n": 0, "mean": None, "lo": None, "hi": None}
    assert mean_interval([0.3]).to_dict() == {"n": 1, "mean": 0.3, "lo": None, "hi": None}
    e = mean_interval([1.0, 1.0, 1.0])
    assert (e.lo, e.hi) == (1.0, 1.0) and e.excludes_zero()  # 1 ± 0 lies above zero


def test_paired_difference_uses_common_seeds_only():
    arm = {0: 0.5, 1: 0.7, 2: 0.9, 7: 1.0}  # seed 7 has no SFT partner
    sft = {0: 0.4, 1: 0.4, 2: 0.7, 3: 0.1}
    d = paired_difference(arm, sft)  # d = 0.1, 0.3, 0.2: mean 0.2, sd 0.1
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(0.2)
    assert (d.lo, d.hi) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert d.lo < 0 < d.hi  # 0.2 ± 0.248: the interval holds zero


def test_sign_flip_p_against_a_hand_count():
    # d = (0.2, 0.1, -0.1): of the 8 sign patterns, sums >= 0.2 are (+,+,-) 0.2, (+,+,+) 0.4, (+,-,-) 0.2 -> 3/8
    assert sign_flip_p([0.2, 0.1, -0.1], +1) == pytest.approx(3 / 8)
    assert sign_flip_p([0.2, 0.1, -0.1], -1) == pytest.approx(7 / 8)  # sums <= 0.2: all but the 0.4 of (+, +, -)
    assert sign_flip_p([1.0] * 5, +1) == pytest.approx(1 / 32) and sign_flip_p([], +1) is None


def test_verdict_needs_the_interval_to_exclude_zero_on_five_seeds():
    em = "greedy_exact_match"
    values = {"SFT": {em: {i: 0.5 + 0.05 * i for i in range(5)}},
              "A": {em: {i: 0.7 + 0.05 * i for i in range(5)}},  # +0.2 on every seed: p = 1/32
              "B": {em: {0: 0.9, 1: 0.55, 2: 0.6, 3: 0.65, 4: 0.7}}}  # +0.4, 0, 0, 0, 0: holds zero
    s = summarize(values, "SFT", [em])
    assert s["A"][em]["vs_baseline"]["lo"] == pytest.approx(0.2)
    assert s["A"][em]["vs_baseline"]["p_above"] == pytest.approx(1 / 32)
    assert verdict(s, em, "max", "SFT")["winner"] == "A"
    del values["A"]
    v = verdict(summarize(values, "SFT", [em]), em, "max", "SFT")
    assert v["winner"] is None and v["text"] == NO_WINNER


def test_three_seeds_that_agree_are_no_winner_however_narrow_the_interval():
    """All three better by exactly 21 steps: sd 0, the t-interval [-21, -21] 'excludes zero', but
    three agreeing signs happen one time in 8 by chance."""
    k = "stable_certified_from"
    values = {"SFT": {k: {0: 101, 1: 101, 2: 101}}, "SW": {k: {0: 80, 1: 80, 2: 80}}}
    s = summarize(values, "SFT", [k])
    assert (s["SW"][k]["vs_baseline"]["lo"], s["SW"][k]["vs_baseline"]["hi"]) == (-21.0, -21.0)
    v = verdict(s, k, "min", "SFT")
    assert v["winner"] is None and v["text"].startswith(NO_WINNER) and "p = 0.125" in v["text"]


def test_verdict_for_a_metric_to_minimize():
    k = "stable_certified_from"
    values = {"SFT": {k: {0: 100, 1: 120, 2: 110, 3: 105, 4: 115}}, "OT": {k: {0: 60, 1: 70, 2: 65, 3: 62, 4: 68}}}
    s = summarize(values, "SFT", [k])
    assert verdict(s, k, "min", "SFT")["winner"] == "OT"
    assert verdict(s, k, "max", "SFT")["winner"] is None
