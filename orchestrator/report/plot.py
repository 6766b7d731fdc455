"""The law figure of a sweep as one PNG: ΔL against ℓ with the fitted law, and greedy recall. No Ray.

Layout: one row of two panels per law group (the fit's groups: records.law_group_labels), all in the
one file `out`, so a sweep has a single figure whatever its groups. Titles name a group in words
(records.group_title: "tiny-s, random tokens, paper placement, SFT"), log ticks read as plain numbers.

    left   ΔL (delta_loss, nats) against ℓ (target_tokens), log-log, one colour per LoRA rank.
           Filled markers: finished trials the fit uses; hollow markers: saturated trials
           (loss_final < ln 2), which the fit leaves out (docs/science.md §5). Lines: the fitted law per
           rank, solid over the ℓ the fit used at that rank, dashed and faded beyond (extrapolation: all
           of it for a rank whose trials all saturated), and never above the group's largest L_init
           (dotted): ΔL = L_init − L_final cannot exceed L_init, so a law extrapolated into saturated
           cells is cut off there rather than drawn where no trial can be. R², α and β in the title. A
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
from typing import TYPE_CHECKING

import numpy as np

from orchestrator.config.sweep import FitConfig
from orchestrator.experiment.export import ExperimentRecords, read_experiment, write_output
from orchestrator.law.fit import LN2, LawFit
from orchestrator.law.grouping import fit_groups
from orchestrator.records.journal import law_rows
from orchestrator.records.trial_record import TrialRecord, group_title, law_group_labels
from trainables import metric_names as K

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RECALL_METRIC = K.GREEDY_EXACT_MATCH
_PANEL_INCHES = (6.0, 4.5)
_DPI = 110
#: The gid of each law line's two parts, so a reader of the figure (the tests) can tell them apart.
FITTED_GID, EXTRAPOLATED_GID = "law-fitted", "law-extrapolated"


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
    buffer = io.BytesIO()
    law_figure(finished, fit).savefig(buffer, format="png", dpi=_DPI)
    write_output(out, buffer.getvalue())
    return [out]


def law_figure(finished: list[TrialRecord], fit: FitConfig = FitConfig()) -> Figure:
    """The figure of these finished records (a matplotlib Figure on an Agg canvas): what plot_law
    saves, returned whole so that its lines and labels can be read back. Records are grouped by the
    fit's own labels (law_group_labels), so each panel shows exactly the trials its law was fitted on."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fits = fit_groups(law_rows(finished), capacity_variable=fit.capacity_variable, response=fit.response)
    groups: dict[str, list[TrialRecord]] = {}
    for record, label in zip(finished, law_group_labels([r.config for r in finished])):
        groups.setdefault(label, []).append(record)
    width, height = _PANEL_INCHES
    fig = Figure(figsize=(2 * width, height * len(groups)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for row, label in enumerate(sorted(groups)):
        _draw_law(axes[row, 0], group_title(label), groups[label], fits[label].fit)
        _draw_recall(fig, axes[row, 1], group_title(label), recall_grid(groups[label]))
    return fig


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


def _draw_law(ax, title: str, records: list[TrialRecord], fit: LawFit) -> None:
    """Points per rank (hollow when saturated), the mean ± one standard deviation over seeds where a
    cell has several, and, with an ok fit, the law as one line per rank. y is the fitted response."""
    from matplotlib.lines import Line2D

    capacity = fit.capacity_variable
    ceiling_key, ceiling_name, y_name = ((K.LOSS_INIT, "L_init", "ΔL") if fit.response == K.DELTA_LOSS
                                         else (K.LOSS_REF, "L_ref", "drop"))
    cols = _columns(records, (K.RANK, capacity, K.TARGET_TOKENS, fit.response, K.LOSS_FINAL, ceiling_key))
    ell, delta = cols[K.TARGET_TOKENS], cols[fit.response]
    drawable = np.isfinite(cols[K.RANK]) & (ell > 0) & (delta > 0)
    ranks = np.unique(cols[K.RANK][drawable])
    colours = _rank_colours(len(ranks))
    ell_line = _line_lengths(ell[drawable])
    ceilings = cols[ceiling_key][drawable & np.isfinite(cols[ceiling_key])]
    ceiling = float(ceilings.max()) if ceilings.size else math.inf  # y = ceiling − L_final <= ceiling
    for rank, colour in zip(ranks, colours):
        mine = drawable & (cols[K.RANK] == rank)
        saturated = mine & (cols[K.LOSS_FINAL] < LN2)
        # What fit_law used (fit._usable_records): unsaturated, with a positive finite capacity.
        used = mine & (cols[K.LOSS_FINAL] >= LN2) & (cols[capacity] > 0) & np.isfinite(cols[capacity])
        ax.scatter(ell[used], delta[used], color=colour, s=30, zorder=3, label=f"r = {rank:g}")
        ax.scatter(ell[saturated], delta[saturated], facecolors="none", edgecolors=colour, s=30, zorder=3)
        _draw_spread(ax, ell[mine], delta[mine], colour)
        if fit.status == "ok":
            fitted = (float(ell[used].min()), float(ell[used].max())) if used.any() else None
            _draw_law_line(ax, fit, float(np.median(cols[capacity][mine])), ell_line, colour, fitted, ceiling)
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="grey",
                          label="saturated (L_final < ln 2)"))
    if fit.status == "ok":
        handles += [Line2D([], [], color="grey", lw=1.4, label="law, over the fitted ℓ"),
                    Line2D([], [], color="grey", lw=1.0, ls="--", alpha=0.5, label="law, extrapolated")]
    if math.isfinite(ceiling):
        handles.append(ax.axhline(ceiling, color="grey", ls=":", lw=1.0,
                                  label=f"largest {ceiling_name} = {ceiling:.2f} ({y_name} ≤ {ceiling_name})"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    y_label = "ΔL (nats per token)" if fit.response == K.DELTA_LOSS else "drop below chance L_ref − L_final (nats/token)"
    ax.set(xscale="log", yscale="log", xlabel="ℓ (target tokens)", ylabel=y_label)
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    ax.set_title(f"{title}\n{_fit_caption(fit)}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


def _draw_spread(ax, ell: np.ndarray, y: np.ndarray, colour) -> None:
    """Error bars: mean ± one standard deviation of y over the seeds of each ℓ with two or more."""
    for value in np.unique(ell):
        cell = y[ell == value]
        if cell.size >= 2:
            ax.errorbar([value], [cell.mean()], yerr=[[min(cell.std(ddof=1), cell.mean() * 0.999)], [cell.std(ddof=1)]],
                        color=colour, capsize=3, lw=1, zorder=2)


def _draw_law_line(ax, fit: LawFit, x: float, ell: np.ndarray, colour, fitted: tuple[float, float] | None,
                   ceiling: float) -> None:
    """The law at capacity x: solid over `fitted` (the ℓ range the fit used at this rank), dashed and
    faded outside it, where it is a prediction (all of it when `fitted` is None: every trial of the rank
    saturated). Cut (a gap, not clipped flat, which would read as a measured plateau) wherever it
    leaves (0, ceiling]: above the largest L_init no trial can be, and log axes cannot show y <= 0
    (a negative b can take the law there)."""
    if ell.size == 0:
        return
    if fitted is not None:
        ell = np.union1d(ell, fitted)  # the solid piece starts and ends exactly on the fitted ℓ
    predicted = np.asarray(fit.predict(np.full_like(ell, x), ell), dtype=float)
    shown = np.where((predicted > 0) & (predicted <= ceiling), predicted, np.nan)
    strictly_inside = np.zeros(ell.shape, bool) if fitted is None else (ell > fitted[0]) & (ell < fitted[1])
    ax.plot(ell, np.where(strictly_inside, np.nan, shown), color=colour, lw=1.0, ls="--", alpha=0.5,
            gid=EXTRAPOLATED_GID)  # the fitted range's ends stay on it, so the two parts join
    if fitted is not None:
        inside = (ell >= fitted[0]) & (ell <= fitted[1])
        ax.plot(ell[inside], shown[inside], color=colour, lw=1.4, gid=FITTED_GID)


def _plain_log_ticks(axis) -> None:
    """Log-axis tick labels as plain numbers (6, 20, 0.5, 1000), not matplotlib's mathtext 6×10⁰:
    which ticks get a label stays matplotlib's LogFormatter choice (the decades, and some minor ticks
    when the axis spans about a decade or less), only the text changes."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def __call__(self, x, pos=None):
            return _plain_number(x) if super().__call__(x, pos) else ""

    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter())


def _plain_number(x: float) -> str:
    """6 -> "6", 0.05 -> "0.05", 100000 -> "100000": positional, six significant digits at most."""
    return str(np.format_float_positional(float(f"{x:.6g}"), trim="-"))


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


def _draw_recall(fig, ax, title: str, grid: RecallGrid) -> None:
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
    ax.set_title(f"{title}\ngreedy exact match (mean over repeats)", fontsize=9)
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
