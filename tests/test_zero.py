"""trainable: zero — the memorization trial on 2 DeepSpeed ZeRO ranks (gloo, CPU) under Ray Train,
launched from Tune trials by `memlaw sweep`. The DeepSpeed config and the sweep checks are pure and
fast; the sweeps are real (local Ray, real DeepSpeed) and marked slow.

Why the single-process comparison may be tight: every rank trains on the same batch, so the
averaged gradient is the single-process gradient up to the order of the fp32 additions in the
gradient reduction and in the global-norm clip (both over 2 ranks); AdamW is elementwise. On
these trials the two agreed within 3.5e-7 relative in every loss (ZeRO-2; 2.8e-7 with ZeRO-3) and
exactly in every count (2026-12-06); the bound is ZERO_REL_TOL = 1e-6, the README's promise.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import memlaw_cmd, print_figure
from orchestrator.config.preflight import load_sweep
from orchestrator.records.journal import RecordLog
from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.memorize import train
from trainables.schema import ConfigError
from trainables.zero_config import ZeroConfig, deepspeed_config

ZERO_TRIAL = {
    "model": {"name": "tiny-s"},
    "adapter": {"placement": "peft", "rank": 4, "target_modules": ["q_proj", "v_proj"], "dropout": 0.1},
    "data": {"kind": "random", "target_tokens": 24, "num_sequences": 4},
    "budget": {"preset": "cpu", "steps": 60},
    "eval": {"every": 20},
}
LOSSES = (K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS)
#: The README's promise for a zero trial against one process: every loss within this relative gap
#: (measured: ZeRO-2 3.5e-7, ZeRO-3 2.8e-7; fp32 reductions in another order, nothing larger).
ZERO_REL_TOL = 1e-6
COUNTS = (K.FRAC_P_GT_HALF, K.FRAC_SEQUENCES_CERTIFIED, K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH,
          K.TF_TOKEN_ACC, K.STEPS_TO_CERTIFIED, K.TRAINABLE_PARAMS, K.STEP)


# -- pure: the DeepSpeed config and the checks before Ray starts --------------------------------------
def test_deepspeed_config_follows_the_trial():
    trial = TrialConfig.from_dict({**ZERO_TRIAL, "dtype": "bfloat16"})
    ds = deepspeed_config(trial, ZeroConfig(stage=3, offload="all"), on_gpu=False)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": False}
    assert ds["bf16"] == {"enabled": True} and ds["fp16"] == {"enabled": False}
    assert ds["gradient_clipping"] == 1.0 and ds["train_micro_batch_size_per_gpu"] == 4
    ds = deepspeed_config(TrialConfig.from_dict(ZERO_TRIAL), ZeroConfig(stage=2), on_gpu=True)
    assert ds["bf16"] == {"enabled": False} and "offload_optimizer" not in ds["zero_optimization"]
    with pytest.raises(ValueError, match="float16 on CPU"):
        deepspeed_config(TrialConfig.from_dict({**ZERO_TRIAL, "dtype": "float16"}), ZeroConfig(), on_gpu=False)


def test_impossible_zero_sweeps_are_refused_before_ray(tmp_path):
    cluster = Path(__file__).resolve().parents[1] / "cluster.yaml"  # largest node: 4 GPUs
    cases = {
        "trial.dtype": {"trial": {**ZERO_TRIAL, "dtype": "float16"}},
        "zero.offload": {"zero": {"stage": 2, "offload": "all"}},
        "zero.gpu_per_worker": {"zero": {"gpu_per_worker": 8}, "cluster_file": str(cluster)},
        "zero.workers_per_trial": {"zero": {"gpu_per_worker": 1, "workers_per_trial": 8, "pack": True},
                                   "cluster_file": str(cluster)},
        "resources.gpu": {"resources": {"gpu": 1}},
    }
    for field, fields in cases.items():
        path = write_sweep(tmp_path, name="bad", **fields)
        with pytest.raises(ConfigError) as err:
            load_sweep(str(path))
        assert field in {p.field for p in err.value.problems}, (field, str(err.value))
    path = write_sweep(tmp_path, name="bad", trainable="memorize", zero={"stage": 2})
    with pytest.raises(ConfigError, match="zero: only for trainable: zero"):
        load_sweep(str(path))
    fine = write_sweep(tmp_path, name="fine", zero={"gpu_per_worker": 1, "workers_per_trial": 4, "pack": True},
                       cluster_file=str(cluster))
    assert load_sweep(str(fine)).zero.gpus_per_trial() == 4


RANK_BUILDS_MODEL = """
import os, sys
import torch.distributed as dist
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=int(sys.argv[1]), world_size=2)
from trainables.config import ModelConfig
from trainables.model import ensure_tiny_model
if dist.get_rank() == 1:  # transformers' save_pretrained writes nothing on a non-zero rank
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(ensure_tiny_model(ModelConfig(name="tiny-xs")))
dist.barrier()
"""


def test_a_non_zero_rank_builds_a_loadable_tiny_model(tmp_path):
    """Each ZeRO rank builds its own node's model cache, though transformers saves on rank 0 only."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "MEMLAW_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", RANK_BUILDS_MODEL, str(rank), port], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[1][-3000:]
    folder = next((tmp_path / "models").glob("tiny-xs-*"))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f.name for f in folder.iterdir()}


