"""Preflight: what a sweep needs of this machine before Ray starts, beyond the sweep file itself.

    model_problems    the base model's config: rank <= hidden size, layer indices, module names,
                      one batch's logits in memory (trainables/model.py:check_against_model)
    storage_problems  the experiment folder can be written (a probe file), or the URI names a bucket

`load_sweep` (for the commands that train) hands `preflight_problems` to SweepConfig.from_dict,
which adds them to the sweep's own problems, so `memlaw validate` reports them all at once. Reading
a finished experiment skips them: it needs neither the model's files nor torch (imported here only
when a model is checked).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Mapping

from orchestrator.config.sweep import SweepConfig
from orchestrator.search.kinds import search_of
from trainables.schema import ConfigError, Problem
from trainables.yaml_input import load_yaml_mapping


def load_sweep(path: str, overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Read a sweep file for a run: every problem, the model's shape included, as one ConfigError."""
    data = load_yaml_mapping(path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return SweepConfig.from_dict(data, checks=preflight_problems)


def preflight_problems(sweep: SweepConfig, known: list[Problem]) -> list[Problem]:
    """The machine's problems with `sweep`, skipping checks that `known` problems already spoil."""
    problems = []
    if not any(p.field in ("space", "space_overrides") or p.field.startswith(("trial", "search")) for p in known):
        problems += model_problems(sweep)
    if not any(p.field == "storage_path" for p in known):
        problems += storage_problems(sweep)
    return problems


def storage_problems(sweep: SweepConfig) -> list[Problem]:
    """The experiment's folder can be written: a local path is probed with a file (a path through a
    regular file, a read-only or full filesystem fail here, before Ray starts, not in the results
    actor); an object-store URI must name a bucket (reaching it needs credentials, checked on use)."""
    if "://" in sweep.storage_path:
        scheme, rest = sweep.storage_path.split("://", 1)
        if not rest.strip("/"):
            return [Problem("storage_path", f"{sweep.storage_path!r} names no bucket or folder")]
        client = remote_client_problem(scheme)
        return [Problem("storage_path", client)] if client else []
    problem = folder_write_problem(sweep.experiment_uri)
    return [Problem("storage_path", problem)] if problem else []


def folder_write_problem(folder: str) -> str | None:
    """Why `folder` cannot be written (a probe file; the folders made for it are removed again)."""
    created = [folder]  # the folders the probe creates, deepest first: removed again
    while not os.path.exists(os.path.dirname(created[-1])) and os.path.dirname(created[-1]) != created[-1]:
        created.append(os.path.dirname(created[-1]))
    created = [f for f in created if not os.path.exists(f)]
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".memlaw-probe-{os.getpid()}")
        with open(probe, "wb") as fh:
            fh.write(b"probe")
        os.remove(probe)
    except OSError as err:
        return (f"cannot write the experiment folder {folder}: {err.strerror or err} (a writable local folder or "
                f"an s3://, gs:// URI)")
    finally:
        for made in created:  # validating creates nothing
            with contextlib.suppress(OSError):
                os.rmdir(made)
    return None


#: What a scheme needs besides fsspec, on this machine (a `memlaw submit` job needs it on the cluster).
HADOOP_ENV = ("JAVA_HOME", "HADOOP_HOME")


def remote_client_problem(scheme: str) -> str | None:
    """Why this machine cannot write `scheme://` storage: its fsspec driver is not installed (s3fs,
    gcsfs, adlfs), or, for hdfs, no Hadoop client (libhdfs loads through JAVA_HOME and HADOOP_HOME)."""
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError as err:
        return (f"{scheme}:// storage needs its fsspec driver on this machine ({str(err).splitlines()[0]}; "
                f"pip install 'memlaw[cloud]')")
    except ValueError:
        return f"{scheme}:// is not a storage scheme fsspec knows"
    missing = [name for name in HADOOP_ENV if scheme == "hdfs" and not os.environ.get(name)]
    if missing:
        return (f"hdfs:// storage needs a Hadoop client on this machine ({' and '.join(missing)} not set, so libhdfs "
                f"cannot load); use a shared path or s3://, gs://")
    return None


def model_problems(sweep: SweepConfig) -> list[Problem]:
    """Shape rules (rank <= hidden size, ...) for every distinct model × largest rank in the sweep."""
    from trainables.model import check_against_model

    base = sweep.base_trial
    axis_ranks, axis_models = search_of(sweep).model_axes(sweep)
    ranks = [r for r in axis_ranks if isinstance(r, int) and not isinstance(r, bool)]
    rank, models = max([base.adapter.rank, *ranks]), [base.model.name, *axis_models]
    problems = []
    for model in dict.fromkeys(models):
        try:
            cfg = sweep.trial_config({"model.name": model, "adapter.rank": rank})
        except ConfigError:
            continue  # already reported as a grid problem
        try:
            check_against_model(cfg)
        except ConfigError as err:
            problems.extend(Problem(_model_problem_field(sweep, p.field, model != base.model.name), p.message)
                            for p in err.problems)
    return problems


def _model_problem_field(sweep: SweepConfig, field: str, model_from_axis: bool) -> str:
    """Name the field the user wrote: a grid axis in space_overrides, else the base trial's field."""
    if field.startswith("adapter.rank") and "adapter.rank" in sweep.space_overrides:
        return "space_overrides.adapter.rank"
    if field.startswith("model.") and model_from_axis and "model.name" in sweep.space_overrides:
        return "space_overrides.model.name"
    return f"trial.{field}"
