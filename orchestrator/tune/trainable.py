"""The Tune function trainables: one memorization trial inside a Tune trial. Ray glue only.

The trial's Tune config is a flat dict of dotted TrialConfig fields sampled by the search; the
base trial comes in through `tune.with_parameters`. Evaluations become `tune.report` calls, with
the trial's checkpoint when one was written, and a restarted trial resumes from Tune's latest
checkpoint. A diverged trial raises, so Tune and Optuna record it as failed, never as COMPLETE
with a NaN objective; so does a trial past the sweep's time or memory limit (trainables/limits.py).

`memorize` runs the trial in the Tune trial's own process. `memorize_zero` (trainable: zero) runs
it on `zero.workers_per_trial` Ray Train workers under DeepSpeed ZeRO: the Tune trial builds a
TorchTrainer whose TuneReportCallback forwards rank 0's reports to Tune, with the same keys. The
Train run is named after the Tune trial and kept under the experiment (`zero_runs/<trial id>`), so
a retried or resumed Tune trial resumes the Train run from its latest merged checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray import tune

from trainables.config import TrialConfig
from trainables.limits import TrialLimits, Watchdog
from trainables.memorize import CHECKPOINT_PREFIX, train
from trainables.schema import set_dotted

TRIAL_FOLDER = "memlaw_trial"
NODE_ID = "node_id"
REPLAYED = "replayed_from_journal"  # a finished trial that Tune ran again after a driver crash
ZERO_RUNS = "zero_runs"  # under the experiment: one Ray Train run per zero trial, named by trial id


def _resume_folder(checkpoint, into: Path | None = None) -> Path | None:
    """Download a reported checkpoint (to `into`, else a temp folder) and return the trial checkpoint in it:
    Tune's copy wraps our checkpoint folder (CHECKPOINT_PREFIX + step), a merged Ray Train copy is it."""
    if checkpoint is None:
        return None
    folder = Path(checkpoint.to_directory(str(into) if into else None))
    inner = sorted(p for p in folder.iterdir() if p.name.startswith(CHECKPOINT_PREFIX))
    return inner[-1] if inner else folder


def memorize(config: dict[str, Any], base: dict[str, Any], limits: TrialLimits = TrialLimits(),
             experiment_uri: str | None = None) -> None:
    """Tune entry point: resolve the trial, train within the sweep's limits, report every evaluation."""
    cfg = TrialConfig.from_dict(set_dotted(base, config))
    if experiment_uri and _replay_journaled(experiment_uri):
        return
    # Tune writes its own result.json into the trial folder: ours go one level down.
    out = Path(tune.get_context().get_trial_dir()) / TRIAL_FOLDER
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))

    node_id = ray.get_runtime_context().get_node_id()  # provenance: which Ray node ran the trial

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(_reportable(metrics, node_id), checkpoint=ckpt)

    with Watchdog(limits):  # per trial: a reused worker starts a new one for its next trial
        train(cfg, out, report=report, resume_from=_resume_folder(tune.get_checkpoint()),
              checkpoint_root=out / "checkpoints")
    persist_trial_folder(out)


def _replay_journaled(experiment_uri: str) -> bool:
    """Report the journaled result of a trial that already finished, instead of training it again.

    Why: Tune saves its trial states every few seconds; a driver killed after a trial finished (and
    its record was journaled) but before Tune's next save leaves that trial RUNNING in Tune's state,
    and `memlaw resume` would train it again. The journal's first record is final in any case.
    """
    from orchestrator.records.journal import RecordLog

    record = RecordLog.for_experiment(experiment_uri).records.get(tune.get_context().get_trial_id())
    if record is None or not record.final:
        return False
    if not record.ok:  # `memlaw resume` resumes errored trials (a full disk stops them as errors): a real
        raise JournaledFailure(f"trial already ended as {record.status}; not trained again")  # failure stays one
    tune.report({**_reportable(record.metrics, record.node_id), REPLAYED: True})
    return True


class JournaledFailure(RuntimeError):
    """A resumed trial whose journal record is already a final failure (its record is not replaced)."""


