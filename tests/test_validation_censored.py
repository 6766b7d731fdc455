"""Steps to stable certification as right-censored data (orchestrator/search/validation_censored.py),
against hand computation: the censoring rule (a stable step needs a later evaluation), Clopper–Pearson,
Kaplan–Meier median and restricted mean, per-seed orderings with the exact sign test, Holm over
the arms, and the difference printed as a bound, never averaged."""

from __future__ import annotations

import pytest
from scipy import stats

from orchestrator.search.validation_censored import (Observation, arm_text, clopper_pearson, compare,
                                                     difference_text, kaplan_meier, observe, order,
                                                     summarize_censored)
from orchestrator.search.validation_stats import NO_WINNER, sign_test_p, verdict

STABLE = "stable_certified_from"
B = 100  # the budget; every trial below evaluates at 20, 40, ..., 100, so its last evaluation is at 100


def obs(*values) -> dict[int, Observation]:
    """Seeds 0.. with these reported stable steps (B + 1 = never), last evaluation at B."""
    return {s: observe(v, B, B) for s, v in enumerate(values)}


def test_the_censoring_rule():
    assert observe(80, B, B) == Observation(80.0, True)
    assert observe(B + 1, B, B) == Observation(B, False)  # never certified: censored at the last evaluation
    assert observe(None, B, B) == Observation(B, False)
    # first stably certified at the last evaluation: nothing later tested that it held -> censored
    assert observe(B, B, B) == Observation(B, False)
    assert observe(60, 60, B) == Observation(60, False)  # stopped early at 60: its last evaluation
    # the first certified step (steps_to_certified) needs no later evaluation
    assert observe(B, B, B, needs_later_eval=False) == Observation(B, True)


@pytest.mark.parametrize("n", [1, 5, 6, 9])
def test_clopper_pearson_inside_zero_one_and_by_hand_at_the_ends(n):
    for k in range(n + 1):
        lo, hi = clopper_pearson(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
    # k = n: P(Bin(n, p) >= n) = p^n = 0.025 at the lower end; k = 0: (1 - p)^n = 0.025 at the upper end
    assert clopper_pearson(n, n) == (pytest.approx(0.025 ** (1 / n)), 1.0)
    assert clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n)))
    assert clopper_pearson(0, 0) == (None, None)


def test_kaplan_meier_median_and_restricted_mean_by_hand():
    # 6 seeds: events at 40, 60, 60; three censored at 100. S(40) = 5/6; S(60) = 5/6 x (1 - 2/5) = 1/2
    km = kaplan_meier(list(obs(40, 60, 60, 101, 101, 101).values()), B)
    assert km["median"] == 60 and km["median_reached"]
    assert km["rmst"] == pytest.approx(40 * 1 + 20 * 5 / 6 + 40 * 1 / 2)  # ∫_0^100 S
    none = kaplan_meier(list(obs(101, 101, 101).values()), B)
    assert none["median"] is None and not none["median_reached"] and none["median_above"] == B
    assert none["rmst"] == pytest.approx(B)  # the mean of min(T, B), known exactly here: not a placeholder


def test_orderings_follow_gehans_rule():
    e, c = Observation, Observation
    assert order(e(40, True), e(60, True)) == 1 and order(e(60, True), e(40, True)) == -1
    assert order(e(60, True), e(60, True)) == 0
    assert order(e(80, True), c(B, False)) == 1  # an event before the other's censoring is earlier
    assert order(c(B, False), e(80, True)) == -1
    assert order(c(B, False), c(B, False)) == 0  # both censored: tied
    assert order(e(60, True), c(50, False)) == 0  # the other stopped at 50: unknown


def test_sign_test_against_the_binomial_by_hand():
    assert sign_test_p(6, 0) == pytest.approx(2 ** -6)
    assert sign_test_p(3, 0) == pytest.approx(1 / 8)
    assert sign_test_p(4, 1) == pytest.approx((5 + 1) / 32)  # P(X >= 4), X ~ Bin(5, 1/2): (C(5,4) + C(5,5)) / 32
    assert sign_test_p(0, 0) == 1.0  # every seed tied: nothing against the null


def table() -> dict:
    """SFT never certifies; A is stably certified at 40, 60, 60 on three seeds; W at 80 on all six;
    OT is certified from the last evaluation on (100) on all six: censored, not a win."""
    return {"SFT": {STABLE: obs(*[B + 1] * 6)}, "A": {STABLE: obs(40, 60, 60, 101, 101, 101)},
            "W": {STABLE: obs(*[80] * 6)}, "OT": {STABLE: obs(*[B] * 6)}}


