"""Steps to (stable) certification as time-to-event data: right-censored at the budget, compared with
SFT by per-seed orderings and an exact sign test, summarised per arm by the share certified within
the budget and a Kaplan–Meier median and restricted mean. Pure: the standard library and scipy.

Why not a mean: a trial that never certifies has no step to certify at; the number it reports
(`stable_certified_from` = budget + 1) is a placeholder set by the budget. Averaging, differencing or
giving a t-interval to it measures the budget: SFT censored on every seed against an arm that
certified at step 80 gives a "difference" of exactly −21 on every seed and a zero-width interval.

Notation
    B           the budget (optimizer steps); L the trial's last evaluation step (B unless it stopped early)
    T_a(s)      arm a's step on seed s: stable_certified_from (from which every evaluation stayed
                fully certified) or steps_to_certified (the first fully certified evaluation)
    event       T is observed when T <= B and, for a stable step, T < L: a stable-from step needs at
                least one later evaluation to test that it held. Otherwise the seed is censored at
                c = L: all that is known is that no (confirmed) step came before c. A trial first
                stably certified at its last evaluation is censored, not certified-stable
    (t, e)      a seed's observation: (T, 1) for an event, (c, 0) for a censored seed
    share       events / n, with its exact Clopper–Pearson 95 % interval (scipy.stats.binomtest
                .proportion_ci(method="exact")): inside [0, 1] by construction
    S(t)        the Kaplan–Meier survival of the arm's seeds (scipy.stats.ecdf on CensoredData): the
                estimated share of seeds not yet (stably) certified by step t
    median      the smallest t with S(t) <= 1/2; when S stays above 1/2 it is "not reached", printed
                as the bound "> t_last" (the last step seen), never as a number
    RMST        the restricted mean ∫_0^B S(t) dt: the mean of min(T, B), well defined with censoring
                at B because min(T, B) = B is then known exactly; not an average of placeholders
    o_a(s)      the ordering of seed s (Gehan's rule): +1 when arm a's step is known to come before
                SFT's (both events and t_a < t_SFT, or a's event at t_a < c_SFT), −1 when known to come
                after, 0 when tied or unknown (both censored, equal steps, or an event at or after the
                other's censoring). Identical arms order every seed 0
    p           the exact one-sided sign test on the seeds that are not tied: with m = n+ + n−,
                P(Bin(m, 1/2) >= n+) for "earlier" (scipy.stats.binomtest); 1 when m = 0
    d bounds    d(s) = T_a(s) − T_SFT(s) lies in [lo_s, hi_s]: exact when both are events,
                (−∞, t_a − c_SFT] when SFT is censored, [c_a − t_SFT, +∞) when a is, (−∞, +∞) when both.
                The median of the d(s) lies between the median of the lo_s and the median of the hi_s
                (the median is monotone in every value), reported as that bound: "≥ 20 fewer steps
                (SFT censored on 6/6 seeds)", never as a zero-width interval
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from orchestrator.search.validation_stats import adjust, sign_test_p


@dataclass(frozen=True)
class Observation:
    """One seed's time-to-event observation: `time` is the event step, or the censoring step."""

    time: float
    event: bool

    def to_list(self) -> list[Any]:
        return [self.time, self.event]


