"""The figure of a search (an Optuna sweep over training methods): what it found, not a law. No Ray.

A search has no rank × ℓ grid, so `memlaw plot` drew four empty "no law" panels for one (issue 25
item 4). Its figure is one PNG `out` with three panels:

    front       two objectives: every finished trial at (y_1, y_2), one colour per method; the Pareto
                front (best_trials.rank_trials, as `memlaw best` prints it) ringed and joined, each
                front point labelled by its knob set. One objective: the value per trial, in order.
    history     each objective's value in the order the trials finished (the journal's order), with
                the best so far as a step line: whether the search was still improving at its end.
    importance  Optuna's fANOVA importance of each searched parameter for each objective
                (optuna.importance.get_param_importances on the experiment's study), as bars. Optuna
                computes it over the parameters every trial has (a conditional knob such as MemFT's
                mix is left out); where it cannot be computed the panel says why.

Optuna's own matplotlib plots draw through pyplot (global state) and would show repeated knob sets
the search answered without training (orchestrator/tune/optuna_study.py); the front and history
here are drawn from memlaw's records, the trials that trained, as `memlaw best` reads them.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Sequence

from orchestrator.experiment.export import ExperimentRecords, write_output
from orchestrator.experiment.folder import OPTUNA_FILE
from orchestrator.records.trial_record import TrialRecord
from orchestrator.search.best_trials import EVENT_STEPS, Ranked, knob_text, rank_trials
from trainables import metric_names as K

_DPI = 110


def plot_search(experiment_path: str, out: str, metrics: Sequence[str], modes: Sequence[str],
                loaded: ExperimentRecords, study_name: str) -> list[str]:
    """Write the search figure to `out` (PNG); the paths written."""
    records = [r for r in loaded.records if r.ok]
    ranked = rank_trials(records, metrics, modes)
    if not ranked:
        raise ValueError(f"no finished trial of {experiment_path!r} has every objective ({', '.join(metrics)}): "
                         "nothing to plot")
    buffer = io.BytesIO()
    search_figure(records, ranked, metrics, modes, importances(experiment_path, study_name, metrics)).savefig(
        buffer, format="png", dpi=_DPI)
    write_output(out, buffer.getvalue())
    return [out]


def importances(experiment_path: str, study_name: str, metrics: Sequence[str]) -> dict[str, dict[str, float] | str]:
    """{objective: {parameter: importance}} from the study, or {objective: why not}. Reads only: a
    missing journal is not created (JournalFileBackend opens its file for appending)."""
    path = os.path.join(experiment_path, OPTUNA_FILE)
    if not os.path.isfile(path):
        return {m: f"no Optuna study at {path}" for m in metrics}
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=study_name, storage=JournalStorage(JournalFileBackend(path)))
    out: dict[str, dict[str, float] | str] = {}
    finished = [t for t in study.trials if t.values is not None]
    for j, metric in enumerate(metrics):
        if len({t.values[j] for t in finished}) < 2:  # fANOVA would split a constant evenly: no information
            out[metric] = f"not computable: every finished trial has the same {metric}"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning and friends: the panel says what it is
                out[metric] = optuna.importance.get_param_importances(study, target=lambda t, j=j: t.values[j])
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            out[metric] = f"not computable: {err}"
    return out


def search_figure(records: list[TrialRecord], ranked: list[Ranked], metrics: Sequence[str], modes: Sequence[str],
                  importance: dict[str, dict[str, float] | str]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(18.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    front_ax, history_ax, importance_ax = fig.subplots(1, 3)
    _draw_front(front_ax, ranked, metrics, modes)
    _draw_history(history_ax, records, metrics, modes)
    _draw_importance(importance_ax, importance)
    fig.suptitle(f"search over {len(records)} finished trials: " + ", ".join(
        f"{m} ({'max' if mode == 'max' else 'min'})" for m, mode in zip(metrics, modes)))
    return fig


def _method_colours(ranked: Sequence[Ranked]) -> dict[str, object]:
    from matplotlib import colormaps

    names = sorted({r.knobs["method.name"] for r in ranked})
    return {name: colormaps["tab10"](i % 10) for i, name in enumerate(names)}


def _draw_front(ax, ranked: list[Ranked], metrics: Sequence[str], modes: Sequence[str]) -> None:
    colours = _method_colours(ranked)
    if len(metrics) == 1:
        for i, r in enumerate(ranked):
            ax.bar(i, r.values[0], color=colours[r.knobs["method.name"]])
        ax.set(xlabel="trials, best first", ylabel=metrics[0], title=f"best trials ({modes[0]})")
    else:
        for name, colour in colours.items():
            label = name
            for bound in (False, True):  # a censored step (never certified) is a bound: drawn as '^' at it
                pts = [r.values[:2] for r in ranked if r.knobs["method.name"] == name and _censored(r, metrics) == bound]
                if pts:
                    ax.scatter(*zip(*pts), color=colour, label=label, s=40 if bound else 30,
                               marker="^" if bound else "o", gid="censored" if bound else None)
                    label = None
        front = sorted((r for r in ranked if r.front == 0), key=lambda r: r.values[0])
        ax.plot([r.values[0] for r in front], [r.values[1] for r in front], color="0.3", lw=1, gid="pareto-front")
        ax.scatter([r.values[0] for r in front], [r.values[1] for r in front], facecolors="none", edgecolors="k",
                   s=120, lw=1.2)
        for r in front:
            ax.annotate(knob_text(r.knobs), r.values[:2], fontsize=7, xytext=(4, 4), textcoords="offset points")
        censored = sum(_censored(r, metrics) for r in ranked)
        ax.set(xlabel=f"{metrics[0]} ({modes[0]})", ylabel=f"{metrics[1]} ({modes[1]})"
               + ("\n^: not reached within the budget, drawn at budget + 1 (a bound)" if censored else ""),
               title=f"Pareto front: {len(front)} of {len(ranked)} trials (ringed)")
    ax.legend(fontsize=8, title="method")


def _censored(r: Ranked, metrics: Sequence[str]) -> bool:
    """Whether the second objective is a step to an event the trial never reached (budget + 1)."""
    last = r.metrics.get(K.STEP)
    return (len(metrics) > 1 and metrics[1] in EVENT_STEPS and isinstance(last, (int, float))
            and r.values[1] > last)


def _draw_history(ax, records: list[TrialRecord], metrics: Sequence[str], modes: Sequence[str]) -> None:
    for j, (metric, mode) in enumerate(zip(metrics, modes)):
        values = [r.metrics.get(metric) for r in records]
        points = [(i + 1, v) for i, v in enumerate(values) if isinstance(v, (int, float))]
        if not points:
            continue
        target = ax if j == 0 else ax.twinx()
        colour = f"C{j}"
        xs, ys = zip(*points)
        target.scatter(xs, ys, color=colour, s=18, label=metric)
        best, run = [], None
        for y in ys:
            run = y if run is None else (max(run, y) if mode == "max" else min(run, y))
            best.append(run)
        target.step(xs, best, where="post", color=colour, lw=1.2)
        target.set_ylabel(f"{metric} ({mode}; line: best so far)", color=colour)
    ax.set(xlabel="trial, in the order it finished", title="history")


def _draw_importance(ax, importance: dict[str, dict[str, float] | str]) -> None:
    notes, bars = [], []
    for metric, found in importance.items():
        if isinstance(found, str):
            notes.append(f"{metric}: {found}")
        else:
            bars.extend((f"{name}\n[{metric}]", value) for name, value in found.items())
    if bars:
        labels, values = zip(*bars)
        ax.barh(range(len(values)), values, color="C2")
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.invert_yaxis()
    ax.set(xlabel="fANOVA importance (Optuna, over the parameters every trial has)", title="parameter importance")
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="bottom", wrap=True)
