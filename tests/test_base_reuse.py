"""The base model once per worker: a trial on a base this process already holds ends exactly as one
on a fresh load, whatever the previous trial's placement, and the cache is bounded."""

from __future__ import annotations

import pytest
import torch

from trainables import memorize
from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.memorize import MemorizationTrial, train
from trainables.model import BaseModels, load_base


def cfg_of(**over) -> TrialConfig:
    base = {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 4},
            "data": {"target_tokens": 12, "num_sequences": 3}, "budget": {"steps": 8, "lr": 0.05},
            "eval": {"every": 4}}
    for key, value in over.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return TrialConfig.from_dict(base)


def _comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != K.WALL_S}


@pytest.fixture()
def bases(monkeypatch):
    held = BaseModels(capacity=1)
    monkeypatch.setattr(memorize, "BASES", held)
    return held


def test_a_reused_base_gives_the_fresh_loads_result(bases, tmp_path, monkeypatch):
    """Paper, then PEFT, then paper again on one held base: each equals the same trial on a fresh load."""
    sequence = [cfg_of(seed=1), cfg_of(adapter={"placement": "peft", "rank": 2}, seed=2),
                cfg_of(adapter={"rank": 8}, seed=3, method={"name": "memft_sw"})]
    reused = [train(cfg, tmp_path / f"reused-{i}") for i, cfg in enumerate(sequence)]
    assert bases.loads == 1
    monkeypatch.setattr(memorize, "BASES", BaseModels(capacity=0))
    fresh = [train(cfg, tmp_path / f"fresh-{i}") for i, cfg in enumerate(sequence)]
    for a, b in zip(reused, fresh):
        assert _comparable(a) == _comparable(b)


def test_a_restored_base_is_the_loaded_model(bases, tmp_path):
    """After a trial, the held base's weights, tree and flags equal a fresh load's."""
    cfg = cfg_of()
    trial = MemorizationTrial(cfg, tmp_path / "t")
    trial.run()
    del trial
    model, _ = bases.take(cfg.model, cfg.dtype, torch.device("cpu"))
    fresh, _ = load_base(cfg.model, cfg.dtype, torch.device("cpu"))
    assert bases.loads == 1
    assert [(n, type(m)) for n, m in model.named_modules()] == [(n, type(m)) for n, m in fresh.named_modules()]
    got, want = model.state_dict(), fresh.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_the_cache_is_bounded_and_a_live_trial_keeps_its_base(bases, tmp_path):
    """One base per worker: another base releases it; a base still used by a live trial is not taken."""
    first = MemorizationTrial(cfg_of(), tmp_path / "a")
    second = MemorizationTrial(cfg_of(seed=5), tmp_path / "b")  # `first` is alive: a fresh load
    assert bases.loads == 2 and first.model.get_base_model() is not second.model.get_base_model()
    del first, second
    MemorizationTrial(cfg_of(model={"name": "tiny-s"}), tmp_path / "c")
    assert bases.loads == 3 and len(bases._held) == 1


def test_a_base_written_in_place_is_loaded_again(bases, tmp_path):
    """A test or a tool that edits a held base's weights: the next trial gets a fresh load, not the edit."""
    trial = MemorizationTrial(cfg_of(), tmp_path / "a")
    with torch.no_grad():
        trial.model.get_base_model().lm_head.weight[2] *= 6
    del trial
    model, _ = bases.take(cfg_of().model, "float32", torch.device("cpu"))
    fresh, _ = load_base(cfg_of().model, "float32", torch.device("cpu"))
    assert bases.loads == 2 and torch.equal(model.lm_head.weight, fresh.lm_head.weight)


def test_the_held_bases_tokenizer_serves_the_next_trial(bases):
    """load_tokenizer asks before reading a (GGUF) tokenizer again; nothing is served once released."""
    cfg = cfg_of()
    _, tokenizer = bases.take(cfg.model, cfg.dtype, torch.device("cpu"))
    assert bases.tokenizer_for(cfg.model) is tokenizer
    assert bases.tokenizer_for(cfg_of(model={"name": "tiny-s"}).model) is None
    bases.release()
    assert bases.tokenizer_for(cfg.model) is None
