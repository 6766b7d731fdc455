"""MemFT in the training loop: mix 0 is SFT bit for bit, and a skipped step makes no update."""

from __future__ import annotations

import json

import pytest
from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.memorize import MemorizationTrial, train


def tiny(method: dict, steps: int = 8, lr: float = 1e-2) -> TrialConfig:
    return TrialConfig.from_dict({
        "model": {"name": "tiny-xs"}, "adapter": {"placement": "peft", "rank": 2},
        "data": {"target_tokens": 8, "num_sequences": 2}, "method": method,
        "budget": {"steps": steps, "lr": lr}, "eval": {"every": 2, "checkpoint_every": 0}})


def _evals(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "evals.jsonl").read_text().splitlines()]


def test_mix_zero_trains_exactly_as_sft(tmp_path):
    sft = train(tiny({"name": "sft"}), tmp_path / "sft")
    mixed = train(tiny({"name": "memft", "mix": 0.0, "threshold_margin": 0.2}), tmp_path / "mix0")
    a, b = _evals(tmp_path / "sft"), _evals(tmp_path / "mix0")
    assert [e[K.LOSS_FINAL] for e in a] == [e[K.LOSS_FINAL] for e in b]  # bit for bit, every evaluation
    assert sft[K.LOSS_FINAL] == mixed[K.LOSS_FINAL] and sft[K.LOSS_FINAL] < sft[K.LOSS_INIT]
    for e in a:
        assert {K.STABLE_CERTIFIED_FROM, K.CERTIFICATION_LOSSES} <= set(e)


@pytest.mark.parametrize("method, first", [
    ({"name": "memft", "when_all_learned": "skip"}, "skip"),
    ({"name": "memft_curriculum"}, "skip"),  # auto: the official curriculum skips
    ({"name": "memft"}, "update"),  # auto for memft: the plain mean
    ({"name": "memft", "mix": 0.5, "when_all_learned": "skip"}, "update"),  # the SFT half still trains
])
def test_nothing_left_to_learn_skips_the_backward_pass(tmp_path, monkeypatch, method, first):
    import trainables.memft as memft

    trial = MemorizationTrial(tiny(method, steps=4), tmp_path)
    calls = []
    monkeypatch.setattr(trial.backend, "update", lambda loss: calls.append("update"))
    monkeypatch.setattr(trial.backend, "skip_update", lambda: calls.append("skip"))
    with monkeypatch.context() as m:
        m.setattr(memft, "learned_threshold", lambda margin: float("inf"))  # every token counts as learned
        trial.train_step()
    trial.train_step()  # random targets on a fresh adapter: far below p = 0.5, so OT trains
    assert calls == [first, "update"]
