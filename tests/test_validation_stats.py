"""The validation's uncensored statistics (orchestrator/search/validation_stats.py) against hand
computation: means and intervals (shares inside [0, 1]), the exact sign-flip test, Holm's step-down
adjustment, the fewest seeds that can give a winner, and the verdict. Each statistic is checked for
the null (identical arms: p = 1, no winner), for duplicates (a seed counts once), and for the number
of arms compared (Holm). The censored steps: tests/test_validation_censored.py."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from orchestrator.search.validation_stats import (ALPHA, NO_WINNER, Z_95, holm, mean_interval, min_seeds,
                                                  paired_difference, sign_flip_p, summarize,
                                                  verdict, wilson_interval)

EM = "greedy_exact_match"


def t975(df: int) -> float:
    return float(stats.t.ppf(0.975, df))


def test_mean_interval_by_hand():
    xs = [0.2, 0.4, 0.4, 0.6, 0.9]  # mean 0.5; deviations -.3 -.1 -.1 .1 .4; Σd² = 0.28; sd = √0.07
    e = mean_interval(xs)
    half = t975(4) * math.sqrt(0.07) / math.sqrt(5)
    assert (e.n, e.mean) == (5, pytest.approx(0.5))
    assert (e.lo, e.hi) == (pytest.approx(0.5 - half, rel=1e-9), pytest.approx(0.5 + half, rel=1e-9))


def test_no_interval_below_two_values_and_zero_width_when_equal():
    assert mean_interval([]).to_dict() == {"n": 0, "mean": None, "lo": None, "hi": None}
    assert mean_interval([0.3]).to_dict() == {"n": 1, "mean": 0.3, "lo": None, "hi": None}
    e = mean_interval([1.0, 1.0, 1.0])
    assert (e.lo, e.hi) == (1.0, 1.0)  # why a share gets no t-interval: this "interval" says nothing


def test_paired_difference_uses_common_seeds_only():
    arm = {0: 0.5, 1: 0.7, 2: 0.9, 7: 1.0}  # seed 7 has no SFT partner
    sft = {0: 0.4, 1: 0.4, 2: 0.7, 3: 0.1}
    d = paired_difference(arm, sft)  # d = 0.1, 0.3, 0.2: mean 0.2, sd 0.1
    half = t975(2) * 0.1 / math.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(0.2)
    assert (d.lo, d.hi) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))


def test_sign_flip_p_against_a_hand_count():
    # d = (0.2, 0.1, -0.1): of the 8 sign patterns, sums >= 0.2 are (+,+,-) 0.2, (+,+,+) 0.4, (+,-,-) 0.2 -> 3/8
    assert sign_flip_p([0.2, 0.1, -0.1], +1) == pytest.approx(3 / 8)
    assert sign_flip_p([0.2, 0.1, -0.1], -1) == pytest.approx(7 / 8)  # sums <= 0.2: all but the 0.4 of (+, +, +)
    assert sign_flip_p([1.0] * 5, +1) == pytest.approx(2 ** -5) and sign_flip_p([], +1) is None
    assert sign_flip_p([0.0] * 6, +1) == sign_flip_p([0.0] * 6, -1) == 1.0  # the null: identical arms


# -- shares: an interval inside [0, 1] -------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 6, 12])
def test_wilson_on_zero_one_shares_is_wilsons_interval(n):
    """Each seed's share 0 or 1: the score interval is Wilson's, as scipy computes it."""
    for k in range(n + 1):
        e = wilson_interval([1.0] * k + [0.0] * (n - k))
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert (e.lo, e.hi) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
        assert 0.0 <= e.lo <= e.mean <= e.hi <= 1.0


def test_a_share_that_is_one_on_every_seed_gets_an_interval_inside_zero_one_of_positive_width():
    n = 6
    e = wilson_interval([1.0] * n)
    assert e.hi == 1.0 and e.lo == pytest.approx(n / (n + Z_95 ** 2))  # by hand: 1 / (1 + z²/n)
    shares = [1.0, 1.0, 1.0, 1.0, 0.875]  # mean 0.975: its t-interval reaches past 1
    assert mean_interval(shares).hi > 1.0
    w = wilson_interval(shares)
    assert w.mean == pytest.approx(0.975) and 0.0 <= w.lo < w.mean < w.hi <= 1.0


def test_summarize_gives_shares_wilson_and_other_values_t():
    values = {"SFT": {EM: {0: 1.0, 1: 1.0}, "loss_final": {0: 0.1, 1: 0.3}}}
    s = summarize(values, "SFT", [EM, "loss_final"], shares=[EM])
    assert s["SFT"][EM]["value"]["interval"] == "wilson" and s["SFT"][EM]["value"]["hi"] == 1.0
    assert s["SFT"]["loss_final"]["value"]["interval"] == "t"
    assert s["SFT"]["loss_final"]["value"]["lo"] == pytest.approx(0.2 - t975(1) * math.sqrt(0.02) / math.sqrt(2))


def test_a_repeated_seed_cannot_narrow_an_interval():
    """The inputs are keyed by seed: a seed's value given twice is one value (the plan's summary
    builds them so from records: tests/test_best_trials.py repeats a record and compares)."""
    once = {0: 0.9, 1: 0.6, 2: 0.8}
    twice = dict([*once.items(), (1, 0.6), (1, 0.6)])
    assert wilson_interval(list(twice.values())) == wilson_interval(list(once.values()))
    assert summarize({"SFT": {EM: twice}}, "SFT", [EM], shares=[EM]) == summarize({"SFT": {EM: once}}, "SFT", [EM],
                                                                                   shares=[EM])


# -- several arms: Holm ----------------------------------------------------------------------------
def test_holm_against_a_hand_computation():
    # p = (0.01, 0.04, 0.03), k = 3. Sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the
    # running maximum 0.06. In the given order: (0.03, 0.06, 0.06): only the first passes 0.05.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # (0.005, 0.5): 0.005 x 2 = 0.01; 0.5 x 1 = 0.5
    assert holm([0.5, 0.005]) == pytest.approx([0.5, 0.01])
    assert holm([0.4, 0.9]) == pytest.approx([0.8, 0.9])  # 0.4 x 2 = 0.8; 0.9 x 1 = 0.9
    assert holm([0.6, None]) == pytest.approx([1.0, 1.0])  # a missing p counts as 1 and caps at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6, 7])
def test_min_seeds_is_the_fewest_whose_smallest_p_passes_holm(k):
    n = min_seeds(k)
    assert 2.0 ** -n <= ALPHA / k < 2.0 ** -(n - 1)
    assert {1: 5, 2: 6, 3: 6, 4: 7, 6: 7, 7: 8}[k] == n  # 2^-5 = .031 <= .05; 2^-6 = .0156 <= .0167; 2^-7 <= .0125


def test_a_verdict_on_too_few_seeds_says_no_winner_was_reachable():
    """5 seeds, 2 arms: every seed favours top1 (p = 1/32), Holm's threshold 0.025 is out of reach."""
    summary = summarize(_arms({"top1": [0.1] * 5, "OT": [0.0] * 5}, [0.5] * 5), "SFT", [EM], {EM: "max"})
    text = verdict(summary, EM, "max", "SFT")["text"]
    assert text.startswith(NO_WINNER) and "no winner was reachable: 2 arms need 6 seeds" in text
    assert "ran 5" in text


