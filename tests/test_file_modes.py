"""What memlaw writes gets the mode the user's umask says (issue 25, item 7): 0644 under umask 022, so
colleagues on a shared machine can read results.parquet, law.png and the journal; 0600 under 077.

Before: atomic writes renamed a `tempfile.mkstemp` file (0600) or `mkdtemp` folder (0700) into
place, so every result was private whatever the umask. The writers are called directly on a small
fabricated experiment (a real RecordLog, no Ray). Each test sets the umask and puts it back.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrator.experiment import export as ex
from orchestrator.records.storage import Store
from orchestrator.report import plot
from test_export_plot import experiment, synthetic_records
from trainables import file_modes


@pytest.fixture
def umask():
    """Set the process's umask for one test: `umask(0o077)`; the old one comes back after the test."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path: str | os.PathLike) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_an_atomic_write_takes_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    store = Store(str(tmp_path / "store"))
    store.write_bytes("a.json", b"{}")
    assert mode(tmp_path / "store" / "a.json") == expected
    assert Path(tmp_path / "store" / "a.json").read_bytes() == b"{}"
    assert os.listdir(tmp_path / "store") == ["a.json"]  # no temp left behind


def test_a_rewrite_takes_the_mode_of_the_umask_now(tmp_path, umask):
    """A file first written private is replaced by a readable one once the umask allows it, and back."""
    store = Store(str(tmp_path))
    umask(0o077)
    store.write_bytes("f", b"1")
    assert mode(tmp_path / "f") == 0o600
    umask(0o022)
    store.write_bytes("f", b"2")
    assert mode(tmp_path / "f") == 0o644 and (tmp_path / "f").read_bytes() == b"2"


def test_the_umask_is_read_as_it_is_now_without_changing_it(umask):
    umask(0o027)
    assert file_modes.umask() == 0o027  # not the value at import: /proc shows the current one
    assert (file_modes.file_mode(), file_modes.folder_mode()) == (0o640, 0o750)
    assert os.umask(0o027) == 0o027  # reading it left it as it was


def test_without_proc_the_umask_at_import_is_used(umask, monkeypatch, tmp_path):
    monkeypatch.setattr(file_modes, "PROC_STATUS", str(tmp_path / "no-such-status"))
    umask(0o077 if file_modes._UMASK_AT_IMPORT != 0o077 else 0o022)  # differs from the import's value
    assert file_modes.umask() == file_modes._UMASK_AT_IMPORT


@pytest.mark.parametrize("mask, expected", [(0o022, 0o755), (0o077, 0o700)])
def test_a_temp_folder_takes_the_umask_mode(tmp_path, umask, mask, expected):
    """Checkpoints and the tiny-model cache are temp folders renamed into place (mkdtemp alone: 0700)."""
    umask(mask)
    folder = file_modes.temp_folder(tmp_path, prefix=".ckpt-")
    assert folder.parent == tmp_path and folder.name.startswith(".ckpt-") and folder.is_dir()
    assert mode(folder) == expected


def test_results_figure_and_journal_are_readable_by_others_under_umask_022(tmp_path, umask):
    umask(0o022)
    exp = experiment(tmp_path, synthetic_records())
    written = [str(tmp_path / "out" / "results.parquet"), str(tmp_path / "out" / "results.csv")]
    for out in written:
        assert ex.export(exp, out) == 24
    written += plot.plot_law(exp, str(tmp_path / "out" / "law.png"))
    journal = [os.path.join(root, name) for root, _, names in os.walk(exp) for name in names]
    assert any(p.endswith("snapshot.json") for p in journal) and len(journal) >= 2  # and entries after it
    for path in written + journal:
        assert mode(path) == 0o644, path
        assert mode(path) & (stat.S_IRGRP | stat.S_IROTH) == stat.S_IRGRP | stat.S_IROTH


def test_results_stay_private_under_umask_077(tmp_path, umask):
    umask(0o077)
    exp = experiment(tmp_path, synthetic_records())
    out = tmp_path / "results.csv"
    assert ex.export(exp, str(out)) == 24
    assert mode(out) == 0o600
