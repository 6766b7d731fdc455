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

Damage is reported, never skipped in silence. Loading lists in `damaged` (file, kind, reason):
- a journal entry that is not a record ("record"): truncated or not JSON, a status memlaw never
  writes (records.STATUSES), missing fields; its record is not loaded, its file is kept;
- a torn or unreadable snapshot ("snapshot"): loading falls back to the journal entries, and the
  records the snapshot had folded in (their entries deleted) are missing from the result;
- a file in journal/ whose name is not `<10 digits>.json` ("stray", e.g. `.DS_Store`): ignored.
Writing is unaffected: the next sequence number follows every well-named entry, damaged or not,
and a snapshot never deletes a damaged entry or a stray file.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass
from typing import Iterable

from orchestrator.records.identity import distinct
from orchestrator.records.trial_record import STATUSES, TrialRecord, law_group_labels
from orchestrator.records.storage import Store
from trainables.schema import clip

JOURNAL = "journal"
SNAPSHOT = "snapshot.json"
FIT = "fit.json"
LAW_FOLDER = "memlaw"
#: A journal entry's name: its sequence number, 10 digits, then .json.
ENTRY_NAME = re.compile(r"(\d{10})\.json")
#: Longest reason kept for a damaged file (a parser's message may quote the file).
_REASON_CHARS = 300


@dataclass(frozen=True)
class Damage:
    """A file of the record log that loading could not use: `name` relative to the log's folder
    (journal/0000000003.json, snapshot.json), `kind` record | snapshot | stray, and why."""

    name: str
    kind: str
    reason: str

    @property
    def loses_records(self) -> bool:
        """A damaged record or snapshot may hide results; a stray file hides nothing."""
        return self.kind != "stray"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class DamagedFile(ValueError):
    """Why a journal entry or snapshot is not usable (a short reason, no traceback)."""


def parse_record(data: bytes | str | dict) -> TrialRecord:
    """A TrialRecord from an entry's bytes (or a snapshot's dict); DamagedFile says why not."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            raise DamagedFile(f"truncated or not JSON ({_clip(str(err))})") from None
    if not isinstance(data, dict):
        raise DamagedFile(f"not a trial record (a JSON {type(data).__name__}, not an object)")
    missing = [k for k in ("trial_id", "sweep", "status", "config") if k not in data]
    if missing:
        raise DamagedFile(f"not a trial record (missing {', '.join(missing)})")
    if data["status"] not in STATUSES:
        raise DamagedFile(f"unknown status {_clip(repr(data['status']), 60)} (memlaw writes {', '.join(STATUSES)})")
    try:
        return TrialRecord.from_dict(data)
    except (ValueError, TypeError) as err:
        raise DamagedFile(f"not a trial record ({_clip(str(err))})") from None


def _clip(text: str, limit: int = _REASON_CHARS) -> str:
    return clip(text, limit)


class RecordLog:
    """Thread-safe: the results actor may accept records on several threads."""

    def __init__(self, store: Store, snapshot_every: int = 50):
        self.store = store
        self.journal = store.child(JOURNAL)
        self.snapshot_every = snapshot_every
        self._lock = threading.Lock()
        self.records: dict[str, TrialRecord] = {}
        #: What loading could not use (see the module docstring); empty for an intact log.
        self.damaged: list[Damage] = []
        self.next_seq = 0
        self._since_snapshot = 0
        self._load()

    @classmethod
    def for_experiment(cls, experiment_uri: str, **kwargs) -> RecordLog:
        return cls(Store(experiment_uri).child(LAW_FOLDER), **kwargs)

    # -- loading -----------------------------------------------------------------------------------
    def _load(self) -> None:
        through = self._load_snapshot() if self.store.exists(SNAPSHOT) else -1
        for name in self.journal.list():
            match = ENTRY_NAME.fullmatch(name)
            if match is None:
                self.damaged.append(Damage(f"{JOURNAL}/{name}", "stray",
                                           "not a journal entry (<10 digits>.json): ignored"))
                continue
            through = max(through, int(match.group(1)))  # a damaged entry's number is taken too
            try:
                record = parse_record(self.journal.read_bytes(name))
            except DamagedFile as err:
                self.damaged.append(Damage(f"{JOURNAL}/{name}", "record", f"{err}: its record is not loaded"))
                continue
            except OSError as err:  # a folder under an entry's name, a file we may not read
                self.damaged.append(Damage(f"{JOURNAL}/{name}", "record", f"unreadable ({err.strerror or err})"))
                continue
            self._accept(record)
            self._since_snapshot += 1
        self.next_seq = through + 1

    def _load_snapshot(self) -> int:
        """Accept the snapshot's records; its through_seq, or -1 when it is torn (then the journal
        entries are all there is, and the records the snapshot had folded in are missing)."""
        try:
            snap = json.loads(self.store.read_bytes(SNAPSHOT))
            through, rows = snap["through_seq"], snap["records"]
            if not isinstance(through, int) or not isinstance(rows, list):
                raise DamagedFile("through_seq or records of the wrong type")
        except (ValueError, KeyError, TypeError, RecursionError, OSError) as err:
            self.damaged.append(Damage(SNAPSHOT, "snapshot", f"torn or unreadable ({_clip(str(err))}): fell back to "
                                                             "the journal entries; the records it held are missing"))
            return -1
        for i, data in enumerate(rows):
            try:
                self._accept(parse_record(data))
            except DamagedFile as err:
                self.damaged.append(Damage(f"{SNAPSHOT} record {i}", "record", f"{err}: not loaded"))
        return through

    @property
    def damaged_names(self) -> set[str]:
        """Journal file names that a snapshot must keep: damaged entries and stray files."""
        prefix = f"{JOURNAL}/"
        return {d.name[len(prefix):] for d in self.damaged if d.name.startswith(prefix)}

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
        keep = self.damaged_names  # evidence of damage stays until someone looks at it
        for name in self.journal.list():
            match = ENTRY_NAME.fullmatch(name)
            if match is not None and int(match.group(1)) <= through and name not in keep:
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
    """Rows for orchestrator.law.grouping.fit_groups: finished trials only (failures never reach the
    fit), one per configuration (orchestrator/records/identity.py: a repeat adds no point), each in its
    law group (trial_record.law_group_labels: trials that differ in budget, size or knobs never pool)."""
    finished = [r for r in distinct(records).records if r.ok]
    labels = law_group_labels([r.config for r in finished])
    return [{**r.law_row(), "group": label} for r, label in zip(finished, labels)]
