"""The Tune function trainable: one memorization trial inside a Tune trial. Ray glue only.

The trial's Tune config is a flat dict of dotted TrialConfig fields sampled by the search; the
base trial comes in through `tune.with_parameters`. Evaluations become `tune.report` calls, with
the trial's checkpoint when one was written, and a restarted trial resumes from Tune's latest
checkpoint. A diverged trial raises, so Tune and Optuna record it as failed, never as COMPLETE
with a NaN objective.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray import tune

from orchestrator.config import resolve_trial
from trainables.memorize import CHECKPOINT_PREFIX, train

TRIAL_FOLDER = "memlaw_trial"
NODE_ID = "node_id"


def _resume_folder(checkpoint) -> Path | None:
    if checkpoint is None:
        return None
    folder = Path(checkpoint.to_directory())
    inner = sorted(p for p in folder.iterdir() if p.name.startswith(CHECKPOINT_PREFIX))
    return inner[-1] if inner else folder


def memorize(config: dict[str, Any], base: dict[str, Any]) -> None:
    """Tune entry point: resolve the trial, train, report every evaluation."""
    cfg = resolve_trial(base, config)
    # Tune writes its own result.json into the trial folder: ours go one level down.
    out = Path(tune.get_context().get_trial_dir()) / TRIAL_FOLDER
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))

    node_id = ray.get_runtime_context().get_node_id()  # provenance: which Ray node ran the trial

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        numeric = {k: v for k, v in metrics.items() if v is not None}
        numeric[NODE_ID] = node_id
        ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(numeric, checkpoint=ckpt)

    train(cfg, out, report=report, resume_from=_resume_folder(tune.get_checkpoint()),
          checkpoint_root=out / "checkpoints")
