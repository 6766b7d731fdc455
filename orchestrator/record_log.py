"""The durable set of a sweep's trial records: an append-only journal plus periodic snapshots.

Layout, under `<experiment>/memlaw/`:

    journal/<seq:010d>.json   one accepted record per file, written atomically, never modified
    snapshot.json            every record accepted up to `through_seq`, written atomically
    fit.json                 the latest fit (a cache: always recomputable from the records)

Why one file per journal entry rather than one appended file: object stores (s3, gs) cannot
append, and a single atomic PUT per record is exactly one durable, idempotent write. A snapshot
folds the journal into one file so loading stays fast; the journal entries it covers are then
deleted. A crash between any two of these steps loses nothing: loading takes the snapshot plus
every journal entry in order and de-duplicates by trial id (the first final record wins, see
`_accept`), so a record is never counted twice either. Pure Python over `Store`: no Ray, so `memlaw law --experiment` reads it
offline.
"""

from __future__ import annotations

import threading
from typing import Iterable

from orchestrator.records import TrialRecord
from orchestrator.storage import Store

JOURNAL = "journal"
SNAPSHOT = "snapshot.json"
FIT = "fit.json"
LAW_FOLDER = "memlaw"


class RecordLog:
    """Thread-safe: the results actor may accept records on several threads."""

    def __init__(self, store: Store, snapshot_every: int = 50):
        self.store = store
        self.journal = store.child(JOURNAL)
        self.snapshot_every = snapshot_every
        self._lock = threading.Lock()
        self.records: dict[str, TrialRecord] = {}
        self.next_seq = 0
        self._since_snapshot = 0
        self._load()

    @classmethod
    def for_experiment(cls, experiment_uri: str, **kwargs) -> RecordLog:
        return cls(Store(experiment_uri).child(LAW_FOLDER), **kwargs)

    # -- loading -----------------------------------------------------------------------------------
    def _load(self) -> None:
        through = -1
        if self.store.exists(SNAPSHOT):
            snap = self.store.read_json(SNAPSHOT)
            through = snap["through_seq"]
            for data in snap["records"]:
                self._accept(TrialRecord.from_dict(data))
        entries = self.journal.list()
        for name in entries:
            seq = int(name.split(".")[0])
            try:
                record = TrialRecord.from_json(self.journal.read_bytes(name))
            except (ValueError, KeyError, TypeError):
                continue  # cannot happen with atomic writes; a foreign file is not ours to count
            self._accept(record)
            through = max(through, seq)
            self._since_snapshot += 1
        self.next_seq = through + 1

    def _accept(self, record: TrialRecord) -> bool:
        """First final record wins: a trial's first ok, failed or pruned record is its result, and a
        later one (a re-send, a replay, a second run) changes nothing. A stopped record is not final
        (the trial was cut short and `memlaw resume` trains it on): the trial's next record replaces it."""
        known = self.records.get(record.trial_id)
        if known is not None and known.final:
            return False
        self.records[record.trial_id] = record
        return True

    # -- writing -----------------------------------------------------------------------------------
    def add(self, record: TrialRecord) -> bool:
        """Persist `record` durably, then count it. False (and no write) if its trial already has a
        final record (see _accept)."""
        with self._lock:
            known = self.records.get(record.trial_id)
            if known is not None and known.final:
                return False
            seq = self.next_seq
            self.journal.write_bytes(f"{seq:010d}.json", record.to_json().encode())
            self.next_seq += 1
            self._accept(record)
            self._since_snapshot += 1
            if self._since_snapshot >= self.snapshot_every:
                self._snapshot_locked()
            return True

    def snapshot(self) -> None:
        with self._lock:
            self._snapshot_locked()

    def _snapshot_locked(self) -> None:
        through = self.next_seq - 1
        self.store.write_json(SNAPSHOT, {"through_seq": through,
                                         "records": [r.to_dict() for r in self.records.values()]})
        for name in self.journal.list():
            if int(name.split(".")[0]) <= through:
                self.journal.delete(name)
        self._since_snapshot = 0

    # -- reading -----------------------------------------------------------------------------------
    def all(self) -> list[TrialRecord]:
        with self._lock:
            return list(self.records.values())

    def ok(self) -> list[TrialRecord]:
        return [r for r in self.all() if r.ok]

    def failures(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.all():
            if not r.ok:
                counts[r.status] = counts.get(r.status, 0) + 1
        return counts


def law_rows(records: Iterable[TrialRecord]) -> list[dict]:
    """Rows for orchestrator.law.fit_groups: finished trials only (failures never reach the fit)."""
    return [r.law_row() for r in records if r.ok]
