"""The statistics of the held-out validation: per-arm means, paired differences to SFT, the verdict.
Pure: numpy and scipy only.

Notation
    arm a       one knob set (SFT, MemFT-OT, or a setting the search ranked high), run on seeds s
    x_a(s)      a metric of arm a's trial on seed s (greedy token accuracy, exact match, certified
                share, steps to stable certification)
    n           the number of seeds with a finished trial
    mean, sd    x̄ = Σ x / n and the sample standard deviation (n − 1 in the denominator)
    interval    the 95 % Student-t interval x̄ ± t(0.975, n − 1) · sd / √n; none for n < 2
    d_a(s)      x_a(s) − x_SFT(s) over the seeds both arms finished: a paired difference, since
                seed s fixes both the adapter init and the data for every arm
    p           the exact one-sided sign-flip p-value of the paired differences: the share of the
                2^n ways of flipping the signs of d_a(s) whose mean is at least as good as the one
                observed (no normality assumed; its smallest possible value is 2^-n)
    winner      the arm whose paired interval on the primary metric lies wholly on the good side of
                zero (above for mode max, below for min) *and* whose p <= 0.05, the largest mean
                improvement if several; otherwise none ("no setting beat SFT here"). The second
                condition matters when the d_a(s) all agree: their sd is 0, the t-interval has zero
                width and "excludes zero" on any number of seeds, while 3 seeds that all improve are
                still what chance gives one time in 8 (2^-3). Five seeds are the fewest that can win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

NO_WINNER = "no setting beat SFT here"
ALPHA = 0.05  # the sign-flip test's level for a winner (one-sided, in the direction the metric's mode asks)
EXACT_MAX_N = 16  # sign flips enumerated up to this many seeds (2^16 sums); above, the t-interval alone decides


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


def summarize(values: Mapping[str, Mapping[str, Mapping[int, float]]], baseline: str,
              metrics: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """values[arm][metric][seed] -> per arm and metric: {"value": Estimate, "vs_baseline": Estimate}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arm, per_metric in values.items():
        out[arm] = {}
        for m in metrics:
            xs = per_metric.get(m, {})
            entry = {"value": mean_interval([xs[s] for s in sorted(xs)]).to_dict()}
            if arm != baseline:
                base = values.get(baseline, {}).get(m, {})
                diffs = [xs[s] - base[s] for s in sorted(set(xs) & set(base))]
                entry["vs_baseline"] = {**paired_difference(xs, base).to_dict(),
                                        "p_above": sign_flip_p(diffs, +1), "p_below": sign_flip_p(diffs, -1)}
            out[arm][m] = entry
    return out


def verdict(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str, mode: str,
            baseline: str) -> dict[str, Any]:
    """The winner on `metric`, or none: see the module doc."""
    sign = 1.0 if mode == "max" else -1.0
    best, best_gain, short = None, 0.0, []
    for arm, per_metric in summary.items():
        if arm == baseline or metric not in per_metric:
            continue
        entry = per_metric[metric]["vs_baseline"]
        d = Estimate(*(entry[k] for k in ("n", "mean", "lo", "hi")))
        if d.lo is None or not ((mode == "max" and d.lo > 0) or (mode == "min" and d.hi < 0)):
            continue
        p = entry.get("p_above" if mode == "max" else "p_below")
        if p is not None and p > ALPHA:
            short.append(f"{arm}'s interval over {d.n} paired seeds excludes zero, but a sign-flip test gives "
                         f"p = {p:.3g} > {ALPHA:g}; 5 seeds are the fewest that can show it")
            continue
        if sign * d.mean > best_gain:
            best, best_gain = arm, sign * d.mean
    if best is not None:
        text = f"{best} beat {baseline} on {metric} (paired 95 % interval excludes zero, sign-flip p <= {ALPHA:g})"
    else:
        text = NO_WINNER + (f" ({'; '.join(short)})" if short else "")
    return {"metric": metric, "mode": mode, "winner": best, "text": text}
