"""Target corpora: determinism, vocabulary, the text random share, phonebook entries, packing.

Uses the real byte-level tokenizer of the tiny presets (specials <pad>=0, <s>=1, </s>=2; no model).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from trainables.config import DataConfig
from trainables.data import SAMPLE_TEXT, build_memorization_set, pack, random_candidates, random_keys
from trainables.model import byte_tokenizer
from trainables.schema import ConfigError

SPECIAL = {0, 1, 2}


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer(512)


@pytest.fixture(scope="module")
def sample_tokens(tok) -> list[int]:
    text = resources.files("trainables").joinpath("corpora", SAMPLE_TEXT).read_text(encoding="utf-8")
    return tok.encode(text, add_special_tokens=False)


def build(tok, **kw):
    return build_memorization_set(DataConfig(**kw), tok)


CASES = [
    dict(kind="random", target_tokens=40, num_sequences=3, prompt_tokens=5),
    dict(kind="text", target_tokens=60, num_sequences=2, random_share=0.3),
    dict(kind="phonebook", num_sequences=6),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: kw["kind"])
def test_same_config_builds_identical_set(tok, kw):
    a, b = build(tok, seed=3, **kw), build(tok, seed=3, **kw)
    assert a == b
    assert a.num_sequences == kw["num_sequences"]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: kw["kind"])
def test_different_seed_builds_different_set(tok, kw):
    a, b = build(tok, seed=3, **kw), build(tok, seed=4, **kw)
    assert a.targets != b.targets  # text: the replaced positions and tokens move with the seed
    assert a.prompts != b.prompts  # random keys, or phonebook names


def test_random_candidates_exclude_special_ids(tok):
    cand = random_candidates(tok)
    assert set(cand.tolist()) == set(range(len(tok))) - SPECIAL
    assert len(cand) == 509


def test_random_targets_exclude_specials_and_stay_in_vocabulary(tok):
    s = build(tok, kind="random", target_tokens=3000, num_sequences=2, prompt_tokens=16, seed=1)
    seen = set()
    for seq in s.prompts + s.targets:
        seen.update(seq)
    assert not seen & SPECIAL
    assert max(seen) < len(tok) and min(seen) >= 3
    assert len(seen) > 450  # uniform over 509 ids: 6000+ draws reach nearly all of them
    assert [len(t) for t in s.targets] == [3000, 3000]
    assert [len(p) for p in s.prompts] == [16, 16]
    assert s.target_tokens == 6000


@pytest.mark.parametrize("short, long", [(1, 2), (10, 64), (64, 1000)])
def test_shorter_random_target_is_prefix_of_longer(tok, short, long):
    a = build(tok, kind="random", target_tokens=short, num_sequences=3, seed=9)
    b = build(tok, kind="random", target_tokens=long, num_sequences=3, seed=9)
    for ta, tb in zip(a.targets, b.targets):
        assert tb[:short] == ta
    assert a.prompts == b.prompts


def test_prompts_are_distinct_per_sequence(tok):
    s = build(tok, kind="random", target_tokens=4, num_sequences=200, prompt_tokens=3, seed=0)
    assert len(set(s.prompts)) == 200
    assert len(set(s.targets)) == 200


def test_random_keys_redraw_collisions():
    # Two candidates and keys of length 2: only 4 distinct keys exist, all four must come out.
    keys = random_keys(4, 2, np.array([7, 8]), seed=0)
    assert sorted(keys) == [(7, 7), (7, 8), (8, 7), (8, 8)]
    assert keys == random_keys(4, 2, np.array([7, 8]), seed=0)


def test_text_without_random_share_is_the_tokenized_sample(tok, sample_tokens):
    s = build(tok, kind="text", target_tokens=100, num_sequences=3, seed=2)
    for i, t in enumerate(s.targets):
        assert list(t) == sample_tokens[i * 100:(i + 1) * 100]
    assert tok.decode(list(s.targets[0])).startswith("In Congress, July 4, 1776.")


def test_text_from_a_file(tok, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 3, encoding="utf-8")
    s = build(tok, kind="text", text_file=str(path), target_tokens=12, num_sequences=2)
    assert [tok.decode(list(t)) for t in s.targets] == ["abcdefghijab", "cdefghijabcd"]


@pytest.mark.parametrize("share, length", [(0.5, 100), (0.25, 102), (0.1, 45), (1.0, 30)])
def test_text_random_share_replaces_that_many_positions(tok, sample_tokens, share, length):
    n_random = round(share * length)
    total_diff = 0
    for seed in range(4):
        s = build(tok, kind="text", target_tokens=length, num_sequences=2, random_share=share, seed=seed)
        for i, t in enumerate(s.targets):
            text = sample_tokens[i * length:(i + 1) * length]
            diff = sum(a != b for a, b in zip(t, text))
            # A drawn token equals the text's token with chance 1/509, so a few may coincide.
            assert n_random - 2 <= diff <= n_random
            total_diff += diff
            assert not set(t) & SPECIAL
    assert total_diff >= 8 * n_random - 3


def test_text_random_share_is_exact_for_a_fixed_seed(tok, sample_tokens):
    s = build(tok, kind="text", target_tokens=100, num_sequences=1, random_share=0.5, seed=0)
    text = sample_tokens[:100]
    assert sum(a != b for a, b in zip(s.targets[0], text)) == 50


@pytest.mark.parametrize("target_tokens, num_sequences", [(10_000, 1), (3000, 3)])
def test_text_request_longer_than_text_names_target_tokens(tok, target_tokens, num_sequences):
    with pytest.raises(ConfigError) as err:
        build(tok, kind="text", target_tokens=target_tokens, num_sequences=num_sequences)
    fields = [p.field for p in err.value.problems]
    assert fields == ["data.target_tokens"]
    assert "target_tokens <=" in str(err.value)


def test_phonebook_entries(tok):
    s = build(tok, kind="phonebook", num_sequences=300, seed=1)
    prompts = [tok.decode(list(p)) for p in s.prompts]
    numbers = [tok.decode(list(t)) for t in s.targets]
    names = [p.removeprefix("Name: ").removesuffix("\nPhone: ") for p in prompts]
    assert all(p.startswith("Name: ") and p.endswith("\nPhone: ") for p in prompts)
    assert len(set(names)) == 300 and all(n and "\n" not in n for n in names)
    assert all(len(n) == 10 and n.isdigit() for n in numbers)
    assert all(len(t) == 10 for t in s.targets)  # one byte token per digit
    assert s.target_tokens == 3000
    assert len(set(numbers)) > 290


def test_phonebook_refuses_more_entries_than_unique_names(tok):
    with pytest.raises(ConfigError) as err:
        build(tok, kind="phonebook", num_sequences=40 * 26 * 40 + 1)
    assert [p.field for p in err.value.problems] == ["data.num_sequences"]


@pytest.mark.parametrize("left, ids, attn", [
    (False, [[5, 6, 7], [8, 0, 0], [9, 4, 0]], [[1, 1, 1], [1, 0, 0], [1, 1, 0]]),
    (True, [[5, 6, 7], [0, 0, 8], [0, 9, 4]], [[1, 1, 1], [0, 0, 1], [0, 1, 1]]),
])
def test_pack_pads_right_or_left(left, ids, attn):
    got_ids, got_attn = pack([(5, 6, 7), (8,), (9, 4)], pad_id=0, left=left)
    assert got_ids.tolist() == ids
    assert got_attn.tolist() == attn
    assert got_ids.dtype == np.int64 and got_attn.dtype == np.int64


def test_pack_with_negative_pad():
    ids, attn = pack([(3,), (1, 2)], pad_id=-1)
    assert ids.tolist() == [[3, -1], [1, 2]]
    assert attn.tolist() == [[1, 0], [1, 1]]