def persist_trial_folder(out: Path) -> None:
    """Copy the trial folder (config.yaml, evals.jsonl, result.json, adapter/) into the trial's folder in
    the experiment's storage, checkpoints excepted (Tune stores those itself).

    Why: `get_trial_dir()` is a local staging folder under Ray's session directory, and Tune only
    uploads it with SyncConfig(sync_artifacts=True), on its own schedule, and never after the last
    report, which comes before result.json is written. With actor reuse, all but a worker's first
    trial then left their per-sequence results and adapters only in /tmp/ray/session_*/.
    """
    storage = tune.get_context().get_storage()
    copy_trial_folder(out, storage.storage_filesystem, f"{storage.trial_fs_path}/{TRIAL_FOLDER}")


def copy_trial_folder(out: Path, filesystem, target: str) -> None:
    """Copy `out` (checkpoints excepted) to `target` on a pyarrow filesystem (local disk or a cloud store)."""
    import pyarrow.fs

    local = pyarrow.fs.LocalFileSystem()
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem) and os.path.realpath(target) == os.path.realpath(out):
        return  # the staging folder is the storage folder: nothing to copy
    filesystem.create_dir(target, recursive=True)
    for child in sorted(out.iterdir()):
        if child.name == "checkpoints":
            continue
        if child.is_dir():  # copy_files does not create the destination folder itself
            filesystem.create_dir(f"{target}/{child.name}", recursive=True)
        pyarrow.fs.copy_files(str(child), f"{target}/{child.name}", source_filesystem=local,
                              destination_filesystem=filesystem)


def _reportable(metrics: dict[str, Any], node_id: str) -> dict[str, Any]:
    """Tune's copy of an evaluation: no None values, plus the node that ran it."""
    return {**{k: v for k, v in metrics.items() if v is not None}, NODE_ID: node_id}


# -- trainable: zero -------------------------------------------------------------------------------
def memorize_zero(config: dict[str, Any], base: dict[str, Any], zero: dict[str, Any], experiment_uri: str) -> None:
    """Tune entry point of a sharded trial: a TorchTrainer of ZeRO ranks, reporting through Tune."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainables.zero_config import ZeroConfig

    cfg, zcfg = TrialConfig.from_dict(set_dotted(base, config)), ZeroConfig.from_dict(zero)
    if _replay_journaled(experiment_uri):
        return
    context = tune.get_context()
    storage = context.get_storage()  # rank 0 copies the trial folder there, wherever it runs
    per_worker = {"CPU": zcfg.cpu_per_worker, **({"GPU": zcfg.gpu_per_worker} if zcfg.uses_gpu else {})}
    trainer = TorchTrainer(
        zero_worker,
        train_loop_config={"trial": cfg.to_dict(), "zero": zcfg.to_dict(), "filesystem": storage.storage_filesystem,
                           "target": f"{storage.trial_fs_path}/{TRIAL_FOLDER}"},
        scaling_config=ScalingConfig(num_workers=zcfg.workers_per_trial, use_gpu=zcfg.uses_gpu,
                                     resources_per_worker=per_worker,
                                     placement_strategy="STRICT_PACK" if zcfg.pack else "PACK"),
        run_config=RunConfig(name=context.get_trial_id(), storage_path=_join(experiment_uri, ZERO_RUNS),
                             callbacks=[TuneReportCallback()], checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=0)),  # Tune's max_failures retries
    )
    trainer.fit()


def zero_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker = one ZeRO rank; torch.distributed (gloo or NCCL) is already up."""
    import shutil
    import tempfile

    import ray.train

    from trainables.config import TrialConfig
    from trainables.zero import train_zero
    from trainables.zero_config import ZeroConfig

    cfg, zcfg = TrialConfig.from_dict(config["trial"]), ZeroConfig.from_dict(config["zero"])
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    rank = ray.train.get_context().get_world_rank()
    node_id = ray.get_runtime_context().get_node_id()
    local = Path(tempfile.mkdtemp(prefix=f"memlaw-zero-rank{rank}-"))  # shards; rank 0: the trial folder

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        # Every rank reports (Ray Train's barrier); rank 0's metrics reach Tune, the shards are merged.
        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(_reportable(metrics, node_id), checkpoint=ckpt)

    try:
        resume = _resume_folder(ray.train.get_checkpoint(), into=local / "resume")
        train_zero(cfg, zcfg, local / TRIAL_FOLDER, rank, report=report, resume_from=resume,
                   checkpoint_root=local / "checkpoints")
        if rank == 0:
            copy_trial_folder(local / TRIAL_FOLDER, config["filesystem"], config["target"])
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _join(uri: str, name: str) -> str:
    return f"{uri.rstrip('/')}/{name}" if "://" in uri else os.path.join(uri, name)
