"""Resuming a moved or copied experiment: the trials Tune has not created yet go where it is now.

Tune's restore moves the trials it restores to the experiment's new place (TuneController.
_restore_trials gives each a copy of the controller's StorageContext), but not the experiment spec
its search algorithm keeps for the trials it will create later: BasicVariantGenerator's
`_TrialIterator.unresolved_spec["storage"]` and the copies in the variants it already resolved
(`_TrialIterator.variants.iterable`: grids), and SearchGenerator's `Experiment.storage`
(Optuna, adaptive). Measured on Ray 2.60: a Ctrl-C'd 6-point grid, copied and resumed, trained its
two not-yet-created trials with checkpoints and trial folders written under the ORIGINAL folder
(recreated if it had been moved away), and the copy held no adapter or evaluations for them.

`repoint_search_state(uri)` rewrites the searcher's saved state files in `uri` (Tune's own atomic
save) so that every StorageContext they hold names `uri`, before `Tuner.restore` reads them. Local
experiments only: an object-store experiment is resumed where it was written. The private names
used here are pinned by tests/test_private_apis.py.
"""

from __future__ import annotations

import fnmatch
import os

#: The searcher state files (CKPT_FILE_TMPL of each) and where their StorageContexts sit.
BASIC_VARIANT_STATE = "basic-variant-state-*.json"
SEARCH_GENERATOR_STATE = "search_gen_state-*.json"


def repoint_search_state(experiment_uri: str) -> int:
    """Point every saved searcher StorageContext at `experiment_uri`; how many were repointed."""
    from ray.tune.utils.util import _atomic_save
    import ray.cloudpickle as cloudpickle

    if "://" in experiment_uri or not os.path.isdir(experiment_uri):
        return 0
    folder = os.path.abspath(experiment_uri)
    parent, name = os.path.split(folder)
    repointed = 0
    for pattern in (BASIC_VARIANT_STATE, SEARCH_GENERATOR_STATE):
        for file_name in fnmatch.filter(os.listdir(folder), pattern):
            with open(os.path.join(folder, file_name), "rb") as fh:
                state = cloudpickle.load(fh)  # Tune unpickles this file on restore in any case
            moved = [s for s in _storages(state) if (s.storage_fs_path, s.experiment_dir_name) != (parent, name)]
            for storage in moved:
                storage.storage_fs_path, storage.experiment_dir_name = parent, name
            if moved:
                _atomic_save(state=state, checkpoint_dir=folder, file_name=file_name, tmp_file_name=f"tmp-{file_name}")
                repointed += len(moved)
    return repointed


def _storages(state) -> list:
    """The StorageContexts a searcher's saved state keeps for trials it has not created yet."""
    if not isinstance(state, dict):
        return []
    found = []
    for it in state.get("_iterators", []):  # BasicVariantGenerator: its spec, and the variants it resolved
        found.append(it.unresolved_spec.get("storage"))
        variants = getattr(it, "variants", None)
        found += [spec.get("storage") for _, spec in getattr(variants, "iterable", None) or []
                  if isinstance(spec, dict)]
    experiment = state.get("experiment")  # SearchGenerator
    if experiment is not None:
        found.append(getattr(experiment, "storage", None))
    return [s for s in found if s is not None and getattr(s, "storage_filesystem", None) is not None
            and type(s.storage_filesystem).__name__ == "LocalFileSystem"]
