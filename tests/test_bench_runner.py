"""The benchmark runner's pure parts: reading a bench's JSON result line and writing the table.

No timings here (benchmarks are never part of the tests): the runner is fed result objects of the
shape bench/bench_result.py prints, and one real bench script is run only for its `--json` line's
shape on a bench that takes well under a second (the law refit without the Ray section).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"memlaw_bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"memlaw_bench_{name}"] = module  # dataclasses look their module up there
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return module


run_all = _load("run_all")
bench_result = _load("bench_result")

MACHINE = {"cpu": "Test CPU", "cores": 2, "ram_gib": 24.0, "gpu": "none", "python": "3.11", "torch": "2.13.0",
           "ray": "2.60.0", "transformers": "5", "peft": "0.21", "commit": "abc1234", "date": "2026-01-01 00:00 UTC",
           "os": "Linux"}


def _outcome(script: str, line: str, load: float = 1.0):
    bench = next(b for b in run_all.BENCHES if b.script == script)
    result = run_all.last_json_line("human table\n| a | b |\n" + line + "\n")
    return run_all.Outcome(bench, f"python bench/{script} --json", "ok", result, 12.0, load, load)


def test_last_json_line_skips_human_output_and_other_json():
    text = 'progress {"step": 1}\n{"not": "a result"}\n' + bench_result.result_line("x", 1.5, "x", "<= 2x", True)
    assert run_all.last_json_line(text)["figure"] == 1.5
    assert run_all.last_json_line("no json at all\n") is None


def test_result_line_turns_nan_into_null_and_not_met():
    obj = json.loads(bench_result.result_line("x", float("nan"), "x", ">= 1x", True))
    assert obj["figure"] is None and obj["met"] is False


def test_table_has_one_row_per_bench_with_figures_goals_and_missing_benches():
    met = bench_result.result_line("trial loop", 0.97, "x", ">= 0.95x", True, memlaw="30.1 steps/s",
                                   baseline="31.0 steps/s (hand loop)", setup="tiny-s")
    missed = bench_result.result_line("sweep", 1.31, "x", "<= 1.10x", False, memlaw="131 s wall", baseline="100 s")
    outcomes = [_outcome("trial_step.py", met), _outcome("sweep_overhead.py", missed, load=1.8),
                run_all.Outcome(next(b for b in run_all.BENCHES if b.script == "zero_memory.py"),
                                "python bench/zero_memory.py --json", "missing", error="bench/zero_memory.py missing")]
    doc = run_all.render(outcomes, MACHINE, "python bench/run_all.py --quick", quick=True)
    rows = [line for line in doc.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| benchmark |")
    assert rows[1] == ("| trial loop vs hand-written torch+peft | 30.1 steps/s | 31.0 steps/s (hand loop) | 0.97x "
                       "| >= 0.95x | yes |")
    assert rows[2] == "| sweep wall time vs ideal | 131 s wall | 100 s | 1.31x | <= 1.10x | **no** |"
    assert rows[3].startswith("| ZeRO-3 per-worker memory vs unsharded | not yet available")
    assert "Test CPU, 2 cores; RAM 24.0 GiB" in doc and "torch 2.13.0, Ray 2.60.0" in doc
    assert "`python bench/run_all.py --quick`" in doc and "(quick sizes)" in doc
    assert "goal not met: measured 1.31x against <= 1.10x" in doc
    assert "highest 1.80 against 2 cores" in doc


def test_a_bench_with_a_second_measurement_gets_a_second_row():
    line = bench_result.result_line(
        "adaptive", 0.21, "x", "<= 0.25x", True, memlaw="4.5 GPU-h", baseline="21.7 GPU-h",
        rows=[{"title": "CPU replay", "memlaw": "10 trials", "baseline": "12 trials", "figure": 0.833, "unit": "x",
               "goal": "<= 0.5x", "met": False, "reason": "a small grid"}])
    doc = run_all.render([_outcome("adaptive_vs_grid.py", line)], MACHINE, "python bench/run_all.py", quick=False)
    rows = [r for r in doc.splitlines() if r.startswith("| ") and "---" not in r]
    assert rows[1].endswith("| 4.5 GPU-h | 21.7 GPU-h | 0.21x | <= 0.25x | yes |")
    assert rows[2] == "| CPU replay | 10 trials | 12 trials | 0.833x | <= 0.5x | **no** |"
    assert "- CPU replay: goal not met: measured 0.833x against <= 0.5x. Why: a small grid" in doc


def test_a_missing_bench_file_is_a_row_not_a_crash(tmp_path, monkeypatch):
    ghost = run_all.Bench("no_such_bench.py", "a bench nobody wrote yet")
    outcome = run_all.run_bench(ghost, quick=True, experiment=None, log_dir=tmp_path)
    assert outcome.status == "missing"
    assert "not yet available" in run_all.table([outcome])[2]


def test_a_real_bench_prints_its_result_line_last():
    done = subprocess.run([sys.executable, "bench/law_refit.py", "--actor-records", "0", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"name", "figure", "unit", "goal", "met", "details"}
    assert result["unit"] == "ms" and result["figure"] > 0 and isinstance(result["met"], bool)
