"""A sweep's trial records as one table (Parquet or CSV), written atomically, and read back. Pure: no Ray.

Why a table: the law is refitted, plotted and audited outside the cluster, by people with pandas or a
spreadsheet. One row per trial (TrialRecord.to_row), sorted by trial id, columns in this order:

    provenance   trial_id, sweep, status, config_hash, seed, node_id, started_at, ended_at,
                 checkpoint, error            (the TrialRecord fields)
    group        the law group label (records.group_label)
    config.*     the resolved TrialConfig, flattened with dots; lists are JSON text in one cell
    metrics      records.RESULT_KEYS; a missing metric is an empty cell. The information measures
                 (bits_above_chance, certified_bits, ...; docs/science.md §6) come before the
                 paper's ΔL-based bits_per_param, which overstates on an overconfident base

Failed trials are rows too, with their status, so an export counts faults as well as results.

Parquet is the faithful format: it keeps integers, booleans and nulls, and its schema metadata
carries provenance under the key b"memlaw" (sweeps, export time, memlaw version, row count, source,
and `runs`: the experiment's provenance.json, what each run ran on, orchestrator/experiment/provenance.py;
an experiment made before runs were recorded has `runs: []` and `runs_note: "none recorded: ..."`).
CSV is for people: it has no metadata, so the same provenance goes beside it, `<out>.provenance.json`;
`read_export` can only infer a CSV's types, except for the provenance and group columns, which always
come back as text (a trial id "00042" stays "00042").

What does not survive a round trip (both formats): a metric that is None, NaN or absent is one
empty cell, so it comes back absent; metric keys outside RESULT_KEYS are not exported; an empty
nested dict in a config has no column. Records of one experiment share the TrialConfig layout, so
their config keys do survive.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import posixpath
from datetime import datetime, timezone
from typing import Any, Iterable

import pandas as pd

from orchestrator.experiment.provenance import memlaw_version, read_runs
from orchestrator.records.journal import LAW_FOLDER, Damage, RecordLog
from orchestrator.records.trial_record import RESULT_KEYS, TrialRecord
from orchestrator.records.storage import Store, split_uri

FORMATS = (".parquet", ".csv")
#: Key of the provenance JSON in a Parquet file's schema metadata.
METADATA_KEY = b"memlaw"
#: What a CSV export's provenance file is called: the CSV's name plus this.
CSV_PROVENANCE_SUFFIX = ".provenance.json"
_PROVENANCE = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name not in ("config", "metrics"))
#: Columns that are text whatever they look like (derived from TrialRecord's annotations).
TEXT_COLUMNS = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.type in ("str", "str | None")) + (
    "group",)
#: pandas < 3 parses CSV floats with a fast parser that may miss the last bit; 3 made exact parsing
#: the default and deprecated the option.
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


# -- reading an experiment -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExperimentRecords:
    """What an experiment's record log holds: its records, sorted by trial id, and the files that
    loading could not use (record_log.Damage: damaged entries, a torn snapshot, stray files)."""

    path: str
    records: list[TrialRecord]
    damaged: list[Damage]

    @property
    def log_folder(self) -> str:
        """Where the damaged files' names are relative to: `<experiment>/memlaw`."""
        return f"{self.path.rstrip('/')}/{LAW_FOLDER}"


def read_experiment(experiment_path: str) -> ExperimentRecords:
    """Every record of an experiment, and what could not be read. Creates nothing.

    A path that does not exist is an error rather than an empty sweep: a typo would silently
    export nothing.
    """
    scheme, root = split_uri(experiment_path)
    if scheme is None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no experiment folder at {experiment_path!r}")
    else:
        store = Store(experiment_path)  # StorageError (a ValueError) for a scheme fsspec does not know
        if not store.fs.exists(store.root):
            raise FileNotFoundError(f"no experiment at {experiment_path!r}")
    log = RecordLog.for_experiment(experiment_path)
    return ExperimentRecords(experiment_path, sorted(log.all(), key=lambda r: r.trial_id), list(log.damaged))


def load_experiment(experiment_path: str) -> list[TrialRecord]:
    """Every record of an experiment, sorted by trial id (read_experiment without the damage list)."""
    return read_experiment(experiment_path).records


# -- the table -------------------------------------------------------------------------------------


def records_frame(records: Iterable[TrialRecord]) -> pd.DataFrame:
    """One row per trial, sorted by trial id; nullable dtypes so an integer column with gaps stays integer."""
    rows = [r.to_row() for r in sorted(records, key=lambda r: r.trial_id)]
    config_columns = dict.fromkeys(k for row in rows for k in row if k.startswith("config."))
    columns = [*_PROVENANCE, "group", *config_columns, *RESULT_KEYS]  # all but config.* even when empty
    return pd.DataFrame({c: pd.array([row.get(c) for row in rows]) for c in columns}, columns=columns)


