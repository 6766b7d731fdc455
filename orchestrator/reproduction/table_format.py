"""How docs/reproduction.md writes a number, an interval, a share or a path in a Markdown table, and the
paper's published figures it sets beside ours (docs/science.md §5). Shared by doc.py and smollm2_doc.py."""

from __future__ import annotations

import os
from typing import Any

#: Related-work capacities (docs/science.md §6), bits per parameter.
RELATED_BITS = {"Allen-Zhu & Li (knowledge capacity)": 2.0, "Morris et al. 2025 (GPT-style, random data)": 3.6}
#: The paper's published figures that the document sets beside ours.
PAPER = {"alpha": (0.75, 0.8), "beta": (0.6, 0.65), "r2": (0.981, 0.990), "mape": (0.5, 8.3), "bits_r1_10k": 2.3}


def num(value: Any, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def interval(pair: Any, fmt: str = ".3g") -> str:
    return "" if not pair else f" [{num(pair[0], fmt)}, {num(pair[1], fmt)}]"


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (group labels join their fields with "|")."""
    return str(text).replace("|", "\\|")


def where(path: Any) -> str:
    """An experiment path as the reader can use it: relative to the working folder when inside it."""
    if not path:
        return "-"
    rel = os.path.relpath(str(path))
    return str(path) if rel.startswith("..") else rel


def pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