def observe(value: Any, last_eval: float, budget: float, needs_later_eval: bool = True) -> Observation:
    """A trial's reported step as an observation (the censoring rule of the module doc): `value` is
    the metric (None, or budget + 1, when it never happened)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if number and value <= budget and (value < last_eval or not needs_later_eval):
        return Observation(float(value), True)
    return Observation(float(last_eval), False)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """The exact (Clopper–Pearson) interval of k successes in n; (None, None) for n = 0."""
    if n == 0:
        return None, None
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def kaplan_meier(obs: Sequence[Observation], tau: float) -> dict[str, Any]:
    """KM median (or the bound when not reached) and the mean restricted to `tau`."""
    if not obs:
        return {"median": None, "median_reached": False, "median_above": None, "rmst": None}
    from scipy import stats

    data = stats.CensoredData(uncensored=[o.time for o in obs if o.event],
                              right=[o.time for o in obs if not o.event])
    sf = stats.ecdf(data).sf
    times, surv = [float(t) for t in sf.quantiles], [float(s) for s in sf.probabilities]
    median = next((t for t, s in zip(times, surv) if s <= 0.5 + 1e-12), None)
    area, prev_t, prev_s = 0.0, 0.0, 1.0
    for t, s in zip(times, surv):
        if t >= tau:
            break
        area += (t - prev_t) * prev_s
        prev_t, prev_s = t, s
    area += (tau - prev_t) * prev_s
    return {"median": median, "median_reached": median is not None,
            "median_above": None if median is not None else max(times), "rmst": area}


def order(a: Observation, b: Observation) -> int:
    """+1 when a's step is known to come before b's, −1 after, 0 tied or unknown (Gehan)."""
    if a.event and b.event:
        return (a.time < b.time) - (a.time > b.time)
    if a.event and a.time < b.time:  # b censored at b.time: its step, if any, comes at or after it
        return 1
    if b.event and b.time < a.time:
        return -1
    return 0


def difference_bounds(a: Observation, b: Observation) -> tuple[float, float]:
    """[lo, hi] for T_a − T_b (±inf where censoring leaves it open)."""
    lo = a.time - b.time if b.event else -math.inf  # a censored at c_a: T_a >= c_a, so d >= c_a - t_b
    hi = a.time - b.time if a.event else math.inf  # b censored at c_b: T_b >= c_b, so d <= t_a - c_b
    return lo, hi


def _median(xs: Sequence[float]) -> float:
    ys = sorted(xs)
    mid = len(ys) // 2
    if len(ys) % 2:
        return ys[mid]
    return (ys[mid - 1] + ys[mid]) / 2  # lower bounds are finite or -inf, upper finite or +inf: never nan


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def describe(obs: Mapping[int, Observation], budget: float) -> dict[str, Any]:
    """One arm on one censored metric: counts, the certified share with its exact interval, KM."""
    seen = [obs[s] for s in sorted(obs)]
    k, n = sum(o.event for o in seen), len(seen)
    lo, hi = clopper_pearson(k, n)
    return {"n": n, "events": k, "censored": n - k, "budget": budget,
            "certified_share": {"k": k, "n": n, "share": k / n if n else None, "lo": lo, "hi": hi},
            **kaplan_meier(seen, budget), "tau": budget,
            "times": {str(s): obs[s].to_list() for s in sorted(obs)}}


def compare(arm: Mapping[int, Observation], base: Mapping[int, Observation], mode: str = "min") -> dict[str, Any]:
    """Arm against the baseline over their common seeds: orderings, the sign test, the median bound."""
    seeds = sorted(set(arm) & set(base))
    orders = [order(arm[s], base[s]) for s in seeds]
    earlier, later = orders.count(1), orders.count(-1)
    bounds = [difference_bounds(arm[s], base[s]) for s in seeds]
    p_earlier, p_later = sign_test_p(earlier, later), sign_test_p(later, earlier)
    good, bad = (earlier, later) if mode == "min" else (later, earlier)
    return {"n": len(seeds), "earlier": earlier, "later": later, "tied": orders.count(0),
            "both_censored": sum(not arm[s].event and not base[s].event for s in seeds),
            "arm_censored": sum(not arm[s].event for s in seeds),
            "baseline_censored": sum(not base[s].event for s in seeds),
            "better": good, "worse": bad, "p_earlier": p_earlier, "p_later": p_later,
            "p": p_earlier if mode == "min" else p_later,
            "median_difference": {"lo": _finite(_median([b[0] for b in bounds])) if bounds else None,
                                  "hi": _finite(_median([b[1] for b in bounds])) if bounds else None}}


def summarize_censored(obs: Mapping[str, Mapping[str, Mapping[int, Observation]]], baseline: str,
                       metrics: Sequence[str], budgets: Mapping[str, float],
                       modes: Mapping[str, str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """obs[arm][metric][seed] -> per arm and metric: {"censored": describe, "vs_baseline_order":
    compare, with "p_holm" over the arms compared}. budgets[arm]: the arm's budget in steps."""
    modes = modes or {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arm, per_metric in obs.items():
        out[arm] = {}
        for m in metrics:
            entry = {"censored": describe(per_metric.get(m, {}), budgets[arm])}
            if arm != baseline:
                entry["vs_baseline_order"] = compare(per_metric.get(m, {}), obs.get(baseline, {}).get(m, {}),
                                                     modes.get(m, "min"))
            out[arm][m] = entry
    for m in metrics:
        adjust(out, baseline, m, "vs_baseline_order")
    return out


# -- for people ------------------------------------------------------------------------------------
def _steps(x: float) -> str:
    return f"{x:.4g}"


def difference_text(c: Mapping[str, Any], baseline: str, unit: str = "steps") -> str:
    """The median paired difference as what the data bound it to: an exact value, a one-sided bound,
    an interval, or "not bounded"; with how many seeds each arm had censored."""
    lo, hi = c["median_difference"]["lo"], c["median_difference"]["hi"]
    n = c["n"]
    if lo is not None and hi is not None and lo == hi:  # every seed's difference known exactly
        text = f"{_steps(abs(lo))} {'fewer' if lo < 0 else 'more'} {unit}" if lo else f"0 {unit}"
    elif lo is not None and hi is not None:
        text = f"between {lo:+.4g} and {hi:+.4g} {unit}"
    elif hi is not None:
        text = f"≥ {_steps(-hi)} fewer {unit}" if hi < 0 else f"at most {_steps(hi)} more {unit}"
    elif lo is not None:
        text = f"≥ {_steps(lo)} more {unit}" if lo > 0 else f"at most {_steps(-lo)} fewer {unit}"
    else:
        text = "not bounded"
    return (f"median paired difference {text} ({baseline} censored on {c['baseline_censored']}/{n} seeds, "
            f"this arm on {c['arm_censored']}/{n})")


def arm_text(d: Mapping[str, Any], what: str = "certified") -> str:
    """`stably certified within the budget (100 steps) on 4/6 seeds (67 %, exact 95 % interval [22, 96] %);
    KM median 60; restricted mean to 100: 71`."""
    share = d["certified_share"]
    if not d["n"]:
        return "no seed finished"
    ci = f", exact 95 % interval [{100 * share['lo']:.0f}, {100 * share['hi']:.0f}] %" if share["lo"] is not None else ""
    median = (f"KM median {_steps(d['median'])}" if d["median_reached"]
              else f"KM median not reached (> {_steps(d['median_above'])})")
    return (f"{what} within the budget ({_steps(d['budget'])} steps) on {share['k']}/{share['n']} seeds "
            f"({100 * share['share']:.0f} %{ci}); {median}; restricted mean to {_steps(d['tau'])}: {_steps(d['rmst'])}")


def order_text(c: Mapping[str, Any], baseline: str) -> str:
    """`6 earlier, 0 later, 0 tied; sign test p = 0.0156, Holm 0.047; ≥ 20 fewer steps (...)`."""
    return (f"{c['earlier']} seeds earlier, {c['later']} later, {c['tied']} tied ({c['both_censored']} both "
            f"censored); exact sign test p = {c['p']:.3g}, Holm-adjusted {c.get('p_holm', c['p']):.3g}; "
            + difference_text(c, baseline))
