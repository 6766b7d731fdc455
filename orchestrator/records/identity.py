"""A record is identified by what it measured, not by the Tune trial that sent it. Pure: no Ray.

    identity(record) = the hash of its resolved TrialConfig (model, data, seed, budget, method, ...)

The record log de-duplicates deliveries by trial id (a re-sent record counts once). That is not
enough: when Tune restarts an experiment (a torn state file, a second run, a grid with repeats and
no seed axis) the same configuration is trained again under a new trial id. Training is
deterministic given the config, so a second result of one identity is no new information, and
counting it would narrow every interval of the law for nothing. `distinct` applies one rule to the
records of each identity, in the log's order (the order they were accepted):

    an ok record exists      the first ok record counts; a later ok record with the same measured
                             values (MEASURED, to 1e-6 relative) is a duplicate, counted once; one
                             with other values is a conflict, named with both trial ids and values
                             (the first still counts, the fit never averages the two); failed,
                             pruned and stopped records of the identity are superseded
    no ok record             the identity counts once, as its latest final record (a failure or a
                             pruning), else its latest stopped record

The validation phase keeps its own log (`<experiment>/validation/`), so phases never meet here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from orchestrator.records.trial_record import TrialRecord, config_hash
from trainables import metric_names as K

#: The values that say what a trial measured: two ok records of one identity must agree on them.
MEASURED = (K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS, K.FRAC_P_GT_HALF, K.GREEDY_TOKEN_ACC)
RELATIVE_TOLERANCE = 1e-6


def identity(record: TrialRecord) -> str:
    return record.config_hash or config_hash(record.config)


@dataclass(frozen=True)
class Conflict:
    """Two ok records of one configuration with different measured values."""

    identity: str
    counted: str  # trial id of the record that counts
    other: str  # trial id of the record that does not
    differs: dict[str, tuple[float | None, float | None]]  # metric -> (counted, other)

    def to_dict(self) -> dict:
        return {"identity": self.identity, "counted": self.counted, "other": self.other,
                "differs": {k: list(v) for k, v in self.differs.items()}}

    def text(self) -> str:
        values = ", ".join(f"{k} {_num(a)} vs {_num(b)}" for k, (a, b) in self.differs.items())
        return (f"conflict: trials {self.counted} and {self.other} trained the same configuration "
                f"({self.identity[:12]}) with different results ({values}); {self.counted} is fitted, "
                f"{self.other} is not")


@dataclass
class Distinct:
    """The records that count, one per identity, and what was set aside and why."""

    records: list[TrialRecord] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (counted trial id, repeat's trial id)
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (counted, an unfinished or failed one)
    conflicts: list[Conflict] = field(default_factory=list)


def distinct(records: Iterable[TrialRecord]) -> Distinct:
    """One record per identity (the module's rule), in the order of each identity's first record."""
    by_identity: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_identity.setdefault(identity(record), []).append(record)
    out = Distinct()
    for key, group in by_identity.items():
        oks = [r for r in group if r.ok]
        if oks:
            counted = oks[0]
            for other in oks[1:]:
                differs = _differences(counted, other)
                if differs:
                    out.conflicts.append(Conflict(key, counted.trial_id, other.trial_id, differs))
                else:
                    out.duplicates.append((counted.trial_id, other.trial_id))
        else:
            finals = [r for r in group if r.final]
            counted = (finals or group)[-1]
        out.superseded += [(counted.trial_id, r.trial_id) for r in group if not r.ok and r is not counted]
        out.records.append(counted)
    return out


def _differences(a: TrialRecord, b: TrialRecord) -> dict[str, tuple[float | None, float | None]]:
    differs = {}
    for key in MEASURED:
        x, y = a.metrics.get(key), b.metrics.get(key)
        if x is None and y is None:
            continue
        if x is None or y is None or not math.isclose(x, y, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9):
            differs[key] = (x, y)
    return differs


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
