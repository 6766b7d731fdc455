"""bench/gpu_check.py works before a GPU is ever lent: its tiny CPU run (the same code as the H100 run,
a random-init Qwen3 from the Qwen3-8B config fixture with a tiny body, in bf16) prints every figure and
passes its checks, and the certificate check has certified positions to bite on."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import REPO

ROW_FIGURES = ("step_s", "tokens_per_s", "peak_gib", "step_tflop", "flops_per_s", "peak_fraction", "first_loss")
TRIAL_FIGURES = ("loss_init", "loss_final", "delta_loss", "frac_p_gt_half", "first_subthreshold_pos",
                 "tf_token_acc", "frac_sequences_certified", "greedy_token_acc", "greedy_exact_match",
                 "first_greedy_error_pos")


def test_the_gpu_check_runs_on_cpu_with_every_figure_and_its_checks_pass():
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny", "--device", "cpu", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    d = result["details"]
    assert result["met"] is True and d["dtype"] == "bfloat16" and d["tiny"] is True
    assert d["model"]["source"] == "tests/data/hf_configs/Qwen--Qwen3-8B/config.json"
    assert d["peak_bf16_flops"] == 989e12

    rows = d["rows"]
    short, long = d["plan"]["lengths"]
    assert [(r["length"], r["prefix_cache"], r["chunked"]) for r in rows] == [
        (short, True, False), (short, False, False), (long, True, True), (long, False, True), (long, True, False)]
    for r in rows:
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ROW_FIGURES), r
        assert r["prefix_cache_note"].startswith("on" if r["prefix_cache"] else "off")
    assert d["checks"]["prefix_cache_and_chunks_exact"]["passed"]

    assert [t["method"] for t in d["trials"]] == ["sft", "memft"]
    for t in d["trials"]:
        assert all(t[k] is not None and math.isfinite(t[k]) for k in TRIAL_FIGURES), t
        assert t["delta_loss"] > 0
    cert = d["checks"]["certificate_vs_greedy"]
    assert cert["passed"] and cert["violations"] == 0 and not cert["vacuous"], cert

    text = done.stdout
    for heading in ("tokens/s", "peak GiB", "TFLOP/s", "of bf16 peak", "p > 0.5 share", "greedy exact"):
        assert heading in text
    assert "certificate vs greedy on CPU" in text and "PASSED" in text and "FAILED" not in text
