"""The chunked LM head and cross-entropy (trainables/chunked_loss.py) is exact: per-token losses, the
argmax flags and every statistic built on them (certificate, p > 0.5 share, first sub-threshold
position, teacher-forced accuracy, MemFT's weights) equal the unchunked path's, and the adapter's
gradients agree within float rounding, on the function itself (two head shapes, fp32 and bf16), on two
model families (Llama, Qwen3 with sliding-window layers) in both adapter placements with and without
the prefix cache, on every family declared chunkable, and through whole tiny trials. The default
threshold turns it on above LOSS_CHUNK_TOKENS positions a forward and leaves it off at or below.

Models other than memlaw's tiny presets are built in memory from transformers' config classes (no
folder, no hub, nothing written), so each test takes about a second.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import print_figure
from trainables import chunked_loss, memft, metric_names as K, recall
from trainables.chunked_loss import CHUNKED_FAMILIES, forward_targets, head_cross_entropy, plan_loss_chunk
from trainables.config import LOSS_CHUNK_TOKENS, AdapterConfig, TrialConfig
from trainables.data import MemorizationSet
from trainables.memorize import Corpus, MemorizationTrial, evaluate_teacher_forced, train
from trainables.methods import WindowKnobs
from trainables.model import attach_adapter, paper_layer
from trainables.prefix_cache import PrefixCache
from trainables.schema import ConfigError

VOCAB = 512
#: Loss agreement asked (nats, absolute): the same fp32 operations per token, but rows that the matmul
#: computes with another kernel (a chunk of one row) differ by a few ulps of the largest logit (L is
#: logsumexp(z) − z_y, a difference of logit-sized numbers: ~2e-6 at logits of 20). A wrong position or
#: label would differ by whole nats.
LOSS_TOL = 1e-5


def family_config(family: str):
    """A tiny random-init config of `family` (transformers' own config classes)."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

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
    if family == "qwen3":  # sliding-window layers above layer 2
        return Qwen3Config(num_key_value_heads=2, head_dim=16, use_sliding_window=True, sliding_window=6,
                           max_window_layers=2, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(**{**common, "hidden_dropout": 0.0, "attention_dropout": 0.0})
    if family == "gpt2":  # tied head: lm_head shares the embedding's weight
        return GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=4, n_head=4, n_positions=512, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2)
    raise ValueError(family)


def base_model(family: str, seed: int = 0) -> nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(family))
    model.requires_grad_(False)
    return model.eval()


def corpus(n: int = 6, seed: int = 0) -> Corpus:
    """n random targets of different lengths after distinct random keys (padding in every batch)."""
    g = torch.Generator().manual_seed(seed)
    prompts = tuple(tuple(torch.randint(3, VOCAB, (4 + i % 3,), generator=g).tolist()) for i in range(n))
    targets = tuple(tuple(torch.randint(3, VOCAB, (14 + 3 * i,), generator=g).tolist()) for i in range(n))
    return Corpus(MemorizationSet(prompts, targets), pad_id=0, device=torch.device("cpu"))


def certificate_stats(tf: recall.TeacherForced) -> dict:
    """Every per-token statistic the trial reports from a teacher-forced pass."""
    return {**recall.certificate_metrics(tf), "first_sub": memft.first_false(tf.certified_tokens, tf.mask).tolist(),
            "first_tf_error": memft.first_false(tf.correct, tf.mask).tolist()}


def compare(a: recall.TeacherForced, b: recall.TeacherForced) -> float:
    """Assert flags and statistics equal and losses within LOSS_TOL; return the largest loss gap."""
    assert torch.equal(a.mask, b.mask) and torch.equal(a.correct, b.correct)
    torch.testing.assert_close(a.losses.detach(), b.losses.detach(), rtol=0, atol=LOSS_TOL)
    gap = float((a.losses.detach() - b.losses.detach()).abs().max())
    assert certificate_stats(a) == certificate_stats(b)
    return gap