def _arms(gains: dict[str, list[float]], base: list[float]) -> dict:
    return {"SFT": {EM: dict(enumerate(base))},
            **{a: {EM: {s: b + g for s, (b, g) in enumerate(zip(base, gs))}} for a, gs in gains.items()}}


def test_the_null_identical_arms_give_p_one_and_no_winner():
    base = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.4]
    s = summarize(_arms({"A": [0.0] * 7, "B": [0.0] * 7}, base), "SFT", [EM], {EM: "max"}, [EM])
    assert all(s[a][EM]["vs_baseline"]["p"] == s[a][EM]["vs_baseline"]["p_holm"] == 1.0 for a in "AB")
    v = verdict(s, EM, "max", "SFT")
    assert v["winner"] is None and v["text"].startswith(NO_WINNER) and v["arms_compared"] == 2


def test_a_winner_is_adjusted_for_every_arm_compared():
    """+0.05 on all of 5 seeds: exact p = 2^-5 = 0.031 <= 0.05 alone, but Holm over 3 arms makes it
    3 x 0.031 = 0.094: no winner. On 6 seeds: 3 x 2^-6 = 0.047 <= 0.05: a winner."""
    for n, winner in ((5, None), (6, "A")):
        base = [0.3 + 0.1 * i for i in range(n)]
        s = summarize(_arms({"A": [0.05] * n, "B": [0.0] * n, "C": [-0.05] * n}, base), "SFT", [EM],
                      {EM: "max"}, [EM])
        a = s["A"][EM]["vs_baseline"]
        assert a["p"] == pytest.approx(2.0 ** -n) and a["p_holm"] == pytest.approx(min(1.0, 3 * 2.0 ** -n))
        v = verdict(s, EM, "max", "SFT")
        assert v["winner"] == winner and v["arms_compared"] == 3
        if winner is None:
            assert a["p"] <= ALPHA < a["p_holm"]
            assert f"{n} paired seeds can reach {3 * 2.0 ** -n:.3g} at best" in v["text"]


def test_beyond_sixteen_seeds_the_exact_sign_test_takes_over():
    n = 20  # 2^20 sign patterns are not enumerated: the sign test, P(Bin(20, 1/2) >= 20) = 2^-20
    base = [0.02 * i for i in range(n)]
    s = summarize(_arms({"A": [0.01] * n, "B": [0.0] * n}, base), "SFT", [EM], {EM: "max"}, [EM])
    assert s["A"][EM]["vs_baseline"]["p"] == pytest.approx(2.0 ** -n)
    assert s["B"][EM]["vs_baseline"]["p"] == 1.0  # the null: every difference 0, nothing to count
    assert verdict(s, EM, "max", "SFT")["winner"] == "A"


def test_verdict_for_a_metric_to_minimize():
    k = "loss_final"
    values = {"SFT": {k: dict(enumerate([1.0, 1.2, 1.1, 1.05, 1.15, 1.3]))},
              "OT": {k: dict(enumerate([0.6, 0.7, 0.65, 0.62, 0.68, 0.9]))}}
    s = summarize(values, "SFT", [k], {k: "min"})
    assert s["OT"][k]["vs_baseline"]["p"] == pytest.approx(2.0 ** -6)
    assert verdict(s, k, "min", "SFT")["winner"] == "OT"
    s = summarize(values, "SFT", [k], {k: "max"})
    assert verdict(s, k, "max", "SFT")["winner"] is None
