"""The demo's one-sentence finding (orchestrator/report/findings.py) from hand-made records: pure, milliseconds."""

from __future__ import annotations

import pytest

from orchestrator.report.findings import finding, recall_edges
from orchestrator.records.trial_record import TrialRecord
from trainables import metric_names as K


def rec(i: int, rank: int, ell: int, exact: float, status: str = "ok") -> TrialRecord:
    return TrialRecord(f"t{i}", "s", status, {}, {K.RANK: rank, K.TARGET_TOKENS: ell, K.GREEDY_EXACT_MATCH: exact})


def test_the_edge_is_the_longest_length_every_seed_recalls_with_all_shorter_ones():
    records = [rec(0, 8, 64, 1.0), rec(1, 8, 64, 1.0), rec(2, 8, 128, 1.0), rec(3, 8, 128, 0.0),  # one seed failed
               rec(4, 16, 64, 1.0), rec(5, 16, 128, 1.0), rec(6, 16, 256, 0.0), rec(7, 16, 512, 1.0),
               rec(8, 2, 64, 0.0), rec(9, 4, 64, 1.0, status="error")]  # a failed trial never counts
    assert recall_edges(records) == {2.0: None, 8.0: 64.0, 16.0: 128.0}


def test_the_sentence_names_the_edges_the_fit_and_the_honest_bits_first():
    records = [rec(0, 8, 64, 1.0), rec(1, 2, 64, 0.0)]
    report = {"groups": {"g": {"fit": {"status": "ok", "n_points": 14, "r2": 0.9931, "alpha": 0.35, "beta": 0.27,
                                       "response": K.DELTA_LOSS, "comparable": False},
                               "bits_above_chance_per_param_mean": 0.48, "bits_above_chance_per_param_max": 0.76,
                               "bits_above_chance_per_param_unsaturated_mean": 0.31, "bits_per_param_mean": 1.0}}}
    text = finding(records, report)
    assert text.startswith("Found: verbatim recall (every seed, greedy exact) at r = 8 up to ℓ = 64; none at r = 2")
    assert "R² 0.993 (α 0.35, β 0.27, L_init above chance: not comparable with a base at chance)" in text
    assert "0.31 bits above chance per parameter, the mean over unsaturated trials" in text
    assert text.index("bits above chance") < text.index("the paper's ΔL-based")
    assert text.endswith(".") and text.count("\n") == 0


def test_the_bits_are_the_mean_over_unsaturated_trials_never_a_maximum():
    """From real grouping: two unsaturated trials (final loss >= ln 2) and one saturated one whose bits per
    parameter are the largest. The sentence gives the mean of the two, not the maximum, not the overall mean."""
    from orchestrator.law.grouping import fit_groups

    def row(rank: int, final: float, bits: float) -> dict:
        return {"group": "g", K.RANK: rank, K.TRAINABLE_PARAMS: 256 * rank, K.TARGET_TOKENS: 64, K.DELTA_LOSS: 1.0,
                K.LOSS_FINAL: final, K.LOSS_INIT: 8.0, K.LOSS_CHANCE: 6.2, K.BITS_PER_PARAM: 2.0,
                K.BITS_ABOVE_CHANCE_PER_PARAM: bits, K.CERTIFIED_BITS_PER_PARAM: 0.0}

    rows = [row(1, 3.0, 0.2), row(2, 0.7, 0.4), row(4, 0.5, 0.9)]  # ln 2 = 0.693: the last one is saturated
    group = fit_groups(rows)["g"].to_dict()
    assert group["bits_above_chance_per_param_unsaturated_mean"] == pytest.approx(0.3)
    text = finding([], {"groups": {"g": group}})
    assert "0.30 bits above chance per parameter, the mean over unsaturated trials" in text
    assert "0.90" not in text and "0.50" not in text and "at most" not in text


def test_a_group_with_every_trial_saturated_says_so():
    report = {"groups": {"g": {"fit": {"status": "all_saturated"}, "bits_above_chance_per_param_mean": 0.9,
                               "bits_above_chance_per_param_unsaturated_mean": None, "bits_per_param_mean": 1.0}}}
    text = finding([rec(0, 8, 64, 1.0)], report)
    assert "no bits figure: every trial saturated (final loss < ln 2)" in text and "0.90" not in text


def test_no_recall_and_no_fit_are_said_plainly():
    report = {"groups": {"g": {"fit": {"status": "too_few_points"}}}}
    text = finding([rec(0, 2, 64, 0.0)], report)
    assert "no cell recalled its target verbatim" in text and "no law for g: too_few_points" in text


def test_the_sentence_says_when_the_exponents_are_not_converged_or_not_identified():
    fit = {"status": "ok", "n_points": 16, "n_cells": 8, "r2": 0.99, "alpha": 0.34, "beta": 0.24,
           "response": K.DELTA_LOSS, "identified": False}
    group = {"fit": fit, "cells_rising": 5, "cells_ratio_known": 8}
    text = finding([], {"groups": {"g": group}})
    assert ("(α 0.34, β 0.24), ΔL still rising at the budget in 5 of 8 cells: not converged, α and β not identified "
            "by these 8 cells (b trades against them)") in text
    settled = finding([], {"groups": {"g": {**group, "cells_rising": 0, "fit": {**fit, "identified": True}}}})
    assert settled.endswith("(α 0.34, β 0.24).") and "not converged" not in settled and "identified" not in settled
