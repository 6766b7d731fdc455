"""Every file in examples/ passes `memlaw validate`, the 8B paper sweeps included.

The paper sweeps name hub models (Qwen/Qwen3-8B, meta-llama/Llama-3.1-8B-Instruct) whose shapes
validation reads from their config.json (rank <= hidden size, the adapter's layer < depth). This
machine has no hub access, so the test serves those configs the way the hub client finds them
offline: a Hugging Face cache (HF_HOME) holding copies of the published config.json files
(tests/data/hf_configs/), with HF_HUB_OFFLINE=1. Validation itself is the real command, unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import EXAMPLES, REPO, memlaw_cmd, memlaw_in_process

HF_CONFIGS = REPO / "tests" / "data" / "hf_configs"
SNAPSHOT = "0" * 40  # any commit id: the cache's refs/main points at it


def offline_hub_cache(root) -> dict[str, str]:
    """An HF cache with each fixture's config.json as the hub would have cached it; the env to use it."""
    hub = root / "hub"
    for folder in HF_CONFIGS.iterdir():
        repo = hub / f"models--{folder.name}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(SNAPSHOT)
        snapshot = repo / "snapshots" / SNAPSHOT
        snapshot.mkdir(parents=True)
        shutil.copy(folder / "config.json", snapshot / "config.json")
    return {**os.environ, "HF_HOME": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def hub_env(tmp_path_factory):
    return offline_hub_cache(tmp_path_factory.mktemp("hf-home"))


@pytest.mark.slow  # the paper sweeps: one CLI process each (the hub client reads HF_HOME at import)
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_validates(example, hub_env):
    import importlib.util

    if example.startswith("paper_"):
        done = subprocess.run(memlaw_cmd("validate", str(EXAMPLES / example)), cwd=REPO, env=hub_env,
                              capture_output=True, text=True, timeout=180)
    else:  # no hub model: the same command in this process (a CLI process costs ~5 s of imports)
        done = memlaw_in_process("validate", str(EXAMPLES / example), cwd=REPO)
    if "storage_path: s3://" in (EXAMPLES / example).read_text() and importlib.util.find_spec("s3fs") is None:
        # the paper sweeps write to a bucket: without the cloud extra, that is their one problem, named
        problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
        assert done.returncode == 2 and problems == ["  - storage_path: s3:// storage needs its fsspec driver on this "
                                                     "machine (Install s3fs to access S3; pip install 'memlaw[cloud]')"], \
            done.stderr
        return
    assert done.returncode == 0, f"{example}: {done.stdout}{done.stderr}"
    assert done.stdout.startswith("ok: ")


PAPER_FACTS = """
import json, sys
from orchestrator.config.preflight import load_sweep
from orchestrator.search.kinds import sweep_grid
from trainables.model import model_dims
sweep = load_sweep(sys.argv[1], {"storage_path": sys.argv[2]})  # s3://YOUR-BUCKET: a placeholder
trial, grid = sweep.base_trial, sweep_grid(sweep)
dims = model_dims(trial.model)
print(json.dumps({"ranks": grid.axes["adapter.rank"], "lengths": grid.axes["data.target_tokens"],
                  "model": trial.model.name, "placement": trial.adapter.placement, "layer": trial.adapter.layer,
                  "budget": [trial.budget.steps, trial.budget.lr, trial.budget.grad_clip, trial.budget.batch_size],
                  "dtype": trial.dtype, "hidden": dims.hidden, "layers": dims.layers, "gpu": sweep.resources.gpu}))
"""


@pytest.mark.parametrize("example, model, hidden, layers", [
    ("paper_qwen3_8b.yaml", "Qwen/Qwen3-8B", 4096, 36),
    ("paper_llama31_8b.yaml", "meta-llama/Llama-3.1-8B-Instruct", 4096, 32),
])
def test_paper_sweeps_are_the_papers_grid(example, model, hidden, layers, hub_env, tmp_path):
    """Ranks 1-512 x lengths 50-10k, the paper's placement, layer and budget, on the named model.
    In a fresh process: the hub client reads HF_HOME once, at import, and other tests import it first."""
    import json
    import sys

    done = subprocess.run([sys.executable, "-c", PAPER_FACTS, str(EXAMPLES / example), str(tmp_path)], cwd=REPO,
                          env=hub_env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["ranks"] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert facts["lengths"] == [50, 100, 200, 500, 1000, 2000, 5000, 10000]
    assert facts["model"] == model and facts["placement"] == "paper"
    assert facts["budget"] == [2000, 1e-2, 1.0, 1]
    assert facts["layer"] == {36: 24, 32: 18}[layers] and facts["dtype"] == "bfloat16"
    assert (facts["hidden"], facts["layers"]) == (hidden, layers)
    assert facts["gpu"] == 1
