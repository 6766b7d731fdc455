"""The information measures (trainables/information.py): hand computations in milliseconds, and the null
of a real adapter (tiny-xs, one torch thread, a few seconds) evaluated on random targets it never saw."""

from __future__ import annotations

import math

import pytest
import torch

from trainables import information as info
from trainables import metric_names as K

LN2 = math.log(2.0)
V = 509  # the tiny models' candidate count: 512 byte-level ids minus 3 specials
CHANCE = math.log(V)


def per_token_clamp(init: torch.Tensor, final: torch.Tensor, mask: torch.Tensor, n_candidates: int) -> float:
    """The definition bits_above_chance had before issue 23: Σ_t max(0, min(L_init,t, ln |V_cand|) − L_final,t)
    / ln 2. Kept here only to show, on the same data, what it claimed; it is not a code length."""
    saved = (init.clamp(max=math.log(n_candidates)) - final).clamp(min=0.0)
    return float((saved * mask).sum()) / LN2


def test_chance_level_is_the_uniform_code_length():
    assert info.chance_level(V) == pytest.approx(6.2324480165)
    assert info.chance_level(1) == 0.0
    with pytest.raises(ValueError, match="n_candidates"):
        info.chance_level(0)


def test_bits_above_chance_by_hand_per_sequence():
    """Random targets, three sequences (nats), reference H_s = ℓ_s · ln V whatever L_init says:
      seq 0: L_final (1.0, 9.0, 0.5)  S_0 = 3 ln V − 10.5 = 8.197 > 0: counts in full, the 9.0 token too
      seq 1: L_final (7.0, 5.0, 7.0)  S_1 = 3 ln V − 19.0 = −0.303 < 0: 0 bits; the per-token clamp
             would count its middle token's ln V − 5.0 = 1.232 nats
      seq 2: L_final (3.0, pad, pad)  S_2 = ln V − 3.0; the pads' inf and NaN never count
    """
    final = torch.tensor([[1.0, 9.0, 0.5], [7.0, 5.0, 7.0], [3.0, math.inf, math.nan]])
    init = torch.tensor([[9.0, 5.0, 7.0], [9.0, 9.0, 9.0], [4.0, math.nan, 0.0]])  # ignored for random targets
    mask = torch.tensor([[True, True, True], [True, True, True], [True, False, False]])
    by_seq = info.bits_per_sequence(init, final, mask, V, random_targets=True)
    expected = [(3 * CHANCE - 10.5) / LN2, 0.0, (CHANCE - 3.0) / LN2]
    assert by_seq.tolist() == pytest.approx(expected, rel=1e-6)
    assert info.bits_above_chance(init, final, mask, V, random_targets=True) == pytest.approx(sum(expected), rel=1e-6)
    assert info.bits_above_chance(None, final, mask, V, random_targets=True) == pytest.approx(sum(expected), rel=1e-6)
    # the negative sequence alone: 0 bits as a code length, > 0 under the per-token clamp
    one = (init[1:2], final[1:2], mask[1:2])
    assert info.bits_above_chance(*one, V, random_targets=True) == 0.0
    assert per_token_clamp(*one, V) == pytest.approx((CHANCE - 5.0) / LN2, rel=1e-6)
    # the law's per-token reference is unchanged: min(L_init,t, ln V), pooled over real tokens
    assert info.mean_reference_loss(init, mask, V) == pytest.approx((CHANCE + 5.0 + 4 * CHANCE + 4.0) / 7, rel=1e-6)


