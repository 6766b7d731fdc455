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
    winner      the arm whose paired interval on the primary metric lies wholly on the good side of
                zero (above for mode max, below for min), the largest mean improvement if several;
                otherwise none ("no setting beat SFT here")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

NO_WINNER = "no setting beat SFT here"


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
                entry["vs_baseline"] = paired_difference(xs, values.get(baseline, {}).get(m, {})).to_dict()
            out[arm][m] = entry
    return out


def verdict(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str, mode: str,
            baseline: str) -> dict[str, Any]:
    """The winner on `metric`, or none: see the module doc."""
    sign = 1.0 if mode == "max" else -1.0
    best, best_gain = None, 0.0
    for arm, per_metric in summary.items():
        if arm == baseline or metric not in per_metric:
            continue
        d = Estimate(**per_metric[metric]["vs_baseline"])
        if d.lo is None:
            continue
        if (mode == "max" and d.lo > 0) or (mode == "min" and d.hi < 0):
            gain = sign * d.mean
            if gain > best_gain:
                best, best_gain = arm, gain
    text = NO_WINNER if best is None else f"{best} beat {baseline} on {metric} (paired 95 % interval excludes zero)"
    return {"metric": metric, "mode": mode, "winner": best, "text": text}
