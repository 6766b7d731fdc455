"""The one machine-readable line every benchmark prints with `--json`, read by bench/run_all.py.

The runner starts each bench as a subprocess and takes the last line of its stdout as one JSON
object, so a bench keeps its human output above that line:

    {"name": str, "figure": float | null, "unit": str, "goal": str, "met": bool | null,
     "details": {"memlaw": str, "baseline": str, ...}}

`figure` is the number the goal is about (a ratio wherever there is a baseline); `details.memlaw`
and `details.baseline` are the two measured sides in words with units, shown in the table; other
detail keys are kept in the JSON only, except `details.rows`: a list of further measurements of the
same run, each {"title", "memlaw", "baseline", "figure", "unit", "goal", "met", "reason"}, shown as
rows of their own below the bench's (bench/adaptive_vs_grid.py's CPU replay).
"""

from __future__ import annotations

import json
import math
from typing import Any


def result_line(name: str, figure: float | None, unit: str, goal: str, met: bool | None,
                **details: Any) -> str:
    """The JSON line; a non-finite figure becomes null (JSON has no NaN) and `met` false."""
    if figure is not None and not math.isfinite(figure):
        figure, met = None, False
    return json.dumps({"name": name, "figure": figure, "unit": unit, "goal": goal, "met": met,
                       "details": details})


def emit(name: str, figure: float | None, unit: str, goal: str, met: bool | None, **details: Any) -> None:
    """Print the result line last, flushed, so it is the last line of stdout."""
    print(result_line(name, figure, unit, goal, met, **details), flush=True)