def test_text_targets_use_the_base_model_as_a_proxy_reference():
    """Not random: H_s = min(Σ_t L_init,t, ℓ_s ln V), the shorter of the base model's code and the uniform
    one. seq 0: the base (2 + 3 = 5 nats) beats 2 ln V; the final 0.5 + 3.5 = 4 saves 1 nat (a per-token
    clamp says 1.5: it keeps the 1.5 gained on token 0 and drops the 0.5 lost on token 1).
    seq 1: an overconfident base (2 × 9 nats) is replaced by the uniform code, 2 ln V; final 2 × 6 nats."""
    init = torch.tensor([[2.0, 3.0], [9.0, 9.0]])
    final = torch.tensor([[0.5, 3.5], [6.0, 6.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    refs = info.sequence_references(init, mask, V, random_targets=False)
    assert refs.tolist() == pytest.approx([5.0, 2 * CHANCE])
    assert info.bits_per_sequence(init, final, mask, V, random_targets=False).tolist() == pytest.approx(
        [1.0 / LN2, (2 * CHANCE - 12.0) / LN2], rel=1e-6)
    assert per_token_clamp(init[:1], final[:1], mask[:1], V) == pytest.approx(1.5 / LN2)
    with pytest.raises(ValueError, match="L_init"):
        info.bits_above_chance(None, final, mask, V, random_targets=False)


def test_a_trial_that_ends_above_chance_stores_zero_bits():
    """An overconfident start (L_init 8.73 > ln 509) trained to 7.90, still above chance. ΔL = 0.83
    nats/token looks like learning; nothing is stored: 0 bits."""
    init = torch.full((1, 1024), 8.73)
    final = torch.full((1, 1024), 7.90)
    mask = torch.ones(1, 1024, dtype=torch.bool)
    assert info.bits_above_chance(init, final, mask, V, random_targets=True) == 0.0
    assert info.certified_bits(0, V) == 0.0
    paper = 1024 * (8.73 - 7.90) / LN2  # the ΔL-based figure the paper's bits/param is built on
    assert paper > 1200  # ... which would claim over a kilobit


def test_a_duplicated_sequence_counts_twice_and_keeps_its_own_bits():
    """A sum of per-sequence code lengths: a row repeated is coded twice, so the total doubles exactly
    and each copy's bits equal the original's (no cross-talk between rows). Rows are distinct samples
    in practice: every sequence has its own random key (trainables/data.py)."""
    g = torch.Generator().manual_seed(0)
    final = torch.rand(1, 40, generator=g) * 8.0
    mask = torch.ones(1, 40, dtype=torch.bool)
    single = info.bits_per_sequence(None, final, mask, V, random_targets=True)
    double = info.bits_per_sequence(None, final.repeat(2, 1), mask.repeat(2, 1), V, random_targets=True)
    assert single.item() > 0 and double.tolist() == [single.item()] * 2
    assert info.bits_above_chance(None, final.repeat(2, 1), mask.repeat(2, 1), V, random_targets=True) == \
        pytest.approx(2 * info.bits_above_chance(None, final, mask, V, random_targets=True), rel=1e-6)


def test_bits_never_exceed_the_reference():
    """0 <= bits <= Σ_s H_s / ln 2 (ℓ · log2 V for random targets): a loss is never below 0 nats."""
    final = torch.tensor([[0.0, 0.0], [0.0, 20.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert info.bits_above_chance(None, final, mask, V, random_targets=True) == pytest.approx(2 * math.log2(V))
    assert info.bits_above_chance(None, final[:1], mask[:1], V, random_targets=True) == pytest.approx(2 * math.log2(V))


def test_a_model_that_saw_nothing_stores_about_nothing_synthetic():
    """The null in closed form: a fixed near-uniform q (random logits, scale 0.3) over V candidates,
    fresh uniform targets. S_s has mean −ℓ_s · KL(u‖q) < 0 and P(S_s ≥ k bits) <= 2^−k (Markov on q/u),
    so E[bits per sequence] <= 1/ln 2 whatever q is, at any length. The per-token clamp keeps every lucky
    token, so its null grows with ℓ: at 64 tokens it is several times that bound."""
    g = torch.Generator().manual_seed(1)
    logq = torch.log_softmax(0.3 * torch.randn(V, generator=g), dim=0)
    n, length = 2000, 64
    targets = torch.randint(0, V, (n, length), generator=g)
    final = -logq[targets]
    mask = torch.ones(n, length, dtype=torch.bool)
    per_seq = info.bits_above_chance(None, final, mask, V, random_targets=True) / n
    old_per_seq = per_token_clamp(torch.full_like(final, CHANCE), final, mask, V) / n
    assert per_seq <= 1 / LN2  # a bound on the expectation; the mean of 2000 draws has a standard error
    # of ~0.02 bits here (`bits_per_sequence(...).std() / √2000` on these draws), far below the room left
    assert old_per_seq > 4 * (1 / LN2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """tiny-xs (random init, one thread) with a rank-4 adapter trained 60 steps on ONE random sequence of
    128 tokens, and 16 FRESH random sequences of 128 tokens (another data seed) it never saw."""
    from trainables.config import DataConfig, TrialConfig
    from trainables.data import build_memorization_set
    from trainables.memorize import Corpus, MemorizationTrial, evaluate_teacher_forced, load_tokenizer

    cfg = TrialConfig.from_dict({
        "model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 4},
        "data": {"kind": "random", "target_tokens": 128, "num_sequences": 1},
        "budget": {"preset": "cpu", "steps": 60, "lr": 3e-2}, "eval": {"every": 60, "checkpoint_every": 0},
        "threads": 1})
    trial = MemorizationTrial(cfg, tmp_path_factory.mktemp("null"))
    trial._start(None)
    fresh_data = build_memorization_set(DataConfig(kind="random", target_tokens=128, num_sequences=16, seed=12345),
                                        load_tokenizer(cfg))
    assert not set(fresh_data.targets) & set(trial.data.targets)
    fresh = Corpus(fresh_data, trial.corpus.pad_id, trial.device)
    fresh_init = evaluate_teacher_forced(trial.model, fresh)  # the base alone: the adapter starts at zero
    while trial.step < cfg.budget.steps:
        trial.train_step()
    return trial, fresh_init, evaluate_teacher_forced(trial.model, fresh)


def test_an_adapter_stores_no_bits_about_targets_it_never_saw(trained):
    """The NULL on a real adapter. Tolerance: with the model fixed before the fresh targets were drawn,
    each sequence's bits X_s satisfy P(X_s >= k) <= 2^−k, so Σ_s X_s over n independent sequences is
    dominated by a Gamma(n, rate ln 2) sum and P(Σ > 3n/ln 2) <= exp(−n(2 − ln 3)) < 1e−6 at n = 16
    (Chernoff): 3n/ln 2 ≈ 69 bits is a bound any honest code length meets, not a fitted number. The old
    per-token clamp on the same losses must clear it several times over, so this test fails on it."""
    trial, fresh_init, fresh = trained
    n = fresh.losses.shape[0]
    tolerance = 3 * n / LN2
    bits = info.bits_above_chance(fresh_init.losses, fresh.losses, fresh.mask, trial.n_candidates, random_targets=True)
    old = per_token_clamp(fresh_init.losses, fresh.losses, fresh.mask, trial.n_candidates)
    assert 0.0 <= bits <= tolerance
    assert old > 3 * tolerance


def test_the_same_adapter_stores_bits_about_its_own_target(trained):
    """Positive control and bound: on the sequence it trained on, the trial reports bits as defined, more
    than 20 (a model that never saw a sequence saves k bits on it with probability <= 2^−k, so 20 bits is
    a one-in-a-million null) and at most ℓ · log2 |V_cand|."""
    trial, _, _ = trained
    metrics, _ = trial.evaluate(greedy=False)
    from trainables.memorize import evaluate_teacher_forced

    tf = evaluate_teacher_forced(trial.model, trial.corpus)
    expected = info.bits_above_chance(None, tf.losses, tf.mask, trial.n_candidates, random_targets=True)
    assert metrics[K.BITS_ABOVE_CHANCE] == pytest.approx(expected, rel=1e-5)
    assert 20.0 < metrics[K.BITS_ABOVE_CHANCE] <= 128 * math.log2(trial.n_candidates)
    assert metrics[K.BITS_ABOVE_CHANCE_PER_PARAM] == pytest.approx(expected / metrics[K.TRAINABLE_PARAMS], rel=1e-5)


@pytest.mark.parametrize("kind", ["random", "text"])
def test_the_trial_tells_the_measure_its_data_kind(kind, tmp_path, monkeypatch):
    """The call site (trainables/memorize.py) passes random_targets from data.kind: exact for random
    targets, the base-model proxy for text. On the tiny random-init base both references come out equal
    (its L_init is above chance on text too), so the flag itself is what this checks."""
    from trainables.config import TrialConfig
    from trainables.memorize import MemorizationTrial

    seen = []
    real = info.bits_above_chance

    def spy(*args, random_targets):
        seen.append(random_targets)
        return real(*args, random_targets=random_targets)

    monkeypatch.setattr(info, "bits_above_chance", spy)
    cfg = TrialConfig.from_dict({
        "model": {"name": "tiny-xs"}, "adapter": {"placement": "paper", "rank": 1},
        "data": {"kind": kind, "target_tokens": 8, "num_sequences": 2},
        "budget": {"preset": "cpu", "steps": 1}, "eval": {"checkpoint_every": 0}, "threads": 1})
    trial = MemorizationTrial(cfg, tmp_path)
    trial._start(None)
    metrics, _ = trial.evaluate(greedy=False)
    assert seen == [kind == "random"] and metrics[K.BITS_ABOVE_CHANCE] is not None


def test_certified_bits_use_the_true_candidate_count():
    assert info.certified_bits(100, V) == pytest.approx(100 * math.log2(509))
    assert info.certified_bits(100, 512) == pytest.approx(900.0)  # ln 512 would overstate by 0.3 %
    assert info.certified_bits(100, V) < info.certified_bits(100, 512)


def test_per_param_and_required_drop():
    assert info.per_param(512.0, 256) == 2.0
    assert info.per_param(5.0, 0) == 5.0  # never divides by zero
    assert info.required_drop(CHANCE) == pytest.approx(CHANCE - LN2)
    assert info.overconfidence(8.73, CHANCE) == pytest.approx(8.73 - CHANCE)


def test_the_module_imports_neither_ray_deepspeed_nor_torch():
    import subprocess
    import sys

    code = ("import sys\nfor name in ('ray', 'deepspeed', 'torch'): sys.modules[name] = None\n"
            "import trainables.information")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
