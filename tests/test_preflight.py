"""Preflight before Ray starts (issue 14.8): storage that is a file or cannot be written is refused
by `memlaw validate` and `memlaw sweep`, naming storage_path, exit 2; validating creates nothing."""

from __future__ import annotations


import pytest
import yaml

from conftest import REPO, memlaw_in_process


def sweep_file(tmp_path, storage: str):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "trial": {"model": {"name": "tiny-xs"}}, "space": "law_grid_smoke",
                                    "storage_path": storage}))
    return str(path)


@pytest.mark.parametrize("command", ["validate", "sweep"])
@pytest.mark.parametrize("where, reason", [("a-file/runs", "Not a directory"),
                                           ("/proc/self/memlaw-runs", "No such file or directory")])
def test_unwritable_storage_is_refused_before_ray(tmp_path, command, where, reason):
    (tmp_path / "a-file").write_text("not a folder")
    storage = where if where.startswith("/") else str(tmp_path / where)
    done = memlaw_in_process(command, sweep_file(tmp_path, storage), cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert f"storage_path: cannot write the experiment folder {storage}/s: {reason}" in done.stderr
    assert "Ray" not in done.stderr


def test_validating_a_sweep_creates_no_folder(tmp_path):
    storage = tmp_path / "new" / "deeper" / "runs"
    done = memlaw_in_process("validate", sweep_file(tmp_path, str(storage)), cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "new").exists()
