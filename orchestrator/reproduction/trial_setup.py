"""What a law's trials were run with, read from their configs: the columns of the comparison table.

Why: an exponent means little without its budget. docs/reproduction.md sets each law beside the
paper's only with the model (and its quantisation), placement, steps, learning-rate schedule and
replicates it was measured at; this reads them from the records, never from the example files, so a
changed example cannot relabel an old experiment.
"""

from __future__ import annotations

from typing import Any, Iterable

from orchestrator.records.trial_record import TrialRecord
from trainables import metric_names as K


def _values(records: list[TrialRecord], section: str, name: str) -> list[Any]:
    return sorted({(r.config.get(section) or {}).get(name) for r in records}, key=str)


def setup_facts(records: Iterable[TrialRecord]) -> dict[str, Any]:
    """Model, quantisation, placement, steps, lr, schedule and replicates per cell, as lists of the
    distinct values the records hold (one value each in a well-formed law)."""
    records = [r for r in records if r.ok]
    cells: dict[tuple[Any, Any], int] = {}
    for r in records:
        key = (r.metrics.get(K.RANK), r.metrics.get(K.TARGET_TOKENS))
        cells[key] = cells.get(key, 0) + 1
    return {"model": _values(records, "model", "name"), "gguf_file": _values(records, "model", "gguf_file"),
            "placement": _values(records, "adapter", "placement"), "steps": _values(records, "budget", "steps"),
            "lr": _values(records, "budget", "lr"), "schedule": _values(records, "budget", "schedule"),
            "warmup_steps": _values(records, "budget", "warmup_steps"),
            "replicates": sorted(set(cells.values())), "cells": len(cells), "trials": len(records)}
