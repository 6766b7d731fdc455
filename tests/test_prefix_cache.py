"""The frozen-prefix cache is exact: cached and uncached trials agree on every loss, metric and
per-sequence result, on a Llama and a Qwen3 (sliding-window layers) built tiny from configs, for SFT,
MemFT-OT and MemFT-SW, with evaluations, greedy decoding and a resume from a mid-way checkpoint.

The only allowed difference is float reduction order (the cache is built over evaluation chunks,
a training batch may be narrower); the tests measure it and print it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import print_figure
from trainables import metric_names as K
from trainables.config import TrialConfig
from trainables.memorize import MemorizationTrial, forward_targets, train
from trainables.model import byte_tokenizer
from trainables.prefix_cache import EXACT_FAMILIES, plan_prefix_cache

VOCAB = 512
#: Loss agreement asked of cached vs uncached (nats, absolute): float32 reduction-order noise is
#: ~1e-6 here (printed by the tests); a wrong mask or position would differ by orders of magnitude.
TOLERANCE = 1e-4


def _config(family: str):
    from transformers import GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2, tie_word_embeddings=False, initializer_range=0.2)
    if family == "llama":
        return LlamaConfig(num_key_value_heads=2, **common)
    if family == "mistral":
        return MistralConfig(num_key_value_heads=2, sliding_window=6, **common)
    if family == "qwen2":
        return Qwen2Config(num_key_value_heads=2, use_sliding_window=True, sliding_window=6, max_window_layers=2,
                           **common)
    if family == "qwen3":  # sliding-window layers above layer 2: the per-layer mask types are indexed right
        return Qwen3Config(num_key_value_heads=2, head_dim=16, use_sliding_window=True, sliding_window=6,
                           max_window_layers=2, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(**{**common, "hidden_dropout": 0.0, "attention_dropout": 0.0})
    raise ValueError(family)


def tiny_folder(root: Path, family: str) -> Path:
    """A seeded random-init model of `family`, saved with a byte tokenizer (loads via from_pretrained)."""
    from transformers import AutoModelForCausalLM

    folder = root / f"tiny-{family}"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(_config(family)).save_pretrained(folder)
        byte_tokenizer(VOCAB).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix-models")
    return {family: tiny_folder(root, family) for family in ("llama", "qwen3")}


def trial_cfg(folder: Path, method: str, cached: bool, **over) -> TrialConfig:
    return TrialConfig.from_dict({
        "model": {"name": str(folder)}, "adapter": {"placement": "paper", "rank": 4, "layer": 2, "dropout": 0.1},
        "data": {"target_tokens": 20, "num_sequences": 6, "prompt_tokens": 5},
        "budget": {"steps": 12, "lr": 0.1, "batch_size": 4}, "method": {"name": method},
        "eval": {"every": 4, "greedy_every": 1, "checkpoint_every": 1}, "prefix_cache": cached, **over})


def _evals(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "evals.jsonl").read_text().splitlines()]


LOSS_KEYS = (K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS)


def _gap(a: list[dict], b: list[dict]) -> float:
    """Largest |difference| of any loss of any evaluation; every other metric must be equal."""
    assert len(a) == len(b)
    gap = 0.0
    for x, y in zip(a, b):
        for key in set(x) | set(y):
            if key == K.WALL_S:
                continue
            if key in LOSS_KEYS or key == K.BITS_PER_PARAM:
                gap = max(gap, abs(x[key] - y[key]) if key != K.BITS_PER_PARAM else 0.0)
            else:
                assert x[key] == y[key], (key, x[key], y[key])
    return gap


def _rows_gap(a: list[dict], b: list[dict]) -> float:
    gap = 0.0
    for x, y in zip(a, b, strict=True):
        for key in x:
            if isinstance(x[key], float):
                gap = max(gap, abs(x[key] - y[key]))
            else:
                assert x[key] == y[key], (key, x[key], y[key])
    return gap


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("method", ["sft", "memft", "memft_sw"])
def test_cached_and_uncached_trials_agree(models, tmp_path, request, family, method):
    """Same evaluations (every metric, losses within float noise) and the same per-sequence results."""
    results = {}
    for cached in (True, False):
        out = tmp_path / f"cached-{cached}"
        results[cached] = (train(trial_cfg(models[family], method, cached), out), _evals(out))
    (fast, fast_evals), (slow, slow_evals) = results[True], results[False]
    gap = _gap(fast_evals, slow_evals)
    rows_gap = _rows_gap(fast[K.PER_SEQUENCE], slow[K.PER_SEQUENCE])
    assert gap < TOLERANCE and rows_gap < TOLERANCE
    assert fast_evals[-1][K.LOSS_FINAL] < fast_evals[0][K.LOSS_INIT] - 0.1  # it trained: not a vacuous match
    print_figure(request, f"prefix cache {family}/{method}: largest loss gap {gap:.2e} nats, "
                          f"per-sequence {rows_gap:.2e}")


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_a_cached_trial_resumes_to_the_uninterrupted_result(models, tmp_path, family):
    """The cache is rebuilt on resume (it is not in the checkpoint) and the run ends bit-identical."""
    cfg = trial_cfg(models[family], "memft_sw", True)
    mid = tmp_path / "mid"

    def keep_mid(metrics, checkpoint):
        if checkpoint and metrics[K.STEP] == 4 and not mid.exists():
            shutil.copytree(checkpoint, mid)

    straight = train(cfg, tmp_path / "straight", report=keep_mid)
    resumed = train(cfg, tmp_path / "resumed", resume_from=mid)
    drop = {K.WALL_S}
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in straight.items() if k not in drop}


def test_a_batch_from_the_cache_matches_the_full_forward_logits(models, tmp_path, request):
    """One training-mode batch (a subset of rows, narrower than the corpus): logits and gradients agree."""
    gaps = []
    for family, folder in models.items():
        cfg = trial_cfg(folder, "sft", True, adapter={"placement": "paper", "rank": 4, "layer": 2, "dropout": 0.0})
        trial = MemorizationTrial(cfg, tmp_path / family)
        assert trial.prefix is not None, trial.prefix_note
        torch.nn.init.normal_(next(p for p in trial.model.parameters() if p.requires_grad))  # a non-zero adapter
        batch = trial.corpus.batch([4, 1, 3])
        trial.model.train()
        grads = []
        for prefix in (trial.prefix, None):
            trial.model.zero_grad()
            tf = forward_targets(trial.model, batch, prefix=prefix)
            tf.losses.sum().backward()
            grads.append(([p.grad.clone() for p in trial.model.parameters() if p.requires_grad], tf.losses.detach()))
        (g_fast, l_fast), (g_slow, l_slow) = grads
        gaps.append(float((l_fast - l_slow).abs().max()))
        for a, b in zip(g_fast, g_slow):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        # the suffix forward restored the model: the full forward still runs every layer
        assert all(type(layer).__name__ != "_PassThrough" for layer in trial.prefix.layers)
    assert max(gaps) < TOLERANCE
    print_figure(request, f"prefix cache one batch: loss gap {max(gaps):.2e} nats (llama, qwen3)")


@pytest.mark.parametrize("family", sorted(EXACT_FAMILIES))
def test_every_family_declared_exact_is_exact(tmp_path, family):
    """EXACT_FAMILIES is a claim about each family's forward (identity from embedding to layer 0):
    checked for each on a tiny model, so an upgrade that changes one fails here."""
    folder = tiny_folder(tmp_path, family)
    cfg = trial_cfg(folder, "sft", True, adapter={"placement": "paper", "rank": 4, "layer": 2, "dropout": 0.0})
    trial = MemorizationTrial(cfg, tmp_path / "trial")
    assert trial.prefix is not None, trial.prefix_note
    torch.nn.init.normal_(next(p for p in trial.model.parameters() if p.requires_grad))
    batch = trial.corpus.batch(list(range(6)))
    with torch.no_grad():
        fast = trial.prefix.logits(trial.model, batch)
        slow = trial.model(input_ids=batch.ids, attention_mask=batch.attn).logits
    real = batch.attn.bool()
    torch.testing.assert_close(fast[real], slow[real], rtol=1e-4, atol=1e-4)


def test_when_the_cache_is_off_and_why(models, tmp_path):
    """Off by the switch, for PEFT placement, at layer 0 and with dropout below the adapter."""
    folder = models["llama"]
    cases = {
        "prefix_cache: false": trial_cfg(folder, "sft", False),
        "PEFT placement": trial_cfg(folder, "sft", True, adapter={"placement": "peft", "rank": 4}),
        "layer 0": trial_cfg(folder, "sft", True, adapter={"placement": "paper", "rank": 4, "layer": 0}),
    }
    for why, cfg in cases.items():
        trial = MemorizationTrial(cfg, tmp_path / why.split()[0])
        assert trial.prefix is None and why in trial.prefix_note, trial.prefix_note
    trial = MemorizationTrial(trial_cfg(folder, "sft", True), tmp_path / "on")
    trial.model.get_base_model().config.attention_dropout = 0.1
    layer, note = plan_prefix_cache(trial.cfg, trial.model, trial.corpus, supported=True)
    assert layer is None and "attention_dropout" in note
    layer, note = plan_prefix_cache(trial.cfg, trial.model, trial.corpus, supported=False)
    assert layer is None and "shards" in note
