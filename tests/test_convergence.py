"""Convergence, measured (issue 23.4): ΔL at half the budget, the ratio, the budget ladder's
recommendation, and the law's count of cells still rising. Pure: milliseconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.law.grouping import fit_groups
from orchestrator.report.law_report import convergence_line
from trainables import metric_names as K
from trainables.convergence import RISING_RATIO, ConvergenceTrack, ratio, recommend_budget, still_rising


def test_the_half_budget_delta_is_the_last_evaluation_at_or_before_half():
    track = ConvergenceTrack()
    budget, out = 150, {}
    for step, delta in ((50, 2.0), (100, 3.0), (150, 3.3)):  # T/2 = 75: the evaluation at 50 is the half
        out = track.observe(step, delta, budget)
    assert out[K.DELTA_LOSS_HALF] == 2.0 and out[K.DELTA_LOSS_HALF_STEP] == 50
    assert out[K.CONVERGENCE_RATIO] == pytest.approx(3.3 / 2.0)


def test_a_resumed_track_reports_what_an_uninterrupted_one_does():
    whole, first = ConvergenceTrack(), ConvergenceTrack()
    trace = [(10, 1.0), (20, 1.5), (30, 1.6), (40, 1.62)]
    for step, delta in trace[:2]:
        first.observe(step, delta, 40)
    resumed = ConvergenceTrack.from_dict(first.to_dict())
    for (step, delta) in trace:
        expected = whole.observe(step, delta, 40)
    for step, delta in trace[2:]:
        got = resumed.observe(step, delta, 40)
    assert got == expected and got[K.CONVERGENCE_RATIO] == pytest.approx(1.62 / 1.5)
    assert ConvergenceTrack.from_dict(None) == ConvergenceTrack()  # a checkpoint from before the track


@pytest.mark.parametrize("final, half, expected", [(3.0, 2.0, 1.5), (2.0, 0.0, None), (2.0, -1.0, None),
                                                   (2.0, None, None), (math.nan, 1.0, None)])
def test_ratio_needs_a_loss_that_fell(final, half, expected):
    assert ratio(final, half) == expected


def test_still_rising_is_the_five_percent_rule():
    assert still_rising(RISING_RATIO + 1e-9) is True and still_rising(RISING_RATIO) is False
    assert still_rising(None) is None


def test_the_ladder_recommends_the_smallest_budget_the_next_rung_no_longer_moves():
    """The issue's SmolLM2 cell r = 1, ℓ = 64: 6.22, 9.91, 11.28 at 150, 300, 600 (+59 %, +14 %): none
    settles; with 1200 at 11.60 (+2.8 % over 600) the answer is 600."""
    ladder = {150: 6.22, 300: 9.91, 600: 11.28}
    assert recommend_budget(ladder) is None
    assert recommend_budget({**ladder, 1200: 11.60}) == 600
    assert recommend_budget({100: 1.0, 200: 1.04, 400: 1.3}) == 100  # the first settled pair decides


def _rows(ratios):
    """A 3 × 3 grid from a law, one row per cell with the given convergence ratio (None: unknown)."""
    rows = []
    for i, (r, ell) in enumerate((r, ell) for r in (1, 2, 4) for ell in (64, 128, 256)):
        delta = 2.0 * r ** 0.7 * ell ** -0.5 + 0.05
        rows.append({"group": "g", K.RANK: r, K.TRAINABLE_PARAMS: 100 * r, K.TARGET_TOKENS: ell,
                     K.DELTA_LOSS: delta, K.LOSS_FINAL: 3.0, K.LOSS_INIT: 3.0 + delta,
                     K.CONVERGENCE_RATIO: ratios[i]})
    return rows


def test_the_law_counts_the_cells_still_rising_and_says_so():
    ratios = [1.2, 1.01, 1.0, 1.3, None, 1.0, 1.0, 1.0, 1.06]
    group = fit_groups(_rows(ratios))["g"]
    assert (group.cells_rising, group.cells_ratio_known) == (3, 8)
    line = convergence_line(group.to_dict())
    assert line.startswith("convergence: 3 of 8 fitted cells still rising") and "not converged" in line
    settled = fit_groups(_rows([1.0] * 9))["g"]
    assert convergence_line(settled.to_dict()) == f"convergence: all 9 fitted cells settled (ΔL(T)/ΔL(T/2) <= {RISING_RATIO})"


def test_a_cells_replicates_vote_by_their_median():
    rows = _rows([1.0] * 9)
    slow = dict(rows[0], **{K.CONVERGENCE_RATIO: 1.5})
    group = fit_groups([*rows, slow, dict(rows[0])])["g"]  # cell (1, 64): ratios 1.0, 1.5, 1.0
    assert group.cells_rising == 0 and group.cells_ratio_known == 9
    assert np.isfinite(group.fit.alpha)


def test_memlaw_law_reads_a_budget_ladder_and_recommends_the_budget_every_cell_settled_by():
    """A fixed trace: cell r = 2 settles at 400 (ΔL 4.0, 4.6, 4.75, 4.8), cell r = 16 at 200; the
    ladder recommends 400. Without the last rung of r = 2 nothing is recommended."""
    from orchestrator.records.trial_record import record_from_result
    from orchestrator.report.law_report import build_report, format_report
    from test_records import config, result

    trace = {2: {200: 4.0, 400: 4.6, 800: 4.75, 1600: 4.8}, 16: {200: 8.0, 400: 8.2, 800: 8.25, 1600: 8.26}}
    records = []
    for rank, ladder in trace.items():
        for steps, delta in ladder.items():
            cfg = config(rank, 256)
            cfg["budget"]["steps"] = steps
            records.append(record_from_result(f"r{rank}-{steps}", "ladder", cfg, result(rank, 256, delta)))
    report = build_report("ladder", records)
    facts = report["budget_ladder"]["tiny-s|random|0|paper|sft"]
    assert [c["recommended"] for c in facts["cells"]] == [400, 200] and facts["recommended"] == 400
    text = format_report(report)
    assert "r = 2, ℓ = 256:   200: 4   400: 4.6   800: 4.75   1600: 4.8   -> settled at 400" in text
    assert "recommended budget: 400 steps" in text
    assert all(label.endswith(f"budget.steps={s}") for label, s in zip(sorted(report["groups"]),
                                                                    sorted(map(str, trace[2]))))
    short = [r for r in records if not (r.metrics[K.RANK] == 2 and r.config["budget"]["steps"] >= 800)]
    assert "recommended budget: none in this ladder" in format_report(build_report("ladder", short))
