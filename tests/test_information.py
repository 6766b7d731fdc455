"""The information measures (trainables/information.py) against hand computations, in milliseconds."""

from __future__ import annotations

import math

import pytest
import torch

from trainables import information as info

LN2 = math.log(2.0)
V = 509  # the tiny models' candidate count: 512 byte-level ids minus 3 specials
CHANCE = math.log(V)


def test_chance_level_is_the_uniform_code_length():
    assert info.chance_level(V) == pytest.approx(6.2324480165)
    assert info.chance_level(1) == 0.0
    with pytest.raises(ValueError, match="n_candidates"):
        info.chance_level(0)


def test_bits_above_chance_by_hand():
    """Two sequences, one padded. Token by token (nats):
      seq 0: L_init (9.0, 5.0, 7.0) -> L_ref (ln V, 5.0, ln V); L_final (1.0, 6.0, 0.5)
             saved max(0, ref - final): ln V - 1, 0 (ended above its reference), ln V - 0.5
      seq 1: L_init (4.0, pad) -> L_ref 4.0; L_final 3.0 -> saved 1.0; the pad's 100 nats never count
    """
    init = torch.tensor([[9.0, 5.0, 7.0], [4.0, 0.0, 0.0]])
    final = torch.tensor([[1.0, 6.0, 0.5], [3.0, -100.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    expected = ((CHANCE - 1.0) + 0.0 + (CHANCE - 0.5) + 1.0) / LN2
    assert info.bits_above_chance(init, final, mask, V) == pytest.approx(expected, rel=1e-6)
    assert info.mean_reference_loss(init, mask, V) == pytest.approx((CHANCE + 5.0 + CHANCE + 4.0) / 4, rel=1e-6)


def test_a_trial_that_ends_above_chance_stores_zero_bits():
    """The issue's case: an overconfident start (L_init 8.73 > ln 509) trained to 7.90, still above
    chance. ΔL = 0.83 nats/token looks like learning; nothing is stored: 0 bits."""
    init = torch.full((1, 1024), 8.73)
    final = torch.full((1, 1024), 7.90)
    mask = torch.ones(1, 1024, dtype=torch.bool)
    assert info.bits_above_chance(init, final, mask, V) == 0.0
    assert info.certified_bits(0, V) == 0.0
    paper = 1024 * (8.73 - 7.90) / LN2  # the ΔL-based figure the paper's bits/param is built on
    assert paper > 1200  # ... which would claim over a kilobit


def test_a_base_below_chance_is_its_own_reference():
    """Text (or a base that already beats chance): the reference is the base model's code length."""
    init = torch.tensor([[2.0, 3.0]])
    final = torch.tensor([[0.5, 3.5]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert info.bits_above_chance(init, final, mask, V) == pytest.approx(1.5 / LN2)


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
