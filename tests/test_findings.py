"""The demo's one-sentence finding (orchestrator/report/findings.py) from hand-made records: pure, milliseconds."""

from __future__ import annotations

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
                               "bits_per_param_mean": 1.0}}}
    text = finding(records, report)
    assert text.startswith("Found: verbatim recall (every seed, greedy exact) at r = 8 up to ℓ = 64; none at r = 2")
    assert "R² 0.993 (α 0.35, β 0.27, L_init above chance: not comparable with a base at chance)" in text
    assert text.index("bits above chance") < text.index("the paper's ΔL-based")
    assert text.endswith(".") and text.count("\n") == 0


def test_no_recall_and_no_fit_are_said_plainly():
    report = {"groups": {"g": {"fit": {"status": "too_few_points"}}}}
    text = finding([rec(0, 2, 64, 0.0)], report)
    assert "no cell recalled its target verbatim" in text and "no law for g: too_few_points" in text
