"""The statistics of the held-out validation that need no censoring: per-arm means (shares with an
interval inside [0, 1]), paired differences to SFT, the exact sign-flip test, Holm's adjustment over
the arms compared with SFT, and the verdict. Steps to stable certification are right-censored and
are handled in orchestrator/search/validation_censored.py; the verdict reads both. Pure: the
standard library and scipy, no Ray.

Notation
    arm a       one knob set (SFT, MemFT-OT, or a setting the search ranked high), run on seeds s
    x_a(s)      a metric of arm a's trial on seed s. One value per (arm, seed): the inputs are keyed
                by seed, so a repeated record of a seed replaces its value and never narrows an interval
    n           the number of seeds with a finished trial
    share       a metric that is a proportion in [0, 1] within one trial (greedy token accuracy,
                greedy exact match, the share of sequences certified)
    Wilson      a share's mean x̄ over n seeds gets the μ with n (x̄ − μ)² <= z² μ (1 − μ), z = 1.96.
                A per-seed share X in [0, 1] with mean μ has Var X <= μ (1 − μ) (equality when every
                X is 0 or 1), so this is the score interval under the largest variance a share can
                have: it lies inside [0, 1], it is Wilson's interval when each seed's share is 0 or 1,
                and it is wider than needed (conservative) when the shares vary less. A t-interval
                of a share leaves [0, 1] on few seeds and has zero width when all seeds agree
    t-interval  x̄ ± t(0.975, n − 1) · sd / √n, for a metric that is not a share (a loss, seconds)
    d_a(s)      x_a(s) − x_SFT(s) over the seeds both arms finished: paired, since seed s fixes the
                adapter init and the data for every arm; its mean and t-interval are descriptive
    p_a         the exact one-sided sign-flip p of the d_a(s), in the metric's good direction: the
                share of the 2^n patterns of signs whose mean is at least as good as the one observed
                (no normality assumed; above 16 seeds, the exact sign test of the d_a(s) that are not 0).
                Its smallest value is 2^-n; identical arms give d = 0 and p = 1
    k           the number of arms compared with SFT (MemFT-OT and the validated knob sets)
    Holm        p_(1) <= ... <= p_(k) sorted; p̃_(i) = max over j <= i of min(1, (k − j + 1) · p_(j)).
                A winner needs p̃ <= α = 0.05: the chance that any of the k arms is declared a winner
                when none differs from SFT stays at most α
    winner      the arm with p̃ <= α on the primary metric and a gain on the good side (the largest
                gain if several); otherwise none. Its smallest possible p̃ is k · 2^-n, so a winner
                needs n >= log2(k / α) seeds: 5 for one arm, 6 for two or three, 7 for four to six
                (min_seeds; search.validate_seeds is checked against it when the sweep file is read)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

NO_WINNER = "no setting beat SFT here"
ALPHA = 0.05  # the family-wise level of the verdict over the k arms compared with SFT (Holm, one-sided)
Z_95 = 1.959963984540054  # the standard normal's 0.975 quantile
EXACT_MAX_N = 16  # sign flips enumerated up to this many seeds (2^16 sums); above, the exact sign test


@dataclass(frozen=True)
class Estimate:
    n: int
    mean: float | None
    lo: float | None
    hi: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "lo": self.lo, "hi": self.hi}

    def excludes_zero(self) -> bool:
        return self.lo is not None and (self.lo > 0 or self.hi < 0)


def mean_interval(values: Sequence[float], level: float = 0.95) -> Estimate:
    """x̄ with its Student-t interval (none below two values; zero width when all values agree)."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return Estimate(0, None, None, None)
    mean = sum(xs) / n
    if n < 2:
        return Estimate(1, mean, None, None)
    from scipy import stats

    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(n, mean, mean - half, mean + half)


def wilson_interval(values: Sequence[float], z: float = Z_95) -> Estimate:
    """A share's mean over seeds with the score interval under the largest variance a share can
    have (see the module doc): inside [0, 1] for any n >= 1, never of zero width."""
    xs = [float(v) for v in values]
    if any(not 0.0 <= x <= 1.0 for x in xs):
        raise ValueError(f"a share must lie in [0, 1], got {[x for x in xs if not 0.0 <= x <= 1.0]}")
    n = len(xs)
    if n == 0:
        return Estimate(0, None, None, None)
    p = sum(xs) / n
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = (0.0 if p <= 0 else center - half), (1.0 if p >= 1 else center + half)  # exact ends, no rounding
    return Estimate(n, p, max(0.0, min(lo, p)), min(1.0, max(hi, p)))


def paired_difference(arm: Mapping[int, float], baseline: Mapping[int, float], level: float = 0.95) -> Estimate:
    """d(s) = arm(s) − baseline(s) over the seeds both have, as an Estimate."""
    seeds = sorted(set(arm) & set(baseline))
    return mean_interval([arm[s] - baseline[s] for s in seeds], level)


def sign_flip_p(diffs: Sequence[float], direction: int) -> float | None:
    """One-sided exact p of a mean difference this good (direction +1: this large; -1: this small)
    when each d(s) is as likely to have had the other sign; None for no values or too many."""
    import itertools

    n = len(diffs)
    if n == 0 or n > EXACT_MAX_N:
        return None
    observed = direction * sum(diffs)
    hits = sum(1 for signs in itertools.product((1, -1), repeat=n)
               if direction * sum(s * d for s, d in zip(signs, diffs)) >= observed - 1e-12)
    return hits / 2 ** n


