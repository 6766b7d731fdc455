"""What a law sweep found, in one sentence: where verbatim recall holds, and how well the law fits the rest.

Pure: reads finished TrialRecords and the law report (orchestrator/report/law_report.py); no Ray, no torch.
`memlaw demo` ends with this sentence, so a newcomer reads the result without opening the figure.

Verbatim recall of a cell (r, ℓ) means every seed of it decoded its whole target greedily
(greedy_exact_match = 1). The capacity edge of rank r is the longest ℓ it recalls, given that it also
recalls every shorter ℓ of the grid; a rank that recalls none has no edge.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from orchestrator.records.trial_record import TrialRecord
from trainables import metric_names as K


def recall_edges(records: Iterable[TrialRecord]) -> dict[float, float | None]:
    """Per rank: the longest ℓ recalled verbatim by every seed at that ℓ and all shorter ones; None if none."""
    cells: dict[tuple[float, float], list[float]] = {}
    for r in records:
        rank, ell, exact = (r.metrics.get(k) for k in (K.RANK, K.TARGET_TOKENS, K.GREEDY_EXACT_MATCH))
        if r.ok and rank is not None and ell is not None and exact is not None:
            cells.setdefault((float(rank), float(ell)), []).append(float(exact))
    edges: dict[float, float | None] = {}
    for rank in sorted({k[0] for k in cells}):
        edge = None
        for ell in sorted(e for (r, e) in cells if r == rank):
            if min(cells[(rank, ell)]) < 1.0:
                break
            edge = ell
        edges[rank] = edge
    return edges


def finding(records: Iterable[TrialRecord], report: dict[str, Any]) -> str:
    """One sentence: which ranks recall which lengths verbatim, the fit on the rest, the honest bits."""
    records = list(records)
    edges = recall_edges(records)
    recalled = [f"r = {rank:g} up to ℓ = {edge:g}" for rank, edge in edges.items() if edge is not None]
    none = [rank for rank, edge in edges.items() if edge is None]
    parts = []
    if recalled:
        parts.append("verbatim recall (every seed, greedy exact) at " + ", ".join(recalled))
    else:
        parts.append("no cell recalled its target verbatim")
    if none and recalled:
        parts.append(f"none at r = {', '.join(f'{r:g}' for r in none)}")
    for label, group in report.get("groups", {}).items():
        fit = group["fit"]
        if fit["status"] == "ok":
            symbol = "ΔL" if fit.get("response", K.DELTA_LOSS) == K.DELTA_LOSS else "the drop below chance"
            parts.append(f"the law fits {symbol} of the {fit['n_points']} unsaturated trials with R² {fit['r2']:.3f} "
                         f"(α {fit['alpha']:.2f}, β {fit['beta']:.2f}"
                         + (", L_init above chance: not comparable with a base at chance" if fit.get("comparable") is False
                            else "") + ")")
        else:
            parts.append(f"no law for {label}: {fit['status']}")
        mean, best = group.get("bits_above_chance_per_param_mean"), group.get("bits_above_chance_per_param_max")
        if mean is not None and best is not None and math.isfinite(best):
            paper = group.get("bits_per_param_mean")
            parts.append(f"{mean:.2f} bits above chance per parameter on average, {best:.2f} at most"
                         + ("" if paper is None else f" (the paper's ΔL-based figure would say {paper:.2f})"))
    return "Found: " + "; ".join(parts) + "."
