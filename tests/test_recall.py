"""Recall metrics (docs/science.md §2) on hand-built logits whose target probabilities p_t are known.

Layout: each row is prompt then target, right-padded; logits at position j predict token j + 1,
so target token t of a row with prompt length P is scored at position P - 1 + t.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainables import metric_names as K
from trainables.memft import LN2
from trainables.recall import (
    TeacherForced,
    bits_per_param,
    certificate_metrics,
    greedy_match,
    greedy_metrics,
    mean_loss,
    per_sequence,
    target_index,
    teacher_forced,
)

V = 12  # vocabulary of the hand-built examples
PAD = 0


def log_dist(target: int, p: float, rival: int | None = None, rival_p: float | None = None) -> torch.Tensor:
    """Log-probabilities over V with mass p on `target` (and rival_p on `rival`), rest spread evenly."""
    probs = torch.zeros(V, dtype=torch.float64)
    others = [i for i in range(V) if i != target and i != rival]
    rest = 1.0 - p - (rival_p or 0.0)
    probs[others] = rest / len(others)
    probs[target] = p
    if rival is not None:
        probs[rival] = rival_p
    return probs.log()


def build(rows: list[tuple[list[int], list[int], list[tuple]]]):
    """Inputs and logits for rows of (prompt, target, per-target-token spec).

    A spec is (p,) for mass p on the right token, or (p, rival, rival_p) to also put rival_p on a
    wrong token. Returns logits [N, S, V] (float32), ids [N, S], prompt_lens, target_lens.
    """
    width = max(len(p) + len(t) for p, t, _ in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    logits = torch.zeros(len(rows), width, V, dtype=torch.float32)
    for i, (prompt, target, specs) in enumerate(rows):
        seq = prompt + target
        ids[i, :len(seq)] = torch.tensor(seq)
        for t, spec in enumerate(specs):
            logits[i, len(prompt) - 1 + t] = log_dist(target[t], *spec).float()
    prompt_lens = torch.tensor([len(p) for p, _, _ in rows])
    target_lens = torch.tensor([len(t) for _, t, _ in rows])
    return logits, ids, prompt_lens, target_lens


# Three sequences with hand-counted metrics (p and whether the argmax is right, per target token):
#   A  len 3: p .9 .8 .7                         certified; argmax right everywhere
#   B  len 4: p .9 .4 .3(rival .6) .9            first p<=.5 at 1; first wrong argmax at 2
#   C  len 2: p .95 .45                          first p<=.5 at 1; argmax right everywhere
ROWS = [
    ([3, 4], [5, 6, 7], [(0.9,), (0.8,), (0.7,)]),
    ([8, 3, 9], [4, 10, 11, 5], [(0.9,), (0.4,), (0.3, 2, 0.6), (0.9,)]),
    ([6], [7, 8], [(0.95,), (0.45,)]),
]
P = [[0.9, 0.8, 0.7], [0.9, 0.4, 0.3, 0.9], [0.95, 0.45]]


@pytest.fixture()
def tf() -> TeacherForced:
    return teacher_forced(*build(ROWS))


def test_target_index_with_unequal_prompt_and_target_lengths():
    index, mask = target_index(torch.tensor([2, 3, 1]), torch.tensor([3, 1, 2]))
    assert mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    assert index.tolist() == [[1, 2, 3], [2, 0, 0], [0, 1, 0]]


def test_teacher_forced_losses_are_minus_log_p(tf):
    assert tf.mask.tolist() == [[True, True, True, False], [True] * 4, [True, True, False, False]]
    for i, probs in enumerate(P):
        expected = [-math.log(p) for p in probs]
        assert tf.losses[i, :len(probs)].tolist() == pytest.approx(expected, abs=1e-5)
        assert tf.losses[i, len(probs):].tolist() == [0.0] * (4 - len(probs))
    assert tf.losses.dtype == torch.float32


def test_teacher_forced_correct_flags(tf):
    assert tf.correct.tolist() == [[True, True, True, False], [True, True, False, True],
                                   [True, True, False, False]]


def test_teacher_forced_upcasts_half_precision_logits():
    logits, ids, pl, tl = build(ROWS[:1])
    half = teacher_forced(logits.to(torch.bfloat16), ids, pl, tl)
    assert half.losses.dtype == torch.float32
    assert half.losses[0, :3].tolist() == pytest.approx([-math.log(p) for p in P[0]], abs=2e-2)


def test_certified_tokens_and_mean_loss(tf):
    assert tf.certified_tokens.tolist() == [[True, True, True, False], [True, False, False, True],
                                            [True, False, False, False]]
    total = sum(-math.log(p) for row in P for p in row)
    assert mean_loss(tf) == pytest.approx(total / 9, abs=1e-6)


def test_certificate_metrics_hand_counted(tf):
    m = certificate_metrics(tf)
    assert m[K.FRAC_P_GT_HALF] == pytest.approx(6 / 9)  # A 3, B 2, C 1 of 9 tokens
    assert m[K.FIRST_SUBTHRESHOLD_POS] == pytest.approx((3 + 1 + 1) / 3)  # A: none -> its length 3
    assert m[K.TF_TOKEN_ACC] == pytest.approx(8 / 9)
    assert m[K.FIRST_TF_ERROR_POS] == pytest.approx((3 + 2 + 2) / 3)  # C: none -> its length 2
    assert m[K.FRAC_SEQUENCES_CERTIFIED] == pytest.approx(1 / 3)


def test_loss_exactly_ln2_is_not_certified():
    losses = torch.tensor([[0.1, LN2, 0.2], [0.1, 0.2, 0.3]], dtype=torch.float32)
    mask = torch.ones(2, 3, dtype=torch.bool)
    tf = TeacherForced(losses=losses, correct=mask.clone(), mask=mask)
    m = certificate_metrics(tf)
    assert m[K.FRAC_P_GT_HALF] == pytest.approx(5 / 6)
    assert m[K.FIRST_SUBTHRESHOLD_POS] == pytest.approx((1 + 3) / 2)
    assert m[K.FRAC_SEQUENCES_CERTIFIED] == pytest.approx(0.5)


def test_certified_sequence_is_recalled_exactly_by_greedy_decoding():
    """A bigram model: the next-token distribution depends on the last token only.

    Target 5 -> 6 -> 7 -> 8 after prompt [3, 4]: every teacher-forced p_t > 0.5 (certified), so
    free-running greedy decoding, fed its own argmax, reproduces the target exactly.
    """
    off_chain = [log_dist((v + 1) % V, 0.3, rival=(v + 5) % V, rival_p=0.5) for v in range(V)]
    table = torch.stack(off_chain).float()
    chain = {4: (5, 0.6), 5: (6, 0.7), 6: (7, 0.55), 7: (8, 0.9)}
    for prev, (nxt, p) in chain.items():
        table[prev] = log_dist(nxt, p).float()
    prompt, target = [3, 4], [5, 6, 7, 8]
    ids = torch.tensor([prompt + target])
    tf = teacher_forced(table[ids], ids, torch.tensor([2]), torch.tensor([4]))
    assert certificate_metrics(tf)[K.FRAC_SEQUENCES_CERTIFIED] == 1.0

    generated, last = [], prompt[-1]
    for _ in target:
        last = int(table[last].argmax())
        generated.append(last)
    match = greedy_match(torch.tensor([generated]), torch.tensor([target]), tf.mask)
    g = greedy_metrics(match, tf.mask)
    assert g[K.GREEDY_EXACT_MATCH] == 1.0 and g[K.GREEDY_TOKEN_ACC] == 1.0
    assert g[K.FIRST_GREEDY_ERROR_POS] == 4.0
    # The first sub-threshold position bounds the first greedy error from below.
    assert certificate_metrics(tf)[K.FIRST_SUBTHRESHOLD_POS] <= g[K.FIRST_GREEDY_ERROR_POS]


@pytest.mark.parametrize("generated, match_row", [
    ([[5, 6]], [True, True, False, False]),  # shorter: missing positions count as wrong
    ([[5, 6, 7, 8, 1, 1]], [True, True, True, True]),  # longer: extra tokens ignored
    ([[5, 9, 7, 8]], [True, False, True, True]),
    ([[]], [False, False, False, False]),
])
def test_greedy_match_shorter_and_longer_outputs(generated, match_row):
    targets = torch.tensor([[5, 6, 7, 8]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    gen = torch.tensor(generated, dtype=torch.long).view(1, -1)
    assert greedy_match(gen, targets, mask).tolist() == [match_row]


def test_greedy_match_short_output_never_matches_token_zero():
    # Id 0 is an ordinary token in many vocabularies (GPT-2: "!"); a missing position is still wrong.
    targets = torch.tensor([[0, 0, 0]])
    match = greedy_match(torch.tensor([[0]]), targets, torch.ones(1, 3, dtype=torch.bool))
    assert match.tolist() == [[True, False, False]]


def test_greedy_metrics_with_padding():
    targets = torch.tensor([[5, 6, 7, 8], [3, 4, -1, -1], [9, 9, 9, -1]])
    mask = targets >= 0
    generated = torch.tensor([[5, 6, 1], [3, 4, 1], [2, 9, 9]])  # row 0 too short; row 1 exact
    match = greedy_match(generated, targets, mask)
    assert match.tolist() == [[True, True, False, False], [True, True, False, False],
                              [False, True, True, False]]
    g = greedy_metrics(match, mask)
    assert g[K.GREEDY_TOKEN_ACC] == pytest.approx(6 / 9)
    assert g[K.GREEDY_EXACT_MATCH] == pytest.approx(1 / 3)
    assert g[K.FIRST_GREEDY_ERROR_POS] == pytest.approx((2 + 2 + 0) / 3)  # row 1: none -> length 2


def test_per_sequence_rows(tf):
    targets = torch.tensor([[5, 6, 7, -1], [4, 10, 11, 5], [7, 8, -1, -1]])
    generated = torch.tensor([[5, 6, 7, 0], [4, 10, 2, 2], [7, 8, 8, 8]])
    match = greedy_match(generated, targets, tf.mask)
    rows = per_sequence(tf, match)
    assert rows == [
        {K.SEQ_CERTIFIED: True, K.SEQ_GREEDY_EXACT: True, K.SEQ_FIRST_SUBTHRESHOLD: 3,
         K.SEQ_FIRST_GREEDY_ERROR: 3, K.SEQ_TARGET_TOKENS: 3},
        {K.SEQ_CERTIFIED: False, K.SEQ_GREEDY_EXACT: False, K.SEQ_FIRST_SUBTHRESHOLD: 1,
         K.SEQ_FIRST_GREEDY_ERROR: 2, K.SEQ_TARGET_TOKENS: 4},
        {K.SEQ_CERTIFIED: False, K.SEQ_GREEDY_EXACT: True, K.SEQ_FIRST_SUBTHRESHOLD: 1,
         K.SEQ_FIRST_GREEDY_ERROR: 2, K.SEQ_TARGET_TOKENS: 2},
    ]
    assert all(type(r[K.SEQ_CERTIFIED]) is bool and type(r[K.SEQ_FIRST_SUBTHRESHOLD]) is int for r in rows)


@pytest.mark.parametrize("tokens, delta, params, bits", [
    (100, LN2, 100, 1.0),  # ln 2 nats per token on as many params as tokens: 1 bit/param
    (1000, 2.0, 2048, 1000 * 2.0 / math.log(2) / 2048),
    (10_000, 0.5, 2 * 4096 * 1, 10_000 * 0.5 / math.log(2) / 8192),
    (10, 1.0, 0, 10 / math.log(2)),  # no parameters: divide by 1, stay finite
])
def test_bits_per_param(tokens, delta, params, bits):
    assert bits_per_param(tokens, delta, params) == pytest.approx(bits, rel=1e-12)