# -- real: 2 ranks on a local Ray -------------------------------------------------------------------
def write_sweep(tmp_path: Path, **fields) -> Path:
    sweep = {"name": "zero", "trial": ZERO_TRIAL, "space": "law_grid_smoke", "search": {"kind": "grid"},
             "space_overrides": {"adapter.rank": [4], "data.target_tokens": [24]}, "trainable": "zero",
             "zero": {"stage": 3, "workers_per_trial": 2, "cpu_per_worker": 0.5}, "max_concurrency": 1,
             "checkpoint_every": 1, "max_failures": 1, "storage_path": str(tmp_path / "runs"), **fields}
    path = tmp_path / f"{sweep['name']}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _train_workers(sweep: subprocess.Popen) -> list[psutil.Process]:
    """The Ray Train workers of this test's sweep only: descendants of its process (its embedded Ray),
    never another run's on the same machine (issue 28 item 5)."""
    found = []
    for proc in psutil.Process(sweep.pid).children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:  # ended meanwhile
            continue
        if cmd.startswith("ray::RayTrainWorker"):
            found.append(proc)
    return found


def _kill_a_rank_after_first_checkpoint(experiment: Path, proc: subprocess.Popen, timeout: float = 480) -> int:
    """SIGKILL one ZeRO rank of the first trial once it has a checkpoint; returns the killed pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if list(experiment.glob("zero_runs/*/checkpoint_*/state.json")):
            workers = _train_workers(proc)
            if workers:
                victim = workers[-1]
                victim.send_signal(signal.SIGKILL)
                return victim.pid
        time.sleep(0.5)
    raise AssertionError("no ZeRO checkpoint appeared (or the sweep ended) before the kill")


@pytest.mark.slow
@pytest.mark.timeout(900)  # a drill: its own deadline, not the suite default
def test_zero2_trial_matches_single_process(tmp_path, request):
    """ZeRO-2 through `memlaw sweep`: one trial on 2 gloo ranks equals the same trial in one process.
    The killed-rank drill runs under ZeRO-3 only: the retry and the merged-checkpoint resume are the
    same code for both stages, and stage 3 (sharded parameters) is the harder case."""
    path = write_sweep(tmp_path, name="zero2", zero={"stage": 2, "workers_per_trial": 2, "cpu_per_worker": 0.5})
    experiment = tmp_path / "runs" / "zero2"
    done = subprocess.run(memlaw_cmd("sweep", str(path)), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    records = RecordLog.for_experiment(str(experiment)).all()
    assert len(records) == 1 and records[0].ok, [r.status for r in records]
    m = records[0].metrics
    single = train(TrialConfig.from_dict(records[0].config), tmp_path / "single")
    assert m[K.LOSS_FINAL] < m[K.LOSS_INIT] - 1.0, m  # it learned
    worst = 0.0
    for key in LOSSES:
        assert single[key] == pytest.approx(m[key], rel=ZERO_REL_TOL), key  # sharded = one process
        worst = max(worst, abs(single[key] - m[key]) / abs(single[key]))
    for key in COUNTS:
        assert m.get(key) == single.get(key), key
    print_figure(request, f"[figure] ZeRO-2, 2 gloo ranks, 60 steps: loss {m[K.LOSS_INIT]:.3f} -> "
                          f"{m[K.LOSS_FINAL]:.4f}; largest relative gap to one process {worst:.1e}")


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a drill: its own deadline, not the suite default
def test_zero3_trials_match_single_process_and_survive_a_killed_rank(tmp_path, request):
    """Two identical zero trials through `memlaw sweep`; a rank of the first is SIGKILLed after its
    first checkpoint, Tune retries it, Ray Train resumes it from the merged checkpoint."""
    stage = 3
    path = write_sweep(tmp_path, name=f"zero{stage}", num_samples=2,
                       zero={"stage": stage, "workers_per_trial": 2, "cpu_per_worker": 0.5})
    experiment = tmp_path / "runs" / f"zero{stage}"
    started = time.monotonic()
    proc = subprocess.Popen(memlaw_cmd("sweep", str(path)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=os.environ.copy(), start_new_session=True)
    try:
        _kill_a_rank_after_first_checkpoint(experiment, proc)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    wall = time.monotonic() - started
    assert proc.returncode == 0, out[-4000:]

    records = RecordLog.for_experiment(str(experiment)).all()
    assert len(records) == 2 and all(r.ok for r in records), [r.status for r in records]
    law = json.loads(subprocess.run(memlaw_cmd("law", "--experiment", str(experiment), "--json"),
                                    capture_output=True, text=True, check=True).stdout)
    # both reached the records; one configuration twice is one point of the law, and the killed-and-
    # resumed run measured what the uninterrupted one did (a duplicate, not a conflict: identity.py)
    assert law["report"]["records"] == 2 and law["trials_accepted"] == 1
    assert len(law["report"]["repeated"]["duplicates"]) == 1 and law["report"]["conflicts"] == []
    assert all(Path(r.checkpoint, "state.json").is_file() for r in records)  # the merged Ray Train checkpoint

    resumed, clean = _split_resumed(experiment, records)
    single = train(TrialConfig.from_dict(resumed.config), tmp_path / "single")
    m = resumed.metrics
    assert m[K.LOSS_FINAL] < m[K.LOSS_INIT] - 1.0, m  # it learned
    worst = 0.0
    for key in LOSSES:
        assert clean.metrics[key] == pytest.approx(m[key], rel=1e-6), key  # resumed = uninterrupted
        assert single[key] == pytest.approx(m[key], rel=ZERO_REL_TOL), key  # sharded = one process
        worst = max(worst, abs(single[key] - m[key]) / abs(single[key]))
    for key in COUNTS:
        assert clean.metrics.get(key) == m.get(key) == single.get(key), key
    folders = sorted(experiment.glob("memorize_zero_*/memlaw_trial"))  # in the experiment's storage
    assert len(folders) == 2 and all((f / "result.json").is_file() for f in folders), folders
    loaded = _load_without_deepspeed(TrialConfig.from_dict(resumed.config), folders[0] / "adapter")
    assert loaded == m[K.TRAINABLE_PARAMS]  # the gathered adapter, whole, in PEFT format
    print_figure(request, f"[figure] ZeRO-{stage}, 2 gloo ranks, 60 steps: loss {m[K.LOSS_INIT]:.3f} -> "
                          f"{m[K.LOSS_FINAL]:.4f}, certified {m[K.FRAC_SEQUENCES_CERTIFIED]:.2f}; 1 rank killed, "
                          f"resumed = uninterrupted; largest relative gap to one process {worst:.1e}; "
                          f"sweep {wall:.0f} s")


def _load_without_deepspeed(cfg: TrialConfig, folder: Path) -> int:
    """Load a zero trial's final adapter on a fresh base model in this process; its parameter count."""
    import torch

    from trainables.adapters import load_adapter
    from trainables.model import load_base

    base, _ = load_base(cfg.model, cfg.dtype, torch.device("cpu"))
    model = load_adapter(folder, base)
    return sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)


def _split_resumed(experiment: Path, records) -> tuple:
    """(the trial that was retried, the one that ran straight through): Tune writes error.txt on a failure."""
    retried = [(next(experiment.glob(f"memorize_zero_{r.trial_id}_*")) / "error.txt").exists() for r in records]
    assert sorted(retried) == [False, True], retried
    return (records[0], records[1]) if retried[0] else (records[1], records[0])


def test_unsharded_memory_is_counted_like_a_rank():
    """rank_memory on a plain model and AdamW: weights and state bytes equal numel x 4 (fp32)."""
    import torch

    from trainables.zero import rank_memory

    model = torch.nn.Linear(8, 4)
    model.weight.requires_grad_(False)
    optimizer = torch.optim.AdamW([model.bias])
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    got = rank_memory(model, optimizer)
    assert got["weights"] == (8 * 4 + 4) * 4 and got["master_weights"] == 0
    assert got["optimizer_state"] == 4 * 4 * 2 + 4  # exp_avg, exp_avg_sq (fp32) + the step counter
    assert not math.isnan(sum(got.values()))
