"""What a sweep prints in its terminal, as text. Pure: no Ray, no Tune.

    start_block(...)        one block at start: the experiment folder, Ray's address, the dashboard,
                            how to ask the live law from another shell
    trial_line(...)         one line per finished trial: k/n, its name and metrics (a grid: rank x ℓ,
                            dL, certified share, greedy exact match; a search: its knob set and
                            objectives), its status, elapsed and an ETA
    fit_line(report)        one line per group of the current fit (alpha, beta with 95 % intervals,
                            R^2, points): printed by the driver as the fit moves, and logged by the
                            results actor per refit (the dashboard shows it under the actor's logs)
    trial_table(records)    the end-of-sweep table of every trial, rank x ℓ sorted

ETA: (n - k) trials at the rate this run has finished them (k_run / elapsed), so a resumed
sweep's earlier trials do not make the rate look faster than it is; concurrency is in the rate.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from orchestrator.search import trial_label
from orchestrator.search.best_trials import value_text
from trainables import metric_names as K

# The metric columns of Tune's live table (the sweep's and the validation phase's).
LIVE_COLUMNS = (K.STEP, K.LOSS_FINAL, K.DELTA_LOSS, K.BITS_ABOVE_CHANCE, K.FRAC_P_GT_HALF, K.GREEDY_EXACT_MATCH)


def _num(value: Any, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def duration(seconds: float | None) -> str:
    """1h02m, 4m05s, 37s."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def eta_s(done_total: int, total: int, done_this_run: int, elapsed_s: float) -> float | None:
    """Seconds left at this run's rate; None before the first trial of this run has finished."""
    if done_this_run <= 0 or elapsed_s <= 0 or total <= 0:
        return None
    return max(0, total - done_total) * elapsed_s / done_this_run


#: Short names of the metrics a trial line shows; any other metric is shown by its own name.
SHORT = {K.DELTA_LOSS: ("ΔL", ".3g"), K.FRAC_P_GT_HALF: ("certified", ".2f"), K.GREEDY_EXACT_MATCH: ("greedy EM", ".2f"),
         K.GREEDY_TOKEN_ACC: ("greedy token acc", ".3f")}


def _value(metrics: Mapping[str, Any], key: str) -> str:
    return value_text(key, metrics.get(key), metrics.get(K.STEP), SHORT.get(key, (key, ".3g"))[1])


def metric_text(metrics: Mapping[str, Any], keys: Iterable[str]) -> str:
    """`ΔL 4.21, certified 0.88, greedy EM 0.50` for the given metric keys; a step to an event that
    did not happen within the trial's steps reads `> 100`."""
    return ", ".join(f"{SHORT.get(k, (k,))[0]} {_value(metrics, k)}" for k in keys)


def trial_line(done_total: int, total: int, name: str, metrics: Mapping[str, Any], keys: Iterable[str],
               status: str, elapsed_s: float, eta: float | None) -> str:
    """`k/n done  <name>: <metrics>, <status>   elapsed, ETA`; the name and metric keys are the
    search kind's (orchestrator/search/kinds.py: trial_label, line_metrics)."""
    width = len(str(total))
    return (f"{done_total:>{width}}/{total} done  {name}: {metric_text(metrics, keys)}, {status}   "
            f"elapsed {duration(elapsed_s)}, ETA {duration(eta) if eta is not None else '-'}")


def _ci(pair: Any) -> str:
    return f" [{_num(pair[0])}, {_num(pair[1])}]" if pair else ""


def fit_line(report: Mapping[str, Any]) -> list[str]:
    """One line per group: `law <group>: alpha a [lo, hi]  beta b [lo, hi]  R² r  points n/m`."""
    head = f"law after {report['trials_accepted']} trials"
    if not report["groups"]:
        return [f"{head}: no finished trials yet"]
    lines = []
    for label, group in report["groups"].items():
        fit = group["fit"]
        if fit.get("status") != "ok":
            lines.append(f"{head}, group {label}: {fit.get('status')} ({fit.get('n_points', 0)} points)")
            continue
        lines.append(f"{head}, group {label}: alpha {_num(fit.get('alpha'))}{_ci(fit.get('alpha_ci'))}  "
                     f"beta {_num(fit.get('beta'))}{_ci(fit.get('beta_ci'))}  R² {_num(fit.get('r2'), '.4f')}  "
                     f"points {fit.get('n_points')} of {group['n_rows']}")
    return lines


def _sort_key(record: Mapping[str, Any]) -> tuple:
    values = [trial_label.rank(record.get("config", {})), trial_label.ell(record.get("config", {}))]
    return tuple((v is None, v if isinstance(v, (int, float)) else 0) for v in values) + (record["trial_id"],)


def trial_table(records: Iterable[Mapping[str, Any]]) -> str:
    """Every trial, rank then ℓ (over all sequences, as the law counts it): ΔL, certified share
    (p > 0.5), greedy exact match, status."""
    rows = sorted(records, key=_sort_key)
    header = ("rank", "ℓ", "ΔL", "certified", "greedy EM", "status")
    body = []
    for r in rows:
        m = r.get("metrics") or {}
        body.append((_num(trial_label.rank(r["config"]), ""), _num(trial_label.ell(r["config"]), ""),
                     _num(m.get(K.DELTA_LOSS), ".4g"), _num(m.get(K.FRAC_P_GT_HALF), ".3f"),
                     _num(m.get(K.GREEDY_EXACT_MATCH), ".3f"), r["status"]))
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = lambda row: "  ".join(f"{cell:>{w}}" if i < 5 else cell for i, (cell, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, body)])
