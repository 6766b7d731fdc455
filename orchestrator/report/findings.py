"""What a law sweep found, in one sentence: where verbatim recall holds, and how well the law fits the rest.

Pure: reads finished TrialRecords and the law report (orchestrator/report/law_report.py); no Ray, no torch.
`memlaw demo` ends with this sentence, so a newcomer reads the result without opening the figure.

Verbatim recall of a cell (r, ℓ) means every seed of it decoded its whole target greedily
(greedy_exact_match = 1). The capacity edge of rank r is the longest ℓ it recalls, given that it also
recalls every shorter ℓ of the grid; a rank that recalls none has no edge.

The bits figure is the mean bits above chance per parameter over the unsaturated trials (final loss
>= ln 2, the law fit's cut; orchestrator/law/grouping.py), never a maximum: the largest of many noisy
trials is the one noise favoured most, and a saturated trial stores its whole target, so its bits per
parameter measure the target's length rather than the adapter's capacity (docs/science.md §6).
"""

from __future__ import annotations

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
    """One sentence: which ranks recall which lengths verbatim, the fit on the rest, the honest bits
    (their mean over unsaturated trials)."""
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
                            else "") + ")" + _caveats(group))
        else:
            parts.append(f"no law for {label}: {fit['status']}")
        parts += _bits_part(group)
    return "Found: " + "; ".join(parts) + "."


def _caveats(group: dict[str, Any]) -> str:
    """What a reader must know before quoting the exponents: cells still rising, an offset that trades
    against them (orchestrator/law/identifiability.py, trainables/convergence.py)."""
    fit, notes = group["fit"], []
    if group.get("cells_rising"):
        notes.append(f"ΔL still rising at the budget in {group['cells_rising']} of {group['cells_ratio_known']} cells: "
                     f"not converged")
    if fit.get("identified") is False:
        notes.append(f"α and β not identified by these {fit.get('n_cells')} cells (b trades against them)")
    return "".join(f", {note}" for note in notes)


def _bits_part(group: dict[str, Any]) -> list[str]:
    """The honest bits of one group: the mean over its unsaturated trials, or why there is none."""
    unsaturated = group.get("bits_above_chance_per_param_unsaturated_mean")
    if unsaturated is None:
        if group.get("bits_above_chance_per_param_mean") is None:
            return []  # records from before the bits were measured: nothing to say
        return ["no bits figure: every trial saturated (final loss < ln 2), so none shows the capacity"]
    paper = group.get("bits_per_param_mean")
    paper_says = ("" if paper is None
                  else f" (the paper's ΔL-based figure, saturated trials included, would say {paper:.2f})")
    return [f"{unsaturated:.2f} bits above chance per parameter, the mean over unsaturated trials" + paper_says]