def export_format(path: str) -> str:
    """The suffix of `path` that picks the format; ValueError for any other."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot export to {path!r}: the file name must end in one of {', '.join(FORMATS)}")
    return suffix


def check_writable(out: str) -> None:
    """ValueError naming `out` when a local output file cannot be written there: a folder in its
    place, a file where one of its folders should be, a folder this user may not write in. Checked
    before any work; a failed write is still caught at the write (and leaves the old file)."""
    scheme, path = split_uri(out)
    if scheme is not None:
        return
    if os.path.isdir(path):
        raise ValueError(f"cannot write {out!r}: it is a folder (name a file)")
    folder = os.path.dirname(path)
    while folder and not os.path.exists(folder):  # the nearest folder that exists: the rest will be made
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {out!r}: {folder!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {out!r}: no permission to write in {folder!r}")


def export(experiment_path: str, out: str, loaded: ExperimentRecords | None = None) -> int:
    """Write every record of the experiment to `out` (.parquet or .csv, local path or URI); rows written.
    `loaded`: the experiment already read with read_experiment (the CLI reads it once, to report damage).
    A CSV's provenance goes to `<out>.provenance.json`, written after the CSV: a CSV that could not be
    written leaves no provenance file claiming it."""
    suffix = export_format(out)
    records = (loaded or read_experiment(experiment_path)).records
    frame = records_frame(records)
    provenance = _provenance(records, experiment_path)
    if suffix == ".parquet":
        write_output(out, _parquet_bytes(frame, provenance))
    else:
        write_output(out, frame.to_csv(index=False).encode())
        write_output(out + CSV_PROVENANCE_SUFFIX, (json.dumps(provenance, indent=1) + "\n").encode())
    return len(frame)


def write_output(out: str, data: bytes) -> None:
    """Replace the file `out` with `data` atomically: the old file or the new one, never a torn mix.

    Storage.Store does the work (temp file in the same folder, fsync, os.replace, folder fsync;
    one PUT on object stores); this only splits `out` into its folder and name.
    """
    scheme, path = split_uri(out)
    folder, name = (os.path.split(path) if scheme is None else posixpath.split(path))
    if not name:
        raise ValueError(f"{out!r} names a folder, not a file")
    Store(folder if scheme is None else f"{scheme}://{folder}").write_bytes(name, data)


def _provenance(records: list[TrialRecord], experiment_path: str) -> dict[str, Any]:
    """The export's own facts (memlaw_version: the exporting memlaw) and the runs that made the records."""
    runs, runs_note = read_runs(experiment_path)
    return {
        "sweeps": sorted({r.sweep for r in records}),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "memlaw_version": memlaw_version(),
        "rows": len(records),
        "experiment": experiment_path,
        "runs": runs,
        "runs_note": runs_note,
    }


def _parquet_bytes(frame: pd.DataFrame, provenance: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(provenance).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(schema_metadata), buffer)
    return buffer.getvalue()


# -- reading an export back ------------------------------------------------------------------------


def read_export(path: str) -> list[TrialRecord]:
    """The records of an export (either format, local path or URI), in file order."""
    suffix = export_format(path)
    data = _read_bytes(path)
    rows = _parquet_rows(data) if suffix == ".parquet" else _csv_rows(data)
    return [TrialRecord.from_row(row) for row in rows]


def export_metadata(path: str) -> dict[str, Any]:
    """The provenance of an export (see module docstring): a Parquet file's own metadata, a CSV's
    `<path>.provenance.json`; {} when it has none."""
    import pyarrow.parquet as pq

    if export_format(path) != ".parquet":
        try:
            return json.loads(_read_bytes(path + CSV_PROVENANCE_SUFFIX))
        except FileNotFoundError:
            return {}
    schema = pq.read_schema(io.BytesIO(_read_bytes(path)))
    blob = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(blob) if blob else {}


def _read_bytes(path: str) -> bytes:
    import fsspec

    with fsspec.open(path, "rb") as fh:
        return fh.read()


def _parquet_rows(data: bytes) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()  # plain Python values, None for nulls


def _csv_rows(data: bytes) -> list[dict[str, Any]]:
    """Only empty cells are missing: a status "nan" (a failure category) must stay text."""
    frame = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""],
                        dtype_backend="numpy_nullable", dtype={c: str for c in TEXT_COLUMNS}, **_EXACT_FLOATS)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
