"""What a search found: its best trials (one objective) or its Pareto front (several). Pure: no Ray.

Notation
    y_j(i)    the value of objective j (a metric of the trial's final record) for trial i
    d_j       +1 for mode max, -1 for mode min; s_j(i) = d_j · y_j(i) is "larger is better"
    i ≻ k     i dominates k: s_j(i) >= s_j(k) for every j and > for at least one
    front     the finished trials (status ok, every objective a number) that no other dominates

A search over MemFT's knobs has no rank × length grid, so no law; this is its result, and the
held-out validation (orchestrator/search/validation_plan.py) reruns the `top` knob sets it ranks first.
Ranking: single objective, by s_1 (then trial id); several, by front (non-dominated sorting: front 0
is the Pareto front, front 1 the front once it is removed, ...), then by s_1 within a front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from orchestrator.records.trial_record import TrialRecord, flatten
from trainables import metric_names as K
from trainables.methods import METHODS


@dataclass(frozen=True)
class Ranked:
    """One finished trial of the search, with its objective values and the front it lies on."""

    trial_id: str
    values: tuple[float, ...]  # y_j, in the order of the sweep's metrics
    front: int  # 0: the Pareto front (single objective: 0 for the best, then 1, 2, ...)
    knobs: dict[str, Any]  # the method and the knobs it owns (dotted), plus lr
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "values": list(self.values), "front": self.front,
                "knobs": self.knobs, "metrics": self.metrics}


def method_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """The knob set of a trial: method.name, the method fields its method owns, and budget.lr."""
    flat = flatten(config)
    name = flat.get("method.name", "sft")
    owned = METHODS[name].knobs if name in METHODS else ()
    return {"method.name": name, **{f"method.{k}": flat[f"method.{k}"] for k in owned if f"method.{k}" in flat},
            "budget.lr": flat.get("budget.lr")}


def _score(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    return tuple(v if m == "max" else -v for v, m in zip(values, modes))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a ≻ b on "larger is better" scores."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def fronts(scores: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting: the front index of each point (0 = Pareto front). O(n² · fronts)."""
    left, front, out = set(range(len(scores))), 0, [0] * len(scores)
    while left:
        layer = {i for i in left if not any(dominates(scores[k], scores[i]) for k in left if k != i)}
        for i in layer:
            out[i] = front
        left -= layer
        front += 1
    return out


def _objective_values(record: TrialRecord, metrics: Sequence[str]) -> tuple[float, ...] | None:
    values = [record.metrics.get(m) for m in metrics]
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in values):
        return None
    return tuple(float(v) for v in values)


def rank_trials(records: Iterable[TrialRecord], metrics: Sequence[str], modes: Sequence[str]) -> list[Ranked]:
    """Every finished trial with numeric objectives, best first (see the module doc)."""
    rows = [(r, v) for r in records if r.ok for v in [_objective_values(r, metrics)] if v is not None]
    scores = [_score(v, modes) for _, v in rows]
    if len(metrics) == 1:
        order = sorted(range(len(rows)), key=lambda i: (-scores[i][0], rows[i][0].trial_id))
        front = {i: n for n, i in enumerate(order)}
    else:
        layers = fronts(scores)
        order = sorted(range(len(rows)), key=lambda i: (layers[i], -scores[i][0], rows[i][0].trial_id))
        front = dict(enumerate(layers))
    return [Ranked(rows[i][0].trial_id, rows[i][1], front[i], method_knobs(rows[i][0].config),
                   dict(rows[i][0].metrics)) for i in order]


def best_section(records: Iterable[TrialRecord], metrics: Sequence[str], modes: Sequence[str],
                 top: int = 10) -> dict[str, Any]:
    """The report's section: single objective, the `top` best trials; several, the whole Pareto front."""
    records = list(records)
    ranked = rank_trials(records, metrics, modes)
    shown = ranked[:top] if len(metrics) == 1 else [r for r in ranked if r.front == 0]
    return {"kind": "best" if len(metrics) == 1 else "pareto", "metrics": list(metrics), "modes": list(modes),
            "trials_ok": sum(1 for r in records if r.ok), "trials_ranked": len(ranked),
            "rows": [r.to_dict() for r in shown]}


def distinct_knob_sets(ranked: Sequence[Ranked], k: int) -> list[Ranked]:
    """The first `k` trials of the ranking with different knob sets (a knob set found twice counts once)."""
    seen, out = set(), []
    for r in ranked:
        key = tuple(sorted((name, repr(v)) for name, v in r.knobs.items()))
        if key not in seen:
            seen.add(key)
            out.append(r)
        if len(out) == k:
            break
    return out


# -- for people ------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


#: Steps to an event (certification): a trial where it never happened reports budget + 1, a
#: placeholder set by the budget, so it is shown as the bound `> budget`, never as a step.
EVENT_STEPS = (K.STABLE_CERTIFIED_FROM, K.STEPS_TO_CERTIFIED)


def value_text(metric: str, value: Any, last_step: Any, fmt: str = ".3g") -> str:
    """A metric's value for people; a step to an event past the trial's last step (or None) is `> last`."""
    if metric in EVENT_STEPS and isinstance(last_step, (int, float)) and (value is None or value > last_step):
        return f"> {last_step:g}"
    return "-" if value is None else (format(value, fmt) if isinstance(value, float) else str(value))


def knob_text(knobs: dict[str, Any]) -> str:
    """`memft mix=0.42 threshold_margin=0.1 lr=0.01`: the method and the knobs it sets away from their
    defaults (MemFT-OT reads `memft`), short."""
    from trainables.methods import MethodConfig

    defaults = MethodConfig().to_dict()
    rest = " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in knobs.items()
                    if k != "method.name" and not (k.startswith("method.") and defaults.get(k[7:]) == v))
    return f"{knobs.get('method.name')} {rest}".strip()


def format_best(section: dict[str, Any]) -> str:
    """The best trials or the Pareto front as a table."""
    heads = [f"{m} ({mode})" for m, mode in zip(section["metrics"], section["modes"])]
    title = ("best trials" if section["kind"] == "best" else "Pareto front") + (
        f" of {section['trials_ranked']} finished trials")
    lines = [f"{title}:", "  " + "  ".join(f"{h:>28}" for h in heads) + "  trial        knobs"]
    if not section["rows"]:
        lines.append("  no finished trial has a value for every objective yet")
    for row in section["rows"]:
        values = "  ".join(f"{value_text(m, v, row['metrics'].get(K.STEP)):>28}"
                           for m, v in zip(section["metrics"], row["values"]))
        lines.append(f"  {values}  {row['trial_id'][:11]:<11}  {knob_text(row['knobs'])}")
    return "\n".join(lines)