# -- the function itself -------------------------------------------------------------------------
@pytest.mark.parametrize("d, v, bias", [(64, 512, False), (48, 1000, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_chunked_head_is_the_unchunked_loss(request, d, v, bias, dtype):
    """Losses, argmax and the gradient of a weighted loss (MemFT-OT's weights, which read the losses)
    for chunks of 1 token, a few tokens, all but one, all, and more than all."""
    torch.manual_seed(1)
    head = nn.Linear(d, v, bias=bias).to(dtype).requires_grad_(False)
    nn.init.normal_(head.weight, std=0.5)
    m = 37
    hidden = torch.randn(m, d).to(dtype)
    labels = torch.randint(0, v, (m,))
    labels[::3] = (hidden.float() @ head.weight.float().T).argmax(-1)[::3]  # some tokens learned: both sides of ln 2

    def run(chunk: int):
        h = hidden.clone().requires_grad_()
        if chunk:
            losses, argmax = head_cross_entropy(h, head, labels, chunk)
        else:
            logits = head(h)
            losses = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
            argmax = logits.argmax(-1)
        mask = torch.ones(1, m, dtype=torch.bool)
        tf = recall.TeacherForced(losses.view(1, m), (argmax == labels).view(1, m), mask)
        (tf.losses * memft.mixed_weights(tf.losses.detach(), mask, 0.0, 0.5)).sum().backward()
        return tf, h.grad

    ref, ref_grad = run(0)
    bit_equal = 0
    for chunk in (1, 5, m - 1, m, 4 * m):
        tf, grad = run(chunk)
        compare(tf, ref)
        bit_equal += torch.equal(tf.losses, ref.losses)
        if chunk >= m:  # one chunk: the very operations of the unchunked path, so the very bits
            assert torch.equal(tf.losses, ref.losses)
        if dtype == torch.float32:
            torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5 * float(ref_grad.abs().max()))
        else:  # g is applied after the bf16 matmul instead of before it: one bf16 rounding apart
            torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=1.6e-2, atol=1e-3)
    print_figure(request, f"chunked head d={d} V={v} {dtype}: losses bit-equal in {bit_equal}/5 chunk sizes "
                          "(a chunk of a few rows may take another matmul kernel)")


def test_without_a_gradient_nothing_is_kept_for_one():
    """Evaluation (no grad) and frozen inputs take the plain loop: no autograd node, no Jacobian."""
    head = nn.Linear(8, 32).requires_grad_(False)
    hidden, labels = torch.randn(10, 8), torch.randint(0, 32, (10,))
    with torch.no_grad():
        losses, _ = head_cross_entropy(hidden.requires_grad_(), head, labels, 3)
    assert losses.grad_fn is None
    losses, argmax = head_cross_entropy(torch.randn(10, 8), head, labels, 3, with_correct=False)
    assert losses.grad_fn is None and argmax.numel() == 0
    with pytest.raises(ValueError, match="chunk"):
        head_cross_entropy(hidden, head, labels, 0)


# -- two families, both placements, with and without the prefix cache ------------------------------
PLACEMENTS = {"paper, cached": ("paper", True), "paper, uncached": ("paper", False), "peft": ("peft", False)}


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_a_batch_is_exact_on_two_families_and_both_placements(request, family, placement):
    """One training-mode batch (rows of different lengths: padding) and one evaluation: losses, flags,
    statistics and the adapter's gradients of MemFT-SW's loss (reads losses and argmax) agree."""
    kind, cached = PLACEMENTS[placement]
    adapter = AdapterConfig(placement=kind, rank=4, layer=2 if kind == "paper" else None, dropout=0.0)
    model = attach_adapter(base_model(family), adapter, seed=3)
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.2)  # a non-zero adapter (B starts at zero)
    data = corpus()
    prefix = PrefixCache(model, paper_layer(adapter, 4), data) if cached else None
    batch = data.batch([4, 1, 3])
    model.train()
    results = []
    for chunk in (0, 8):
        model.zero_grad()
        tf = forward_targets(model, batch, with_correct=True, prefix=prefix, chunk=chunk)
        weights = memft.sliding_window_weights(tf.losses.detach(), tf.correct, tf.mask, [4, 1, 3],
                                               memft.WindowState(), WindowKnobs())
        (tf.losses * weights).sum().backward()
        results.append((tf, [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (plain, g_plain), (chunked, g_chunked) = results
    gap = compare(chunked, plain)
    for a, b in zip(g_chunked, g_plain, strict=True):
        scale = float(b.abs().max())
        assert scale > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)  # float rounding of the gradient's sums
    evals = [evaluate_teacher_forced(model, data, prefix, chunk) for chunk in (0, 8)]
    gap = max(gap, compare(evals[1], evals[0]))
    print_figure(request, f"chunked loss {family}/{placement}: largest loss gap {gap:.1e} nats")


@pytest.mark.parametrize("family", sorted(CHUNKED_FAMILIES))
def test_every_family_declared_chunkable_is_exact(family):
    """CHUNKED_FAMILIES claims each family's logits are lm_head(base_model(...).last_hidden_state):
    checked against the model's own forward for each, so an upgrade that changes one fails here."""
    model = base_model(family)
    assert chunked_loss.why_not_chunkable(model) is None
    batch = corpus().batch(list(range(6)))
    with torch.no_grad():
        compare(forward_targets(model, batch, chunk=7), forward_targets(model, batch, chunk=0))


# -- whole trials on memlaw's tiny Llama preset ----------------------------------------------------
def trial_cfg(chunk: int, method: str = "memft_sw", placement: str = "paper", **over) -> TrialConfig:
    adapter = {"placement": placement, "rank": 4, **({"layer": 1} if placement == "paper" else {})}
    return TrialConfig.from_dict({
        "model": {"name": "tiny-xs"}, "adapter": adapter,
        "data": {"target_tokens": 20, "num_sequences": 6, "prompt_tokens": 5},
        "budget": {"steps": 12, "lr": 0.1, "batch_size": 4}, "method": {"name": method},
        "eval": {"every": 4, "greedy_every": 1}, "loss_chunk_tokens": chunk, **over})


LOSS_KEYS = (K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS, K.DELTA_LOSS_HALF, K.CONVERGENCE_RATIO, K.BITS_PER_PARAM,
             K.WALL_S, K.LOSS_REF, K.DROP_BELOW_CHANCE, K.BITS_ABOVE_CHANCE, K.BITS_ABOVE_CHANCE_PER_PARAM)


@pytest.mark.parametrize("method, placement", [("sft", "peft"), ("memft", "paper"), ("memft_sw", "paper")])
def test_chunked_and_unchunked_trials_agree(tmp_path, request, method, placement):
    """Every evaluation's metrics and the per-sequence rows equal; losses within float noise."""
    results = {}
    for chunk in (16, 0):
        results[chunk] = train(trial_cfg(chunk, method, placement), tmp_path / f"chunk-{chunk}")
    chunked, plain = results[16], results[0]
    gap = 0.0
    for key in set(chunked) | set(plain):
        if key in LOSS_KEYS:
            if chunked[key] is not None and key != K.WALL_S:
                gap = max(gap, abs(chunked[key] - plain[key]) / max(1.0, abs(plain[key])))
        else:
            assert chunked[key] == plain[key], key
    assert gap < 1e-4 and plain[K.LOSS_FINAL] < plain[K.LOSS_INIT] - 0.1  # it trained: not a vacuous match
    print_figure(request, f"chunked trial tiny-xs {method}/{placement}: largest relative loss gap {gap:.1e}")


def test_the_default_threshold_turns_it_on_above_and_off_below(tmp_path, monkeypatch):
    """Default loss_chunk_tokens: chunked exactly when a forward's logits would hold more positions."""
    assert TrialConfig().loss_chunk_tokens == LOSS_CHUNK_TOKENS > 0
    calls: list[str] = []
    plain, chunked = recall.teacher_forced, chunked_loss.teacher_forced_chunked
    monkeypatch.setattr(chunked_loss.recall, "teacher_forced", lambda *a, **k: calls.append("plain") or plain(*a, **k))
    monkeypatch.setattr(chunked_loss, "teacher_forced_chunked", lambda *a, **k: calls.append("chunked") or chunked(*a, **k))
    for target, want in ((LOSS_CHUNK_TOKENS - 8, "plain"), (LOSS_CHUNK_TOKENS - 7, "chunked")):
        cfg = TrialConfig.from_dict({"model": {"name": "tiny-xs"}, "adapter": {"rank": 2},
                                     "data": {"target_tokens": target, "prompt_tokens": 8}, "budget": {"steps": 1}})
        trial = MemorizationTrial(cfg, tmp_path / str(target))
        assert trial.loss_chunk == LOSS_CHUNK_TOKENS and trial.chunk_note.startswith("on"), trial.chunk_note
        calls.clear()
        trial.measure_init()
        trial.train_step()
        assert trial.corpus.ids.numel() == target + 8 and calls == [want, want]


def test_when_it_is_off_and_why(tmp_path):
    """Off by the switch, under a sharding backend, with a trained or adapted head, for another family."""
    trial = MemorizationTrial(trial_cfg(0), tmp_path / "off")
    assert trial.loss_chunk == 0 and trial.chunk_note == "off (loss_chunk_tokens: 0)"
    cfg = trial_cfg(16)
    assert plan_loss_chunk(cfg, trial.model, supported=False) == (0, "off: this backend shards the model")
    assert plan_loss_chunk(cfg, trial.model, supported=True)[0] == 16
    lora_head = trial_cfg(16, placement="peft", adapter={"placement": "peft", "rank": 4,
                                                          "target_modules": ["q_proj", "lm_head"]})
    adapted = MemorizationTrial(lora_head, tmp_path / "lora-head")
    assert adapted.loss_chunk == 0 and "not a plain frozen Linear" in adapted.chunk_note
    head = trial.model.get_base_model().lm_head
    head.weight.requires_grad_(True)
    assert "train" in plan_loss_chunk(cfg, trial.model, supported=True)[1]
    head.weight.requires_grad_(False)
    trial.model.get_base_model().config.model_type = "gemma2"  # soft-capped logits: not lm_head(h) alone
    assert "gemma2" in plan_loss_chunk(cfg, trial.model, supported=True)[1]


def test_the_field_is_validated():
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"loss_chunk_tokens": -1})
    assert [str(p) for p in err.value.problems] == ["loss_chunk_tokens: must be in [0, 16777216], got -1"]
    assert TrialConfig.from_dict({"loss_chunk_tokens": 0}).loss_chunk_tokens == 0
