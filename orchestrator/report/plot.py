"""The law figure of a sweep as one PNG: ΔL against ℓ with the fitted law, and greedy recall. No Ray.

Layout: one row of two panels per law group (records.group_label), all in the one file `out`, so a
sweep has a single figure whatever its groups:

    left   ΔL (delta_loss, nats) against ℓ (target_tokens), log-log, one colour per LoRA rank.
           Filled markers: finished trials the fit uses; hollow markers: saturated trials
           (loss_final < ln 2), which the fit leaves out (docs/science.md §5). Lines: the fitted law per
           rank (dashed for a rank whose trials all saturated), with R², α and β in the title. A
           group without an "ok" fit still shows its points, and its title says why there is no law.
    right  greedy exact match (greedy_exact_match, the fraction of sequences reproduced verbatim)
           over rank (rows) × ℓ (columns), the mean over repeats. Exact match rather than token
           accuracy because verbatim recall is what the p > 0.5 certificate promises
           (docs/science.md §2); empty cells are (rank, ℓ) pairs without a value.

Failed trials never appear. matplotlib is imported inside the functions and drives its Agg canvas
directly (no pyplot), so the CLI starts fast and plotting touches no global backend state.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from orchestrator.law.fit import LawFit
from orchestrator.law.grouping import GroupFit
from orchestrator.law.grouping import fit_groups
from orchestrator.config.sweep import FitConfig
from orchestrator.experiment.export import ExperimentRecords, read_experiment, write_output
from orchestrator.records.journal import law_rows
from orchestrator.records.trial_record import TrialRecord
from trainables import metric_names as K

LN2 = math.log(2.0)
RECALL_METRIC = K.GREEDY_EXACT_MATCH
_PANEL_INCHES = (6.0, 4.5)
_DPI = 110


@dataclass(frozen=True)
class RecallGrid:
    """Mean recall per (rank, ℓ) cell: values[i, j] belongs to ranks[i] and lengths[j]; NaN = no value."""

    ranks: tuple[float, ...]
    lengths: tuple[float, ...]
    values: np.ndarray


def plot_law(experiment_path: str, out: str, fit: FitConfig = FitConfig(),
             loaded: ExperimentRecords | None = None) -> list[str]:
    """Write the law figure of the experiment's finished trials to `out` (PNG); the paths written.
    `loaded`: the experiment already read with read_experiment (the CLI reads it once, to report damage)."""
    finished = [r for r in (loaded or read_experiment(experiment_path)).records if r.ok]
    if not finished:
        raise ValueError(f"no finished trials in {experiment_path!r}: nothing to plot")
    fits = fit_groups(law_rows(finished), capacity_variable=fit.capacity_variable, response=fit.response)
    groups: dict[str, list[TrialRecord]] = {}
    for record in finished:
        groups.setdefault(record.group, []).append(record)
    write_output(out, _render(groups, fits))
    return [out]


def recall_grid(records: list[TrialRecord], metric: str = RECALL_METRIC) -> RecallGrid:
    """Average `metric` over repeats of each (rank, ℓ); records missing rank, ℓ or the metric are skipped."""
    cols = _columns(records, (K.RANK, K.TARGET_TOKENS, metric))
    keep = np.isfinite(cols[K.RANK]) & np.isfinite(cols[K.TARGET_TOKENS])
    ranks, lengths = np.unique(cols[K.RANK][keep]), np.unique(cols[K.TARGET_TOKENS][keep])
    sums, counts = np.zeros((ranks.size, lengths.size)), np.zeros((ranks.size, lengths.size))
    for r, ell, value in zip(cols[K.RANK][keep], cols[K.TARGET_TOKENS][keep], cols[metric][keep]):
        if math.isfinite(value):
            i, j = np.searchsorted(ranks, r), np.searchsorted(lengths, ell)
            sums[i, j] += value
            counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / counts, np.nan)
    return RecallGrid(tuple(ranks.tolist()), tuple(lengths.tolist()), values)


# -- drawing ---------------------------------------------------------------------------------------


def _render(groups: dict[str, list[TrialRecord]], fits: dict[str, GroupFit]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = _PANEL_INCHES
    fig = Figure(figsize=(2 * width, height * len(groups)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for row, label in enumerate(sorted(groups)):
        _draw_law(axes[row, 0], label, groups[label], fits[label].fit)
        _draw_recall(fig, axes[row, 1], label, recall_grid(groups[label]))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _draw_law(ax, label: str, records: list[TrialRecord], fit: LawFit) -> None:
    """Points per rank (hollow when saturated), the mean ± one standard deviation over seeds where a
    cell has several, and, with an ok fit, the law as one line per rank. y is the fitted response."""
    from matplotlib.lines import Line2D

    capacity = fit.capacity_variable
    cols = _columns(records, (K.RANK, capacity, K.TARGET_TOKENS, fit.response, K.LOSS_FINAL))
    ell, delta = cols[K.TARGET_TOKENS], cols[fit.response]
    drawable = np.isfinite(cols[K.RANK]) & (ell > 0) & (delta > 0)
    ranks = np.unique(cols[K.RANK][drawable])
    colours = _rank_colours(len(ranks))
    ell_line = _line_lengths(ell[drawable])
    for rank, colour in zip(ranks, colours):
        mine = drawable & (cols[K.RANK] == rank)
        saturated = mine & (cols[K.LOSS_FINAL] < LN2)
        used = mine & ~saturated
        ax.scatter(ell[used], delta[used], color=colour, s=30, zorder=3, label=f"r = {rank:g}")
        ax.scatter(ell[saturated], delta[saturated], facecolors="none", edgecolors=colour, s=30, zorder=3)
        _draw_spread(ax, ell[mine], delta[mine], colour)
        if fit.status == "ok":
            _draw_law_line(ax, fit, float(np.median(cols[capacity][mine])), ell_line, colour,
                           extrapolated=not used.any())
    handles, labels = ax.get_legend_handles_labels()
    hollow = Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="grey",
                    label="saturated (L_final < ln 2)")
    ax.legend(handles=[*handles, hollow], fontsize=7, loc="best")
    y_label = "ΔL (nats per token)" if fit.response == K.DELTA_LOSS else "drop below chance L_ref − L_final (nats/token)"
    ax.set(xscale="log", yscale="log", xlabel="ℓ (target tokens)", ylabel=y_label)
    ax.set_title(f"{label}\n{_fit_caption(fit)}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


def _draw_spread(ax, ell: np.ndarray, y: np.ndarray, colour) -> None:
    """Error bars: mean ± one standard deviation of y over the seeds of each ℓ with two or more."""
    for value in np.unique(ell):
        cell = y[ell == value]
        if cell.size >= 2:
            ax.errorbar([value], [cell.mean()], yerr=[[min(cell.std(ddof=1), cell.mean() * 0.999)], [cell.std(ddof=1)]],
                        color=colour, capsize=3, lw=1, zorder=2)


def _draw_law_line(ax, fit: LawFit, x: float, ell: np.ndarray, colour, *, extrapolated: bool) -> None:
    """Dashed where the fit used no trial of this rank (all saturated): the line is then a prediction."""
    predicted = fit.predict(np.full_like(ell, x), ell)
    shown = predicted > 0  # a negative b can take the law below zero, which log axes cannot show
    ax.plot(ell[shown], predicted[shown], color=colour, lw=1.2, ls="--" if extrapolated else "-")


def _fit_caption(fit: LawFit) -> str:
    if fit.status != "ok":
        return f"no law: {fit.status} ({fit.n_points} usable, {fit.n_excluded} saturated)"
    x = "r" if fit.capacity_variable == K.RANK else "N_eff"
    y = "ΔL" if fit.response == K.DELTA_LOSS else "drop below chance"
    caption = (f"{y} = C·{x}^α·ℓ^(−β) + b:  R² = {_num(fit.r2, '.4f')}, α = {fit.alpha:.3f}, β = {fit.beta:.3f}, "
               f"C = {fit.C:.3g}, b = {fit.b:.3g}")
    if fit.comparable is False:
        caption += f"\nL_init {fit.init_excess:.2f} nats above chance: exponents not comparable with a base at chance"
    return caption


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _draw_recall(fig, ax, label: str, grid: RecallGrid) -> None:
    """Heatmap with small rank at the bottom (capacity grows upwards) and each cell's value written in."""
    masked = np.ma.masked_invalid(grid.values)
    image = ax.imshow(masked, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(grid.lengths)), [f"{v:g}" for v in grid.lengths], rotation=45, fontsize=8)
    ax.set_yticks(range(len(grid.ranks)), [f"{v:g}" for v in grid.ranks], fontsize=8)
    for (i, j), value in np.ndenumerate(grid.values):
        if math.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 else "white")
    ax.set(xlabel="ℓ (target tokens)", ylabel="LoRA rank r")
    ax.set_title(f"{label}\ngreedy exact match (mean over repeats)", fontsize=9)
    fig.colorbar(image, ax=ax, label=RECALL_METRIC)


def _rank_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


def _line_lengths(ell: np.ndarray) -> np.ndarray:
    """60 log-spaced ℓ over the plotted range, for smooth law lines."""
    if ell.size == 0:
        return np.array([])
    return np.geomspace(ell.min(), ell.max(), 60) if ell.max() > ell.min() else np.array([ell.min()])


# -- data ------------------------------------------------------------------------------------------


def _columns(records: list[TrialRecord], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Float arrays of the metrics `keys`; missing or non-numeric values become NaN."""
    return {key: np.array([_number(r.metrics.get(key)) for r in records], dtype=float) for key in keys}


def _number(value) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan
