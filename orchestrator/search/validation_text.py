"""The held-out validation's summary (orchestrator/search/validation_plan.py) as text for people:
`memlaw best` and a search's end report print it. Pure: no Ray, no scipy.

What it promises: a share is printed with an interval inside [0, 1]; a censored step is printed as
a count of seeds certified within the budget, a Kaplan–Meier median (or the bound "not reached")
and a restricted mean, and its difference to SFT as a bound with the seeds censored on each side,
never as a mean or a zero-width interval; every p beside a verdict is Holm-adjusted over the arms
compared with SFT, and says so. A summary written before censored steps were handled (no
`stats_version`) is printed with a warning that its steps average a placeholder.
"""

from __future__ import annotations

from typing import Any, Mapping

from orchestrator.search.best_trials import value_text
from orchestrator.search.validation_censored import arm_text, order_text
from trainables import metric_names as K


def _est(e: Mapping[str, Any] | None, fmt: str = ".3g") -> str:
    """`0.42 [0.31, 0.53]`, or the mean alone without an interval."""
    if not e or e.get("mean") is None:
        return "-"
    text = format(e["mean"], fmt)
    return text + (f" [{format(e['lo'], fmt)}, {format(e['hi'], fmt)}]" if e.get("lo") is not None else "")


def _difference(e: Mapping[str, Any]) -> str:
    """The mean paired difference with its t-interval, the exact p and Holm's."""
    if e.get("lo") is not None and e["lo"] == e["hi"]:  # no spread: a zero-width "interval" would say nothing
        text = f"{format(e['mean'], '+.3g')} on every one of {e['n']} paired seeds"
    else:
        text = f"{_est(e, '+.3g')} mean paired difference over {e['n']} seeds"
    if e.get("p") is not None:
        text += f"; exact sign-flip p = {e['p']:.3g}, Holm-adjusted {e.get('p_holm', e['p']):.3g}"
    return text


def _legacy(summary: Mapping[str, Any]) -> bool:
    return "stats_version" not in summary


def format_validation(summary: Mapping[str, Any]) -> str:
    """Per arm: each metric's estimate, then its comparison with SFT on the primary metric and on the
    censored steps; the search's own score beside it; then the verdict and the censoring rule."""
    primary = summary["primary"]["metric"]
    metrics, censored = summary["metrics"], summary.get("censored_metrics", [])
    k = summary["verdict"].get("arms_compared")
    lines = [f"held-out validation: {len(summary['seeds'])} fresh seeds per arm (adapter init and data), at the "
             f"search's rank, lr and steps; primary metric {primary} ({summary['primary']['mode']})"
             + (f", {k} arms compared with SFT (Holm)" if k else ""),
             "  shares: mean over seeds [95 % interval inside [0, 1]]; other values: mean [95 % t-interval]"]
    if _legacy(summary):
        lines.append("  warning: this summary was written before censored steps were handled: its "
                     "stable_certified_from figures average budget + 1 for trials that never certified, and its "
                     "intervals are t-intervals (a share's can leave [0, 1]); read them as such")
    for arm in summary["arms"]:
        stats = arm["stats"]
        search = arm.get("search") or {}
        score = ", ".join(f"{m} {value_text(m, v, search.get('last_step'))}" for m, v in (search.get("values") or {}).items())
        lines.append(f"  {arm['label']:<9} {arm['text']}   ({arm['seeds_done']} seeds done"
                     + (f", {arm['failed']} failed" if arm.get("failed") else "") + ")")
        lines.append("    " + "   ".join(f"{m} {_est(stats[m]['value'])}" for m in metrics if m in stats))
        for m in censored:
            if m in stats:
                what = "stably certified (a later evaluation confirms it)" if m == K.STABLE_CERTIFIED_FROM else "certified"
                lines.append(f"    {m}: {arm_text(stats[m]['censored'], what)}")
        if "vs_baseline" in stats.get(primary, {}):
            lines.append(f"    vs SFT on {primary}: {_difference(stats[primary]['vs_baseline'])}")
        for m in censored:
            if "vs_baseline_order" in stats.get(m, {}):
                lines.append(f"    vs SFT on {m}: {order_text(stats[m]['vs_baseline_order'], 'SFT')}")
        if score:
            lines.append(f"    the search's own score (one seed, the best of the search): {score}")
    lines.append(f"  verdict: {summary['verdict']['text']}")
    if summary.get("censored_note"):
        lines.append(f"  ({summary['censored_note']})")
    return "\n".join(lines)