def test_a_censored_validation_table_against_a_hand_computation():
    s = summarize_censored(table(), "SFT", [STABLE], {a: B for a in table()})
    sft, a, w, ot = (s[k][STABLE] for k in ("SFT", "A", "W", "OT"))
    assert "value" not in sft and "vs_baseline" not in a  # no mean, no mean difference of a censored step
    assert sft["censored"]["certified_share"] == {"k": 0, "n": 6, "share": 0.0, "lo": 0.0,
                                                  "hi": pytest.approx(1 - 0.025 ** (1 / 6))}
    assert (a["censored"]["events"], a["censored"]["median"]) == (3, 60)
    a_order, w_order, ot_order = a["vs_baseline_order"], w["vs_baseline_order"], ot["vs_baseline_order"]
    # A: 3 earlier, 3 both censored; p = P(Bin(3, 1/2) >= 3) = 1/8; W: 6 earlier, p = 1/64; OT: 6 tied, p = 1
    assert (a_order["earlier"], a_order["tied"], a_order["p"]) == (3, 3, pytest.approx(1 / 8))
    assert (w_order["earlier"], w_order["p"]) == (6, pytest.approx(2 ** -6))
    assert (ot_order["earlier"], ot_order["tied"], ot_order["both_censored"], ot_order["p"]) == (0, 6, 6, 1.0)
    # Holm over 3 arms: W 3/64; A 2 x 1/8 = 1/4; OT 1
    assert (w_order["p_holm"], a_order["p_holm"], ot_order["p_holm"]) == (
        pytest.approx(3 / 64), pytest.approx(1 / 4), 1.0)
    # W: d <= 80 - 100 on every seed -> the median difference is at most -20: a bound, not an interval
    assert w_order["median_difference"] == {"lo": None, "hi": -20.0}
    # A: hi = -60, -40, -40, +inf, +inf, +inf -> median +inf: half its seeds are censored on both sides
    assert a_order["median_difference"] == {"lo": None, "hi": None}
    v = verdict(s, STABLE, "min", "SFT")
    assert v["winner"] == "W" and v["arms_compared"] == 3


def test_a_censored_difference_is_printed_as_a_bound():
    s = summarize_censored(table(), "SFT", [STABLE], {a: B for a in table()})
    w = difference_text(s["W"][STABLE]["vs_baseline_order"], "SFT")
    assert w.startswith("median paired difference ≥ 20 fewer steps (SFT censored on 6/6 seeds, this arm on 0/6)")
    assert "not bounded" in difference_text(s["A"][STABLE]["vs_baseline_order"], "SFT")
    assert "[-20" not in w and "-20.0, -20.0" not in w  # never a zero-width interval
    both = {"n": 3, "baseline_censored": 1, "arm_censored": 0,
            "median_difference": {"lo": -10.0, "hi": -10.0}}  # every seed's difference exactly known
    assert difference_text(both, "SFT").startswith("median paired difference 10 fewer steps")
    text = arm_text(s["SFT"][STABLE]["censored"], "stably certified")
    assert "on 0/6 seeds" in text and "KM median not reached (> 100)" in text


def test_the_null_identical_censored_arms_tie_on_every_seed():
    same = {"SFT": {STABLE: obs(40, 101, 80, 60, 101, 20)}, "X": {STABLE: obs(40, 101, 80, 60, 101, 20)}}
    s = summarize_censored(same, "SFT", [STABLE], {"SFT": B, "X": B})
    c = s["X"][STABLE]["vs_baseline_order"]
    assert (c["earlier"], c["later"], c["tied"], c["p"], c["p_holm"]) == (0, 0, 6, 1.0, 1.0)
    assert verdict(s, STABLE, "min", "SFT")["winner"] is None


def test_five_seeds_that_all_win_are_no_winner_among_three_arms():
    """The published case: every seed of one arm certified, SFT censored on all 5. Its exact p = 1/32 is
    below 0.05, but Holm over the 3 arms compared makes it 3/32: no winner, and no −21 [−21, −21]."""
    five = {"SFT": {STABLE: obs(*[B + 1] * 5)}, "top1": {STABLE: obs(*[80] * 5)},
            "OT": {STABLE: obs(*[B] * 5)}, "top2": {STABLE: obs(*[B + 1] * 5)}}
    s = summarize_censored(five, "SFT", [STABLE], {a: B for a in five})
    top = s["top1"][STABLE]["vs_baseline_order"]
    assert top["p"] == pytest.approx(1 / 32) and top["p_holm"] == pytest.approx(3 / 32)
    v = verdict(s, STABLE, "min", "SFT")
    assert v["winner"] is None and v["text"].startswith(NO_WINNER)


def test_a_repeated_seed_is_one_observation():
    """Observations are keyed by seed: giving seed 0's twice leaves the comparison as it was."""
    once = obs(80, 80, 101)
    twice = dict([*once.items(), (0, once[0])])
    base = obs(101, 101, 101)
    assert compare(twice, base) == compare(once, base)
    assert stats.binomtest(2, 2, alternative="greater").pvalue == compare(once, base)["p"]
