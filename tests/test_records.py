"""Tests for the pure record path: TrialRecord, Store, RecordLog and the law report.

No Ray here: records round-trip through JSON and pandas rows, the record log is exercised on a
temporary folder (and on fsspec's in-process `memory://`), crashes between a snapshot and the
journal clean-up are simulated by putting journal files back by hand, and the report is checked
against records drawn from a known law.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the editable install may predate the packages' __init__ files

from orchestrator.report import law_report  # noqa: E402
from orchestrator.records import storage  # noqa: E402
from orchestrator.config.sweep import FitConfig  # noqa: E402
from orchestrator.records.journal import JOURNAL, LAW_FOLDER, SNAPSHOT, Damage, RecordLog, law_rows  # noqa: E402
from orchestrator.records.trial_record import (  # noqa: E402
    GROUP_FIELDS, RESULT_KEYS, STATUSES, TrialRecord, config_hash, group_label, record_from_result,
)
from trainables import metric_names as K  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402

LOSS_INIT = 6.0
LAW = dict(C=2.0, alpha=0.75, beta=0.6, b=0.05)
RANKS = (1, 2, 4, 8)
LENGTHS = (64, 128, 256, 512)


def law_delta(rank: float, ell: float, law: dict = LAW) -> float:
    return law["C"] * rank ** law["alpha"] * ell ** -law["beta"] + law["b"]


def config(rank: int = 8, ell: int = 64, *, model: str = "tiny-s", kind: str = "random", share: float = 0.0,
           placement: str = "paper", method: str = "sft", seed: int = 42) -> dict:
    """The real nested TrialConfig layout (lists and None fields included) with the group fields set."""
    cfg = TrialConfig().to_dict()
    cfg["adapter"]["rank"], cfg["data"]["target_tokens"] = rank, ell
    cfg["model"]["name"], cfg["data"]["kind"], cfg["data"]["random_share"] = model, kind, share
    cfg["adapter"]["placement"], cfg["method"]["name"], cfg["seed"] = placement, method, seed
    return cfg


def result(rank: int, ell: int, delta: float, **extra) -> dict:
    """A trial's last result as Tune hands it over: our metrics plus Tune's bookkeeping keys."""
    out = {
        K.STEP: 300, K.LOSS_INIT: LOSS_INIT, K.LOSS_FINAL: LOSS_INIT - delta, K.DELTA_LOSS: delta,
        K.FRAC_P_GT_HALF: 0.25, K.FIRST_SUBTHRESHOLD_POS: 3.0, K.TF_TOKEN_ACC: 0.5, K.FIRST_TF_ERROR_POS: 4.0,
        K.FRAC_SEQUENCES_CERTIFIED: 0.0, K.GREEDY_TOKEN_ACC: 0.4, K.GREEDY_EXACT_MATCH: 0.0,
        K.FIRST_GREEDY_ERROR_POS: 2.0, K.GREEDY_EVALUATED: True, K.STEPS_TO_CERTIFIED: None,
        K.STABLE_CERTIFIED_FROM: 301, K.CERTIFICATION_LOSSES: 0, K.RANK: rank,
        K.TRAINABLE_PARAMS: rank * 128, K.TARGET_TOKENS: ell,
        K.BITS_PER_PARAM: ell * delta / math.log(2) / (rank * 128), K.WALL_S: 1.5, K.FINISHED: True,
        K.CANDIDATE_TOKENS: 509, K.LOSS_CHANCE: math.log(509), K.LOSS_REF: math.log(509),
        K.DROP_BELOW_CHANCE: math.log(509) - (LOSS_INIT - delta), K.BITS_ABOVE_CHANCE: 100.0,
        K.BITS_ABOVE_CHANCE_PER_PARAM: 100.0 / (rank * 128), K.CERTIFIED_BITS: 0.0, K.CERTIFIED_BITS_PER_PARAM: 0.0,
        K.DELTA_LOSS_HALF: delta / 1.02, K.DELTA_LOSS_HALF_STEP: 150, K.CONVERGENCE_RATIO: 1.02,
        K.PER_SEQUENCE: [{K.SEQ_CERTIFIED: False, K.SEQ_TARGET_TOKENS: ell}],
        "timestamp": 1_700_000_100.0, "time_total_s": 12.5, "node_ip": "10.0.0.7", "hostname": "worker-3",
        "training_iteration": 31, "trial_id": "ignored",
    }
    out.update(extra)
    return out


def record(trial_id: str, rank: int = 8, ell: int = 64, delta: float | None = None, *, status: str = "ok",
           sweep: str = "law", **config_kw) -> TrialRecord:
    delta = law_delta(rank, ell) if delta is None else delta
    return record_from_result(trial_id, sweep, config(rank, ell, **config_kw), result(rank, ell, delta),
                              status=status, error=None if status == "ok" else f"trial failed: {status}")


def journal_names(root: Path) -> list[str]:
    folder = root / LAW_FOLDER / JOURNAL
    return sorted(os.listdir(folder)) if folder.is_dir() else []


# -- TrialRecord ----------------------------------------------------------------------------------


def full_record() -> TrialRecord:
    rec = record("a1b2c3_00007", rank=4, ell=128, share=0.25, method="memft")
    return TrialRecord(**{**rec.to_dict(), "checkpoint": "/exp/trial_7/checkpoint_000002",
                          "metrics": {**rec.metrics, K.STEPS_TO_CERTIFIED: 120}})


def without_empty_metrics(rec: TrialRecord) -> TrialRecord:
    metrics = {k: v for k, v in rec.metrics.items() if v is not None}
    return TrialRecord(**{**rec.to_dict(), "metrics": metrics})


def test_json_round_trip_is_exact_and_deterministic():
    rec = full_record()
    text = rec.to_json()
    back = TrialRecord.from_json(text)
    assert back == rec
    assert back.to_json() == text  # sorted keys, fixed separators: same bytes every time
    assert TrialRecord.from_json(text.encode()) == rec  # the journal hands bytes over
    assert json.loads(text)["config"]["adapter"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_from_dict_ignores_unknown_keys():
    data = {**full_record().to_dict(), "added_by_a_newer_version": 1}
    assert TrialRecord.from_dict(data) == full_record()


def test_row_round_trip_is_exact():
    rec = full_record()
    row = rec.to_row()
    assert row["group"] == rec.group
    assert row["config.adapter.rank"] == 4 and row["config.data.random_share"] == 0.25
    assert row["config.adapter.target_modules"] == json.dumps(["q_proj", "k_proj", "v_proj", "o_proj"])
    assert all(not isinstance(v, (dict, list)) for v in row.values()), "rows must stay scalar for Parquet"
    assert set(RESULT_KEYS) <= set(row)
    assert TrialRecord.from_row(row) == rec


def test_rows_round_trip_through_a_dataframe():
    """pandas turns missing metrics into NaN and ints into numpy scalars; from_row undoes both."""
    records = [full_record(), record("00002", rank=1, ell=512),
               record_from_result("00003", "law", config(2, 256), {K.STEP: 40, K.LOSS_INIT: LOSS_INIT},
                                  status="nan", error="loss became NaN")]
    assert records[1].metrics[K.STEPS_TO_CERTIFIED] is None  # "never certified"
    frame = pd.DataFrame([r.to_row() for r in records])
    back = [TrialRecord.from_row(row) for row in frame.to_dict(orient="records")]
    # a row cannot tell a None metric from an absent one: both are one empty cell (as in exports)
    assert back == [without_empty_metrics(r) for r in records]
    assert back[0] == records[0]
    assert back[1].trial_id == "00002" and isinstance(back[1].seed, int)
    assert back[2].metrics == {K.STEP: 40, K.LOSS_INIT: LOSS_INIT}


@pytest.mark.parametrize("status", STATUSES)
def test_every_known_status_is_accepted(status):
    rec = record("t1", status=status)
    assert rec.status == status and rec.ok == (status == "ok")


@pytest.mark.parametrize("status", ["", "OK", "failed", "terminated", None])
def test_unknown_status_is_refused(status):
    with pytest.raises(ValueError, match="status"):
        TrialRecord(trial_id="t1", sweep="law", status=status, config={})
    with pytest.raises(ValueError, match="status"):
        text = record("t1").to_json().replace('"status":"ok"', f'"status":{json.dumps(status)}')
        TrialRecord.from_json(text)


def test_empty_trial_id_is_refused():
    with pytest.raises(ValueError, match="trial_id"):
        TrialRecord(trial_id="", sweep="law", status="ok", config={})


def test_group_label_joins_the_group_fields():
    cfg = config(share=0.25, model="smollm2", kind="text", placement="single_layer", method="memft")
    assert [section for section, _ in GROUP_FIELDS] == ["model", "data", "data", "adapter", "method"]
    assert group_label(cfg) == "smollm2|text|0.25|single_layer|memft"
    assert record("t", share=0.25, model="smollm2", kind="text", placement="single_layer",
                  method="memft").group == "smollm2|text|0.25|single_layer|memft"
    # the rank, the length and the seed are what the law varies over, never part of the group
    assert group_label(config(1, 64, seed=1)) == group_label(config(8, 4096, seed=2))
    assert group_label(config()) == "tiny-s|random|0|paper|sft"
    assert group_label({}) == "None|None|None|None|None"  # a missing section does not raise


def test_group_label_agrees_across_int_and_float_shares():
    assert group_label(config(share=1.0)) == group_label(config(share=1)) == "tiny-s|random|1|paper|sft"
    assert group_label(config(share=0.1)) != group_label(config(share=0.01))


def test_record_from_result_keeps_result_keys_and_provenance():
    cfg = config(4, 256, seed=7)
    res = result(4, 256, 0.3)
    rec = record_from_result("tid_1", "law", cfg, res)
    assert set(rec.metrics) == set(RESULT_KEYS) and K.GREEDY_EVALUATED not in RESULT_KEYS
    assert rec.metrics == {k: res[k] for k in RESULT_KEYS}
    for dropped in (K.GREEDY_EVALUATED, K.PER_SEQUENCE, "timestamp", "time_total_s", "node_ip",
                    "training_iteration", "trial_id"):
        assert dropped not in rec.metrics
    assert rec.trial_id == "tid_1" and rec.sweep == "law" and rec.status == "ok" and rec.error is None
    assert rec.node_id == "10.0.0.7"  # the node's IP from Tune's result
    assert rec.ended_at == 1_700_000_100.0
    assert rec.started_at == pytest.approx(1_700_000_100.0 - 12.5)
    assert rec.seed == 7 and rec.config == cfg and rec.config is not cfg
    assert rec.config_hash == config_hash(cfg) and len(rec.config_hash) == 16
    reordered = json.loads(json.dumps(cfg))
    reordered = {k: reordered[k] for k in reversed(list(reordered))}
    assert config_hash(reordered) == rec.config_hash  # the hash does not depend on key order
    assert config_hash(config(4, 512, seed=7)) != rec.config_hash


def test_record_from_result_provenance_fallbacks():
    cfg = config()
    res = result(8, 64, 0.4)
    assert record_from_result("t", "law", cfg, res, node_id="node-x").node_id == "node-x"  # explicit wins
    del res["node_ip"]
    assert record_from_result("t", "law", cfg, res).node_id == "worker-3"  # then the hostname
    del res["time_total_s"]
    rec = record_from_result("t", "law", cfg, res)
    assert rec.started_at is None and rec.ended_at == 1_700_000_100.0
    empty = record_from_result("t", "law", cfg, None, status="oom", error="killed")
    assert empty.metrics == {} and empty.node_id is None
    assert empty.started_at is None and empty.ended_at is None
    assert empty.status == "oom" and empty.error == "killed" and not empty.ok


# -- Store ----------------------------------------------------------------------------------------


def test_store_writes_atomically_and_lists_only_finished_files(tmp_path, monkeypatch):
    store = storage.Store(str(tmp_path / "exp"))
    store.write_json("a.json", {"v": 1})
    store.write_bytes("b.bin", b"xyz")
    assert store.read_json("a.json") == {"v": 1} and store.read_bytes("b.bin") == b"xyz"
    (tmp_path / "exp" / ".tmp-leftover").write_text("torn")
    assert store.list() == ["a.json", "b.bin"] and store.list("a") == ["a.json"]

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write_json("a.json", {"v": 2})
    monkeypatch.undo()
    assert store.read_json("a.json") == {"v": 1}  # the old version, never a torn mix
    # our own temp file is gone (the leftover is the one the test planted)
    assert sorted(os.listdir(tmp_path / "exp")) == [".tmp-leftover", "a.json", "b.bin"]
    store.delete("a.json")
    store.delete("a.json")  # deleting twice is fine
    assert not store.exists("a.json")


def test_store_uris(tmp_path):
    local = storage.Store(f"file://{tmp_path}/viauri")
    assert local.is_local and local.root == str(tmp_path / "viauri") and not (tmp_path / "viauri").exists()
    with pytest.raises(storage.StorageError, match="unknown storage scheme"):
        storage.Store("nosuchscheme://bucket/x")
    assert storage.check_uri(str(tmp_path)) is None and storage.check_uri("s3://bucket/x") is None
    remote = storage.Store(f"memory://memlaw-test-{uuid.uuid4().hex}")
    remote.write_json("x.json", [1, 2])
    assert not remote.is_local and remote.read_json("x.json") == [1, 2] and remote.list() == ["x.json"]
    child = remote.child("sub")
    child.write_bytes("y", b"1")
    assert child.list() == ["y"] and remote.exists("sub/y")


def test_a_store_creates_its_folder_only_when_it_writes(tmp_path):
    """Reading a mistyped path leaves nothing behind (issue 14): the read-only commands build Stores
    for it; only the first write makes the folder and its parents."""
    store = storage.Store(str(tmp_path / "typo" / "exp"))
    child = store.child(LAW_FOLDER, JOURNAL)
    assert child.list() == [] and not store.exists("x.json") and not (tmp_path / "typo").exists()
    log = RecordLog(store.child(LAW_FOLDER))
    assert log.all() == [] and log.damaged == [] and not (tmp_path / "typo").exists()
    child.write_bytes("0000000000.json", b"{}")
    assert (tmp_path / "typo" / "exp" / LAW_FOLDER / JOURNAL / "0000000000.json").is_file()
    remote = storage.Store(f"memory://memlaw-test-{uuid.uuid4().hex}/typo")
    assert not remote.fs.exists(remote.root) and remote.list() == []
    remote.write_json("a.json", 1)
    assert remote.fs.exists(remote.root) and remote.read_json("a.json") == 1


# -- RecordLog ------------------------------------------------------------------------------------


def test_add_counts_a_trial_id_once(tmp_path):
    log = RecordLog.for_experiment(str(tmp_path))
    first = record("t1", rank=2)
    assert log.add(first) is True
    assert journal_names(tmp_path) == ["0000000000.json"]
    resent = record("t1", rank=16)  # same trial id, other content: the first acceptance wins
    assert log.add(resent) is False
    assert log.add(first) is False
    assert journal_names(tmp_path) == ["0000000000.json"], "a re-sent record must not be written again"
    assert log.all() == [first]
    assert log.add(record("t2")) is True
    assert journal_names(tmp_path) == ["0000000000.json", "0000000001.json"]
    assert [r.trial_id for r in log.all()] == ["t1", "t2"]


def test_reopened_log_sees_the_same_records(tmp_path):
    log = RecordLog.for_experiment(str(tmp_path))
    records = [record(f"t{i}", rank=r, ell=e) for i, (r, e) in enumerate([(1, 64), (2, 128), (4, 256)])]
    records.append(record("f1", status="error"))
    for rec in records:
        assert log.add(rec)
    again = RecordLog.for_experiment(str(tmp_path))
    assert sorted(again.all(), key=lambda r: r.trial_id) == sorted(records, key=lambda r: r.trial_id)
    assert again.next_seq == 4
    assert again.add(records[0]) is False  # still de-duplicated after a reload
    assert again.add(record("t9")) is True
    assert journal_names(tmp_path)[-1] == "0000000004.json"


def test_snapshot_every_three_compacts_the_journal(tmp_path):
    log = RecordLog.for_experiment(str(tmp_path), snapshot_every=3)
    for i in range(2):
        log.add(record(f"t{i}", rank=2 ** i))
    assert not (tmp_path / LAW_FOLDER / SNAPSHOT).exists() and len(journal_names(tmp_path)) == 2
    log.add(record("t2", rank=4))
    snap = json.loads((tmp_path / LAW_FOLDER / SNAPSHOT).read_text())
    assert snap["through_seq"] == 2 and [r["trial_id"] for r in snap["records"]] == ["t0", "t1", "t2"]
    assert journal_names(tmp_path) == []
    log.add(record("t3", rank=8))
    assert journal_names(tmp_path) == ["0000000003.json"]
    assert log.add(record("t1")) is False  # a duplicate neither writes nor moves the snapshot counter
    assert journal_names(tmp_path) == ["0000000003.json"]
    again = RecordLog.for_experiment(str(tmp_path), snapshot_every=3)
    assert [r.trial_id for r in again.all()] == ["t0", "t1", "t2", "t3"] and again.next_seq == 4
    for i in (4, 5):
        again.add(record(f"t{i}"))  # the reloaded journal entry counts toward the next snapshot
    assert journal_names(tmp_path) == []
    assert json.loads((tmp_path / LAW_FOLDER / SNAPSHOT).read_text())["through_seq"] == 5
    assert len(RecordLog.for_experiment(str(tmp_path)).all()) == 6


def test_crash_between_snapshot_and_journal_cleanup_counts_nothing_twice(tmp_path):
    log = RecordLog.for_experiment(str(tmp_path), snapshot_every=1000)
    records = [record(f"t{i}", rank=r) for i, r in enumerate(RANKS)] + [record("bad", status="nan", seed=7)]
    for rec in records:
        log.add(rec)
    journal = tmp_path / LAW_FOLDER / JOURNAL
    saved = {name: (journal / name).read_bytes() for name in journal_names(tmp_path)}
    log.snapshot()
    assert journal_names(tmp_path) == []
    for name, data in saved.items():  # the crash: the snapshot is written, the journal entries remain
        (journal / name).write_bytes(data)

    reloaded = RecordLog.for_experiment(str(tmp_path), snapshot_every=1000)
    assert len(reloaded.all()) == 5
    assert sorted(reloaded.all(), key=lambda r: r.trial_id) == sorted(records, key=lambda r: r.trial_id)
    assert reloaded.failures() == {"nan": 1} and len(reloaded.ok()) == 4
    assert len(law_rows(reloaded.all())) == 4
    report = law_report.build_report("law", reloaded.all())
    assert report["trials_accepted"] == 5 and report["trials_ok"] == 4
    assert reloaded.next_seq == 5  # new entries never overwrite a leftover one
    assert reloaded.add(records[0]) is False and reloaded.add(record("t9")) is True
    assert journal_names(tmp_path)[-1] == "0000000005.json"
    reloaded.snapshot()  # the next snapshot folds the leftovers away
    snap = json.loads((tmp_path / LAW_FOLDER / SNAPSHOT).read_text())
    assert journal_names(tmp_path) == [] and len(snap["records"]) == 6 and snap["through_seq"] == 5


def test_a_journal_entry_that_repeats_a_snapshot_record_is_ignored(tmp_path):
    """A re-sent record written after the snapshot (its id already known) still counts once."""
    log = RecordLog.for_experiment(str(tmp_path), snapshot_every=2)
    log.add(record("t0", rank=1))
    log.add(record("t1", rank=2))
    duplicate = record("t1", rank=64)  # same id, another content, as a later seq
    (tmp_path / LAW_FOLDER / JOURNAL / "0000000007.json").write_text(duplicate.to_json())
    (tmp_path / LAW_FOLDER / JOURNAL / "0000000008.json").write_text("not a record")
    again = RecordLog.for_experiment(str(tmp_path))
    assert [(r.trial_id, r.metrics[K.RANK]) for r in again.all()] == [("t0", 1), ("t1", 2)]
    assert again.next_seq == 9  # the damaged entry's number is taken too: it is never overwritten
    assert [(d.name, d.kind) for d in again.damaged] == [(f"{JOURNAL}/0000000008.json", "record")]


def write_damaged_journal(tmp_path: Path) -> Path:
    """Three good records (seq 0-2), then every kind of damage a journal folder can show."""
    log = RecordLog.for_experiment(str(tmp_path), snapshot_every=1000)
    for i in range(3):
        assert log.add(record(f"t{i}", rank=2 ** i))
    journal = tmp_path / LAW_FOLDER / JOURNAL
    good = record("t9").to_json()
    (journal / "0000000003.json").write_text(good[: len(good) // 2])  # truncated
    (journal / "0000000004.json").write_text(good.replace('"status":"ok"', '"status":"okay"'))  # unknown status
    (journal / "0000000005.json").write_text("[1, 2]")  # JSON, but not an object
    (journal / "0000000006.json").write_text('{"trial_id": "t8"}')  # missing fields
    (journal / "0000000007.json").mkdir()  # a folder under an entry's name
    (journal / "0000000008.json").write_bytes(b"\xff\xfe not utf-8")
    (journal / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # strays: ignored, listed
    (journal / "notes.txt").write_text("my notes")
    (journal / "0000000009.json.bak").write_text(good)
    return journal


def test_damaged_journal_files_are_listed_with_their_reason_never_skipped_in_silence(tmp_path):
    journal = write_damaged_journal(tmp_path)
    log = RecordLog.for_experiment(str(tmp_path), snapshot_every=1000)
    assert [r.trial_id for r in log.all()] == ["t0", "t1", "t2"]
    found = {d.name.split("/", 1)[1]: d for d in log.damaged}
    assert {n: d.kind for n, d in found.items()} == {
        **{f"000000000{i}.json": "record" for i in range(3, 9)},
        ".DS_Store": "stray", "notes.txt": "stray", "0000000009.json.bak": "stray"}
    assert found["0000000003.json"].reason.startswith("truncated or not JSON")
    assert found["0000000004.json"].reason.startswith("unknown status 'okay' (memlaw writes ok, nan, inf, error, "
                                                      "timeout, oom, pruned, stopped)")
    assert "not an object" in found["0000000005.json"].reason
    assert "missing sweep, status, config" in found["0000000006.json"].reason
    assert found["0000000007.json"].reason.startswith("unreadable")
    assert found["0000000008.json"].reason.startswith("truncated or not JSON")
    assert all("ignored" in found[n].reason and not found[n].loses_records for n in (".DS_Store", "notes.txt"))
    assert all(len(d.reason) < 400 for d in log.damaged)
    # the writer side: the next number follows every well-named entry, damaged or not
    assert log.next_seq == 9
    assert log.add(record("t3")) and (journal / "0000000009.json").is_file()
    log.snapshot()  # folds the good entries away, keeps the evidence
    left = sorted(os.listdir(journal))
    assert left == sorted([*(f"000000000{i}.json" for i in range(3, 9)), ".DS_Store", "notes.txt",
                           "0000000009.json.bak"])
    again = RecordLog.for_experiment(str(tmp_path))
    assert [r.trial_id for r in again.all()] == ["t0", "t1", "t2", "t3"] and again.next_seq == 10
    assert sorted(d.name for d in again.damaged) == sorted(d.name for d in log.damaged)
    assert again.add(record("t4")) and (journal / "0000000010.json").is_file()


def test_a_torn_snapshot_falls_back_to_the_journal_and_says_so(tmp_path):
    log = RecordLog.for_experiment(str(tmp_path), snapshot_every=3)
    for i in range(5):
        log.add(record(f"t{i}"))  # t0-t2 folded into the snapshot, t3 and t4 in the journal
    snap = tmp_path / LAW_FOLDER / SNAPSHOT
    snap.write_bytes(snap.read_bytes()[:40])  # torn (atomic writes make this a foreign hand's doing)
    again = RecordLog.for_experiment(str(tmp_path))
    assert [r.trial_id for r in again.all()] == ["t3", "t4"]
    assert again.damaged == [Damage(SNAPSHOT, "snapshot", again.damaged[0].reason)]
    assert "fell back to the journal entries" in again.damaged[0].reason and again.next_seq == 5
    bad = json.loads(json.dumps({"through_seq": 2, "records": [record("s0").to_dict(),
                                                                {**record("s1").to_dict(), "status": "??"}]}))
    snap.write_text(json.dumps(bad))
    mixed = RecordLog.for_experiment(str(tmp_path))
    assert [r.trial_id for r in mixed.all()] == ["s0", "t3", "t4"]
    assert [(d.name, d.kind) for d in mixed.damaged] == [(f"{SNAPSHOT} record 1", "record")]


def test_failures_count_by_status(tmp_path):
    log = RecordLog.for_experiment(str(tmp_path))
    statuses = ["ok", "nan", "ok", "oom", "nan", "error", "timeout", "nan", "ok"]
    for i, status in enumerate(statuses):
        log.add(record(f"t{i}", status=status))
    assert log.failures() == {"nan": 3, "oom": 1, "error": 1, "timeout": 1}
    assert [r.trial_id for r in log.ok()] == ["t0", "t2", "t8"]
    assert RecordLog.for_experiment(str(tmp_path)).failures() == log.failures()


def test_record_log_on_an_fsspec_uri():
    uri = f"memory://memlaw-test-{uuid.uuid4().hex}/exp"
    log = RecordLog.for_experiment(uri, snapshot_every=3)
    for i in range(4):
        assert log.add(record(f"t{i}"))
    assert log.add(record("t0")) is False
    assert log.journal.list() == ["0000000003.json"] and log.store.exists(SNAPSHOT)
    assert [r.trial_id for r in RecordLog.for_experiment(uri).all()] == ["t0", "t1", "t2", "t3"]


# -- the report -----------------------------------------------------------------------------------


def law_records(noise: float = 0.01, seed: int = 0) -> list[TrialRecord]:
    """ranks × lengths from LAW in group sft, a second law in group memft, and failed trials whose
    metrics would wreck the fit if they reached it."""
    rng = np.random.default_rng(seed)
    out = []
    for method, law in (("sft", LAW), ("memft", dict(C=1.0, alpha=0.5, beta=0.4, b=0.02))):
        for rank in RANKS:
            for ell in LENGTHS:
                delta = law_delta(rank, ell, law) * math.exp(noise * rng.standard_normal())
                out.append(record(f"{method}-{rank}-{ell}", rank, ell, delta, method=method, share=0.0))
    assert min(r.metrics[K.LOSS_FINAL] for r in out) > 5.0  # well above ln 2: nothing saturated
    for i, status in enumerate(["nan", "oom", "nan"]):
        poison = result(8, 64, 50.0, **{K.LOSS_FINAL: 4.0})  # a ΔL of 50 nats would drag α up
        out.append(record_from_result(f"failed-{i}", "law", config(8, 64, seed=1000 + i), poison, status=status,
                                      error="x"))  # its own seed: a failure of an ok config is superseded
    rng.shuffle(out)
    return out


def test_build_report_recovers_the_law_and_leaves_failures_out():
    records = law_records()
    report = law_report.build_report("law", records)
    assert report["sweep"] == "law" and report["capacity_variable"] == K.RANK
    assert report["trials_accepted"] == 35 and report["trials_ok"] == 32
    assert report["trials_failed"] == {"nan": 2, "oom": 1}
    assert report["trial_ids"] == sorted(r.trial_id for r in records)
    assert set(report["groups"]) == {"tiny-s|random|0|paper|sft", "tiny-s|random|0|paper|memft"}
    sft = report["groups"]["tiny-s|random|0|paper|sft"]
    fit = sft["fit"]
    assert fit["status"] == "ok", fit["message"]
    assert sft["n_rows"] == 16 and fit["n_points"] == 16 and fit["n_invalid"] == 0 and fit["n_excluded"] == 0
    assert fit["alpha"] == pytest.approx(0.75, abs=0.03) and fit["beta"] == pytest.approx(0.6, abs=0.03)
    for key in ("alpha", "beta"):  # one draw: the interval need not cover the truth, but it must be tight
        low, high = fit[f"{key}_ci"]
        assert low < fit[key] < high and high - low < 0.1
    assert fit["C"] == pytest.approx(2.0, rel=0.15) and fit["b"] == pytest.approx(0.05, abs=0.02)
    assert fit["r2"] > 0.99 and fit["mape"] < 2.0
    memft = report["groups"]["tiny-s|random|0|paper|memft"]["fit"]
    assert memft["alpha"] == pytest.approx(0.5, abs=0.05) and memft["beta"] == pytest.approx(0.4, abs=0.05)
    assert sft["params_per_rank"] == 128 and sft["loss_init_mean"] == pytest.approx(LOSS_INIT)
    ok_only = law_report.build_report("law", [r for r in records if r.ok])
    assert ok_only["groups"] == report["groups"], "failed trials must not reach the fit"
    json.dumps(report, allow_nan=False)  # what fit.json and the actor hand out


def test_build_report_does_not_depend_on_record_order():
    records = law_records()
    a = law_report.build_report("law", records)
    b = law_report.build_report("law", list(reversed(records)))
    assert a["groups"] == b["groups"] and a["trial_ids"] == b["trial_ids"]


def test_build_report_with_parameters_as_capacity():
    report = law_report.build_report("law", law_records(), FitConfig(capacity_variable=K.TRAINABLE_PARAMS))
    fit = report["groups"]["tiny-s|random|0|paper|sft"]["fit"]
    assert fit["capacity_variable"] == K.TRAINABLE_PARAMS and fit["alpha"] == pytest.approx(0.75, abs=0.03)


def test_empty_and_failures_only_reports():
    empty = law_report.build_report("s", [])
    assert empty["groups"] == {} and empty["trials_accepted"] == 0 and empty["trial_ids"] == []
    assert "no finished trials yet" in law_report.format_report(empty)
    failed = law_report.build_report("s", [record("f", status="timeout")])
    assert failed["groups"] == {} and failed["trials_failed"] == {"timeout": 1} and failed["trials_ok"] == 0


def test_flat_fits_and_format_report():
    report = law_report.build_report("law", law_records())
    rows = law_report.flat_fits(report)
    assert [r["group"] for r in rows] == sorted(report["groups"])
    for row in rows:
        fit = report["groups"][row["group"]]["fit"]
        for key in ("C", "alpha", "beta", "b", "r2", "mape", "n_points", "alpha_ci", "lolo_mape"):
            assert row[key] == fit[key]
        assert row["updated_at"] == report["updated_at"] and row["n_rows"] == 16
    text = law_report.format_report(report)
    assert text.startswith("sweep law: 35 trials accepted, 32 ok, 3 failed")
    assert "'nan': 2" in text and "'oom': 1" in text
    sft = next(r for r in rows if r["group"].endswith("|sft"))
    assert f"alpha {sft['alpha']:.3g}" in text and f"beta {sft['beta']:.3g}" in text
    assert text.count("group tiny-s|random|0|paper|") == 2
    # the honest figure first, the paper's labelled; these records start below chance: no flag
    assert text.index("bits above chance/param") < text.index("the paper's ΔL-based bits/param")
    assert sft["comparable"] is True and sft["init_excess"] == pytest.approx(LOSS_INIT - math.log(509))
    assert "not comparable" not in text
    few = law_report.build_report("law", [record("one")])
    assert "too_few_points" in law_report.format_report(few)


def test_pure_modules_import_without_ray_or_torch():
    code = ("import sys\n"
            "for name in ('ray', 'torch', 'deepspeed'): sys.modules[name] = None\n"
            "import orchestrator.records.trial_record, orchestrator.records.storage, orchestrator.records.journal\n"
            "import orchestrator.report.law_report, orchestrator.report.findings\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# -- honest outcomes -----------------------------------------------------------------------------------


def test_only_a_finished_final_report_is_ok():
    from orchestrator.records.trial_record import completion_status

    assert completion_status({K.FINISHED: True, "done": True}, pruning=False) == "ok"
    assert completion_status({K.FINISHED: True}, pruning=True) == "ok"
    # Tune completes trials it stopped: an interrupted worker's function, a pending trial (no result)
    assert completion_status({K.FINISHED: False, K.STEP: 10, "done": True}, pruning=False) == "stopped"
    assert completion_status({}, pruning=False) == completion_status(None, pruning=True) == "stopped"
    assert completion_status({K.FINISHED: False, "done": True}, pruning=True) == "pruned"  # ASHA's decision
    assert completion_status({K.STEP: 10}, pruning=True) == "stopped"


def test_a_stopped_record_is_replaced_by_the_trials_next_record_a_final_one_never(tmp_path):
    uri = str(tmp_path / "exp")
    log = RecordLog.for_experiment(uri)
    cut = record_from_result("t1", "law", config(4, 256), result(4, 256, 0.1, **{K.STEP: 100, K.FINISHED: False}),
                             status="stopped")
    done = record_from_result("t1", "law", config(4, 256), result(4, 256, 0.3))
    assert not cut.final and cut.status == "stopped" and done.final
    assert log.add(cut) and log.ok() == []
    assert log.add(done) and [r.metrics[K.STEP] for r in log.ok()] == [300]
    assert log.add(cut) is False and log.add(done) is False  # first final record wins; re-sends count once
    reloaded = RecordLog.for_experiment(uri)
    assert [(r.trial_id, r.status, r.metrics[K.STEP]) for r in reloaded.all()] == [("t1", "ok", 300)]
    assert len(reloaded.journal.list()) == 2
    report = law_report.build_report("law", [cut, record_from_result("t2", "law", config(), result(1, 64, 0.2),
                                                                      status="pruned")])
    assert report["trials_ok"] == 0 and report["trials_failed"] == {}
    assert report["trials_unfinished"] == {"stopped": 1, "pruned": 1} and report["groups"] == {}
    assert "1 pruned, 1 stopped (not in the fit)" in law_report.format_report(report)