def sign_test_p(wins: int, losses: int) -> float:
    """P(Bin(wins + losses, 1/2) >= wins): the exact one-sided sign test; 1 with nothing to compare.
    For paired differences on more than EXACT_MAX_N seeds (wins: seeds better, losses: worse, zeros
    dropped), and for the orderings of censored steps (validation_censored)."""
    if wins + losses == 0:
        return 1.0
    from scipy import stats

    return float(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def holm(ps: Sequence[float | None]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given; a missing p (an arm without paired
    seeds) counts as 1, so it still takes its place in the family."""
    p = [1.0 if v is None else float(v) for v in ps]
    k = len(p)
    out, running = [1.0] * k, 0.0
    for rank, i in enumerate(sorted(range(k), key=lambda j: p[j])):
        running = max(running, min(1.0, (k - rank) * p[i]))
        out[i] = running
    return out


def min_seeds(arms_compared: int, alpha: float = ALPHA) -> int:
    """The fewest seeds with which one of `arms_compared` arms can pass Holm at `alpha`: the
    smallest n with 2^-n <= alpha / k (an exact one-sided test on n paired seeds reaches no lower p)."""
    n = 1
    while 2.0 ** -n > alpha / max(1, arms_compared):
        n += 1
    return n


def summarize(values: Mapping[str, Mapping[str, Mapping[int, float]]], baseline: str, metrics: Sequence[str],
              modes: Mapping[str, str] | None = None, shares: Sequence[str] = ()) -> dict[str, dict[str, dict[str, Any]]]:
    """values[arm][metric][seed] -> per arm and metric: {"value": Estimate (Wilson for `shares`,
    else t), "vs_baseline": the paired difference with its sign-flip p in each direction, "p" in the
    metric's good direction (modes, default max) and "p_holm" over the arms compared}."""
    modes = modes or {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arm, per_metric in values.items():
        out[arm] = {}
        for m in metrics:
            xs = per_metric.get(m, {})
            ordered = [xs[s] for s in sorted(xs)]
            value = wilson_interval(ordered) if m in shares else mean_interval(ordered)
            entry = {"value": {**value.to_dict(), "interval": "wilson" if m in shares else "t"}}
            if arm != baseline:
                base = values.get(baseline, {}).get(m, {})
                diffs = [xs[s] - base[s] for s in sorted(set(xs) & set(base))]
                above, below = sign_flip_p(diffs, +1), sign_flip_p(diffs, -1)
                if len(diffs) > EXACT_MAX_N:  # too many seeds to enumerate: the exact sign test instead
                    ups, downs = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
                    above, below = sign_test_p(ups, downs), sign_test_p(downs, ups)
                entry["vs_baseline"] = {**paired_difference(xs, base).to_dict(), "p_above": above, "p_below": below,
                                        "p": below if modes.get(m, "max") == "min" else above}
            out[arm][m] = entry
    for m in metrics:
        adjust(out, baseline, m, "vs_baseline")
    return out


def adjust(summary: Mapping[str, Mapping[str, dict[str, Any]]], baseline: str, metric: str, key: str) -> None:
    """Adds "p_holm" to each arm's comparison `key` on `metric`: Holm over every arm but the baseline."""
    arms = [a for a in summary if a != baseline and metric in summary[a]]
    for arm, p in zip(arms, holm([summary[a][metric][key].get("p") for a in arms])):
        summary[arm][metric][key]["p_holm"] = p


def _gain(entry: Mapping[str, Any], mode: str) -> float:
    """How much better than the baseline, in the metric's good direction: the mean paired difference,
    or for a censored metric the seeds that certified earlier minus those that certified later."""
    if "better" in entry:
        return float(entry["better"] - entry["worse"])
    return (1.0 if mode == "max" else -1.0) * (entry.get("mean") or 0.0)


def comparison(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """An arm's comparison with the baseline on one metric: paired difference or censored ordering."""
    return entry.get("vs_baseline") or entry.get("vs_baseline_order")


def verdict(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str, mode: str, baseline: str,
            alpha: float = ALPHA) -> dict[str, Any]:
    """The winner on `metric`, or none: see the module doc."""
    tested = [(arm, comparison(per_metric[metric])) for arm, per_metric in summary.items()
              if arm != baseline and metric in per_metric and comparison(per_metric[metric])]
    k = len(tested)
    passing = [(arm, e) for arm, e in tested if e.get("p_holm") is not None and e["p_holm"] <= alpha
               and _gain(e, mode) > 0]
    seeds = max((e.get("n") or 0 for _, e in tested), default=0)
    floor = k * 2.0 ** -seeds if seeds else 1.0
    if passing:
        best, e = max(passing, key=lambda ae: (_gain(ae[1], mode), -ae[1]["p_holm"]))
        text = (f"{best} beat {baseline} on {metric} (exact one-sided p = {e['p']:.3g}, Holm-adjusted over "
                f"{k} arms {e['p_holm']:.3g} <= {alpha:g})")
    else:
        best = None
        low = min(tested, key=lambda ae: ae[1].get("p_holm", 1.0), default=None)
        text = NO_WINNER
        if low is not None:
            text += (f" (smallest Holm-adjusted p over {k} arms: {low[1].get('p_holm', 1.0):.3g}, {low[0]}; "
                     f"{seeds} paired seeds can reach {min(1.0, floor):.3g} at best)")
            if floor > alpha:
                text += (f"; no winner was reachable: {k} arms need {min_seeds(k, alpha)} seeds "
                         f"(2^-n <= {alpha:g}/{k}), this validation ran {seeds}")
    return {"metric": metric, "mode": mode, "winner": best, "arms_compared": k, "alpha": alpha, "text": text}
