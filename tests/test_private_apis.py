"""The private attributes of Ray, Optuna and peft that memlaw relies on, checked where they are used.

Each fails loudly, with the place in memlaw that needs it, when an upgrade removes or renames it;
without these tests the failure would be a security regression (the embedded Ray listening on
the machine's address) or a silently wrong Optuna study.
"""

from __future__ import annotations

import inspect


def test_ray_cluster_switch_that_keeps_the_embedded_ray_on_loopback():
    """orchestrator/tune/ray_session.py:loopback_node_ip flips it during ray.init."""
    from ray._private import ray_constants, services

    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # the processes' switch
    assert "ENABLE_RAY_CLUSTER" in inspect.getsource(services.get_node_ip_address)


def test_ray_params_default_agent_port_that_the_embedded_ray_frees():
    """orchestrator/tune/ray_session.py:free_agent_port passes dashboard_agent_listen_port=0 to RayParams,
    which ray.init builds without it (default: Ray's fixed port), and Node then picks a free port."""
    from ray._private import node, parameter, ray_constants, worker

    params = inspect.signature(parameter.RayParams.__init__).parameters
    assert params["dashboard_agent_listen_port"].default == ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT
    assert "ray._private.parameter.RayParams(" in inspect.getsource(worker.init)
    assert "dashboard_agent_listen_port=ray_params.dashboard_agent_listen_port or 0" in inspect.getsource(node.Node)


def test_optuna_search_keeps_its_optuna_trials_by_tune_trial_id():
    """orchestrator/tune/optuna_study.py: TaggedOptunaSearch reads `_ot_trials[trial_id]` after suggest
    and adds to `_completed_trials`, as OptunaSearch itself does."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator.tune.optuna_study import TUNE_TRIAL_ID, TaggedOptunaSearch
    from search_spaces.memft import MEMFT_KNOBS, define_by_run

    searcher = TaggedOptunaSearch(space=define_by_run(MEMFT_KNOBS), metric="m", mode="max",
                                  sampler=optuna.samplers.TPESampler(seed=0))
    assert searcher.suggest("t1") is not None
    assert isinstance(searcher._ot_trials["t1"], optuna.Trial)
    assert searcher._ot_trials["t1"].user_attrs[TUNE_TRIAL_ID] == "t1"
    assert isinstance(searcher._completed_trials, set)
    assert "_completed_trials" in inspect.getsource(OptunaSearch.on_trial_complete)


def test_nsga2_sampler_lock_is_the_one_attribute_that_blocks_pickling():
    """orchestrator/tune/optuna_study.py:nsga2_sampler drops `_thread_lock` from the pickle and makes it anew."""
    import threading

    import optuna
    import ray.cloudpickle as cp

    from orchestrator.tune.optuna_study import nsga2_sampler

    sampler = nsga2_sampler(0)
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    assert isinstance(sampler._thread_lock, type(threading.Lock()))
    back = cp.loads(cp.dumps(sampler))
    assert isinstance(back._thread_lock, type(threading.Lock())) and back._thread_lock is not sampler._thread_lock


def test_optuna_frozen_trials_carry_their_storage_id(tmp_path):
    """orchestrator/tune/optuna_study.py:fail_orphaned_trials sets a user attribute by `trial._trial_id`."""
    import optuna

    from orchestrator.tune.optuna_study import FAILED_REASON, fail_orphaned_trials
    from orchestrator.experiment.folder import optuna_storage

    storage = optuna_storage(str(tmp_path))
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()
    assert isinstance(study.trials[0]._trial_id, int)
    assert fail_orphaned_trials(storage, "s") == [0]
    assert study.trials[0].state == optuna.trial.TrialState.FAIL and FAILED_REASON in study.trials[0].user_attrs


def test_peft_custom_module_registration():
    """trainables/model.py registers the paper placement's LoRA layer with LoraConfig._register_custom_module."""
    from peft import LoraConfig

    config = LoraConfig(target_modules=["x"])
    assert callable(config._register_custom_module)
    config._register_custom_module({int: object})
    assert config._custom_modules == {int: object}


