"""The SmolLM2-135M study of docs/reproduction.md §6 (`memlaw reproduce --smollm2`): which sweeps it is
and the figures it reads from them. Reads storage only; the sweeps run through run.py.

The claim is built in the order a reviewer trusts it:
  1. β alone, at rank 1 over ℓ 32–256 with fresh-data replicates, as per-replicate slopes
     (orchestrator/law/length_slope.py), of ΔL (the paper's response) and of the drop below chance:
     a base that starts above chance pays the same nats at every ℓ, a part of ΔL that does not scale with ℓ and
     flattens ΔL's slope, so the two slopes say how much of β that offset makes;
  2. the 2-D law on the β study's cells plus the map's (ranks 2 and 4), with the identifiability
     report of uncertainty.fit_law (profile intervals, exponents over b's interval, lack of fit);
  3. the law's form out of sample: fitted on ranks below HOLD_OUT_RANK, it predicts that rank's cells
     (orchestrator/law/holdout.py).
The sweep files are the committed examples, so `memlaw sweep` on them and `memlaw reproduce --smollm2`
make the same experiments and each reuses the other's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config.preflight import load_sweep
from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.export import load_experiment
from orchestrator.law.grouping import fit_groups
from orchestrator.law.holdout import held_out
from orchestrator.law.length_slope import length_slope
from orchestrator.records.identity import distinct
from orchestrator.records.journal import law_rows
from orchestrator.records.trial_record import TrialRecord
from orchestrator.reproduction.trial_setup import setup_facts
from trainables import metric_names as K

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: The study's sweeps, in the order they run: β at rank 1, the 2-D map, the semantic-density axis.
SMOLLM2_FILES = {"beta": EXAMPLES / "beta_smollm2.yaml", "map": EXAMPLES / "law_smollm2_map.yaml",
                 "density": EXAMPLES / "density_smollm2.yaml"}
#: The cells of this rank are predicted by the law fitted on the smaller ranks.
HOLD_OUT_RANK = 4
CELL_METRICS = (K.DELTA_LOSS, K.LOSS_INIT, K.LOSS_FINAL, K.FRAC_P_GT_HALF, K.GREEDY_EXACT_MATCH, K.CONVERGENCE_RATIO)


def smollm2_sweeps(storage: str) -> dict[str, SweepConfig]:
    """The study's sweep files, validated, with their storage under `storage`."""
    return {key: load_sweep(str(path), {"storage_path": storage}) for key, path in SMOLLM2_FILES.items()}


def _finished(paths: tuple[str, ...]) -> list[TrialRecord]:
    return distinct([r for path in paths for r in load_experiment(path) if r.ok]).records


def study_facts(beta: str, law_map: str) -> dict[str, Any]:
    """β from the rank-1 study, the 2-D fit over both experiments, the held-out prediction, per-cell figures."""
    records = _finished((beta, law_map))
    rows = law_rows(records)
    fits, drops = fit_groups(rows), fit_groups(rows, response=K.DROP_BELOW_CHANCE)
    cols = {key: np.array([_number(row.get(key)) for row in rows]) for key in (K.RANK, K.TARGET_TOKENS,
                                                                              K.DELTA_LOSS, K.LOSS_FINAL)}
    x, ell, y, lf = cols[K.RANK], cols[K.TARGET_TOKENS], cols[K.DELTA_LOSS], cols[K.LOSS_FINAL]
    rank1 = [r for r in _finished((beta,)) if r.metrics.get(K.RANK) == 1]
    return {"experiments": [beta, law_map], "setup": setup_facts(records), "cells": cell_facts(records),
            "slope": _slope(rank1, K.DELTA_LOSS, "ΔL"),
            "slope_drop": _slope(rank1, K.DROP_BELOW_CHANCE, "the drop below chance"),
            "groups": {label: {**g.to_dict(), "drop_fit": drops[label].fit.to_dict()} for label, g in fits.items()},
            "held_out": {"rank": HOLD_OUT_RANK,
                         **held_out(x, ell, y, lf, x < HOLD_OUT_RANK).to_dict()}}


def _slope(records: list[TrialRecord], key: str, response: str) -> dict[str, Any]:
    """β as per-replicate slopes of one response; a replicate is the trial's data seed (fresh targets)."""
    rows = [((r.config.get("data") or {}).get("seed"), r.metrics.get(K.TARGET_TOKENS), _number(r.metrics.get(key)),
             _number(r.metrics.get(K.LOSS_FINAL))) for r in records]
    return {"response": response, **length_slope(rows, response).to_dict()}


def cell_facts(records: list[TrialRecord]) -> list[dict[str, Any]]:
    """Per (rank, ℓ) cell: replicates, each metric's mean (ΔL also its range), saturated replicates."""
    cells: dict[tuple[float, float], list[TrialRecord]] = {}
    for r in records:
        cells.setdefault((r.metrics[K.RANK], r.metrics[K.TARGET_TOKENS]), []).append(r)
    out = []
    for (rank, tokens), group in sorted(cells.items()):
        values = {k: [_number(r.metrics.get(k)) for r in group] for k in CELL_METRICS}
        dl = [v for v in values[K.DELTA_LOSS] if np.isfinite(v)]
        out.append({"rank": rank, "tokens": tokens, "trials": len(group),
                    **{k: _mean(v) for k, v in values.items()},
                    "delta_loss_range": [min(dl), max(dl)] if dl else None,
                    "saturated": int(sum(v < np.log(2) for v in values[K.LOSS_FINAL]))})
    return out


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
