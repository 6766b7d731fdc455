"""The budget a law map needs, read from a ladder of budgets (examples/convergence_tiny.yaml).

A ladder runs the same cells (corner cells of the intended map: the lowest rank with the longest
target converges last) at budgets T_1 < T_2 < ...; each budget is its own law group, since trials
that differ in budget.steps are never pooled (orchestrator/records/trial_record.py POOLING_FIELDS).
Per cell, ΔL is the median over its replicates at each budget, and trainables/convergence.py's
recommend_budget names the smallest T whose next rung moves ΔL by at most 5 %. The ladder's
recommendation is the largest of its cells' (every cell must have settled); a cell that never
settles makes it "none in this ladder", said with the cell. Pure: no Ray.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable

from orchestrator.records.trial_record import TrialRecord, group_label
from trainables import metric_names as K
from trainables.convergence import RISING_RATIO, recommend_budget


def ladders(records: Iterable[TrialRecord]) -> dict[str, dict[str, Any]]:
    """Per base group label with finished trials at two or more budgets: each cell's ΔL by budget,
    its recommended budget, and the ladder's. Empty when no group has a ladder (the usual sweep)."""
    by_label: dict[str, dict[tuple[float, float], dict[int, list[float]]]] = {}
    for r in records:
        steps = (r.config.get("budget") or {}).get("steps")
        delta, rank, ell = (r.metrics.get(k) for k in (K.DELTA_LOSS, K.RANK, K.TARGET_TOKENS))
        if not r.ok or None in (steps, delta, rank, ell):
            continue
        cell = by_label.setdefault(group_label(r.config), {}).setdefault((rank, ell), {})
        cell.setdefault(int(steps), []).append(float(delta))
    out = {}
    for label, cells in by_label.items():
        if len({s for ladder in cells.values() for s in ladder}) < 2:
            continue
        rows = []
        for (rank, ell), ladder in sorted(cells.items()):
            medians = {s: statistics.median(v) for s, v in sorted(ladder.items())}
            rows.append({"rank": rank, "target_tokens": ell, "delta_loss": medians,
                         "recommended": recommend_budget(medians)})
        chosen = [row["recommended"] for row in rows]
        out[label] = {"cells": rows, "recommended": None if None in chosen else max(chosen)}
    return out


def ladder_lines(ladder: dict[str, dict[str, Any]]) -> list[str]:
    """What `memlaw law` prints for each ladder: ΔL per budget per cell, and the budget to use."""
    lines = []
    for label, facts in ladder.items():
        lines.append(f"  budget ladder, {label}: ΔL (median over replicates) by budget.steps")
        for row in facts["cells"]:
            rungs = "   ".join(f"{s}: {d:.3g}" for s, d in row["delta_loss"].items())
            settled = row["recommended"]
            verdict = (f"settled at {settled} (the next rung moves ΔL ≤ {RISING_RATIO - 1:.0%})" if settled is not None
                       else "not settled in this ladder")
            lines.append(f"    r = {row['rank']:g}, ℓ = {row['target_tokens']:g}:   {rungs}   -> {verdict}")
        best = facts["recommended"]
        lines.append(f"    recommended budget: {best} steps (every cell settled by it)" if best is not None else
                     "    recommended budget: none in this ladder (a cell never settled): extend it, or label ΔL "
                     "\"at T steps\"")
    return lines