def test_torch_tensor_version_counter_sees_in_place_writes():
    """trainables/model.py:BaseModels reuses a held base only if no weight was written in place since it
    was loaded, read from each parameter's `_version` (autograd's in-place counter)."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(3), requires_grad=False)
    before = weight._version
    with torch.no_grad():
        weight[1] *= 6
    assert isinstance(before, int) and weight._version > before


def test_torch_module_hook_dicts_count_registered_hooks():
    """trainables/model.py:_module_layout counts `_forward_hooks` and `_forward_pre_hooks` of every module,
    so a held base that kept a hook (e.g. a prefix-cache capture) is not reused."""
    import torch

    layer = torch.nn.Linear(2, 2)
    before = len(layer._forward_hooks) + len(layer._forward_pre_hooks)
    handle = layer.register_forward_pre_hook(lambda *_: None, with_kwargs=True)
    assert len(layer._forward_hooks) + len(layer._forward_pre_hooks) == before + 1
    handle.remove()
    assert len(layer._forward_pre_hooks) == 0


def test_tune_restores_from_the_greatest_experiment_state_name(tmp_path):
    """orchestrator/experiment/tune_state.py judges the file Tune would restore from: the greatest name
    matching TuneController.CKPT_FILE_TMPL (ray.tune.execution.experiment_state's private rule), and
    Tune restarts the whole experiment when that file cannot be loaded (`_fail_fast` off)."""
    from ray.tune.execution import tune_controller
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    from orchestrator.experiment.tune_state import STATE_PATTERN, newest_state

    assert tune_controller.TuneController.CKPT_FILE_TMPL.format("*") == STATE_PATTERN
    for name in ("experiment_state-2026-01-02_03-04-05.json", "experiment_state-2026-11-30_23-59-59.json",
                 "experiment_state-2026-02-01_00-00-00.json", "other.json"):
        (tmp_path / name).write_text("{}")
    assert newest_state(str(tmp_path)) == "experiment_state-2026-11-30_23-59-59.json"
    assert _find_newest_experiment_checkpoint(str(tmp_path)).endswith(newest_state(str(tmp_path)))
    assert 'logger.info("Restarting experiment.")' in inspect.getsource(tune_controller.TuneController.__init__)


def test_searcher_state_keeps_the_storage_of_trials_not_yet_created():
    """orchestrator/tune/moved_experiment.py repoints these before Tuner.restore: BasicVariantGenerator's
    iterators keep `unresolved_spec["storage"]` and resolved variants in `variants.iterable`;
    SearchGenerator's state keeps the Experiment (with `.storage`); both files are saved with
    `_atomic_save` under their CKPT_FILE_TMPL; a StorageContext's place is storage_fs_path +
    experiment_dir_name."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.search import basic_variant, search_generator
    from ray.tune.utils.util import _atomic_save

    from orchestrator.tune.moved_experiment import BASIC_VARIANT_STATE, SEARCH_GENERATOR_STATE

    assert basic_variant.BasicVariantGenerator.CKPT_FILE_TMPL.format("*") == BASIC_VARIANT_STATE
    assert search_generator.SearchGenerator.CKPT_FILE_TMPL.format("*") == SEARCH_GENERATOR_STATE
    assert list(inspect.signature(_atomic_save).parameters) == ["state", "checkpoint_dir", "file_name", "tmp_file_name"]
    trial_iterator = inspect.getsource(basic_variant._TrialIterator)
    assert "self.unresolved_spec = unresolved_spec" in trial_iterator and "self.variants = _VariantIterator(" in trial_iterator
    assert "self.iterable = list(iterable)" in inspect.getsource(basic_variant._VariantIterator)
    assert '"experiment": self._experiment' in inspect.getsource(search_generator.SearchGenerator.get_state)
    storage = inspect.getsource(StorageContext)
    assert "self.experiment_dir_name = experiment_dir_name" in storage and "self.storage_fs_path =" in storage
    assert "Path(self.storage_fs_path, self.experiment_dir_name)" in storage


def test_tune_puts_the_previous_sigint_handler_back_only_when_interrupted():
    """orchestrator/tune/interrupt.py reads an interrupted fit from this: Tune's run installs its own
    SIGINT handler and, on the first SIGINT, puts the previous one back; a run that ends by itself
    leaves Tune's installed."""
    import signal

    from ray.tune import tune as tune_module

    from orchestrator.tune import interrupt

    usr1 = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    with interrupt.watch() as quiet:
        event = tune_module._setup_signal_catching()  # what tune.run does at its start
        tunes = signal.getsignal(signal.SIGINT)
        assert callable(tunes) and tunes.__name__ == "signal_interrupt_tune_run"
    assert quiet == {"interrupted": False} and not event.is_set()
    before = signal.getsignal(signal.SIGINT)
    assert before is not tunes  # watch() put the handler from before the block back
    with interrupt.watch() as caught:
        event = tune_module._setup_signal_catching()
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # Ctrl-C, as Tune's handler receives it
        assert signal.getsignal(signal.SIGINT) is before and event.is_set()
    assert caught == {"interrupted": True} and signal.getsignal(signal.SIGINT) is before
    if usr1 is not None:
        signal.signal(signal.SIGUSR1, usr1)  # Tune's handler took SIGUSR1 too


def test_tune_snapshot_keys_that_the_ghost_trial_repair_rewrites():
    """orchestrator/tune/search_counter.py edits Tune's saved search state before a resume: the search
    generator's `counter` (SearchGenerator.get_state), the ConcurrencyLimiter's `live_trials` and
    `num_unfinished_live_trials` (saved as its __dict__ under "name:ConcurrencyLimiter"), the file
    names, and each trial_data entry's first element as the trial's JSON with its trial_id."""
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search import ConcurrencyLimiter, Searcher
    from ray.tune.search.search_generator import SearchGenerator

    from orchestrator.tune import search_counter

    class Nothing(Searcher):
        def suggest(self, trial_id):
            return None

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

    generator = SearchGenerator(ConcurrencyLimiter(Nothing(), max_concurrent=2))
    assert {"counter", "total_samples", "finished"} <= set(generator.get_state())
    limiter = generator.searcher
    assert isinstance(limiter.live_trials, set) and isinstance(limiter.num_unfinished_live_trials, int)
    assert search_counter.LIMITER == "name:" + type(limiter).__name__
    assert TuneController.CKPT_FILE_TMPL.format("*") == search_counter.EXPERIMENT_STATE
    assert SearchGenerator.CKPT_FILE_TMPL.format("*") == search_counter.SEARCH_GENERATOR_STATE
