"""Target corpora: what a trial memorizes. Seeded, deterministic, and independent of the model.

Every target follows a prompt that identifies it: a random key of `prompt_tokens` tokens for
`random` and `text` targets (distinct per sequence), the person's name for `phonebook` entries.
Only target tokens are scored.

- random: uniform over the tokenizer's vocabulary, special tokens excluded. Sequence i draws from
  its own stream (seed, i), so a shorter target is a prefix of a longer one, like the paper's
  "first ℓ tokens of a text".
- text: consecutive slices of a text (a file, or the shipped public-domain sample), with an exact
  share `random_share` of each target's positions replaced by random tokens: the paper's semantic
  density axis (0 = all text, 1 = all random).
- phonebook: "Name: <name>\\nPhone: " -> 10 digits, with unique generated names.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from trainables.config import DataConfig
from trainables.schema import ConfigError, Problem

SAMPLE_TEXT = "declaration.txt"  # the US Declaration of Independence (1776), public domain
_STREAM_PROMPT, _STREAM_TARGET, _STREAM_SHARE = 0, 1, 2

FIRST_NAMES = (
    "Ada", "Alan", "Alice", "Amir", "Ana", "Arjun", "Ben", "Bianca", "Carl", "Chen", "Clara", "Dara", "David",
    "Elena", "Emil", "Eva", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jade", "Jonas", "Kai",
    "Lea", "Leo", "Lina", "Marco", "Maya", "Nia", "Noah", "Omar", "Paula", "Priya", "Rosa", "Sami", "Tara", "Yuki",
)
LAST_NAMES = (
    "Abbott", "Baker", "Bose", "Castro", "Costa", "Dietz", "Ellis", "Fischer", "Garcia", "Haas", "Ito", "Jensen",
    "Kaur", "Khan", "Lopez", "Meyer", "Moreau", "Nakamura", "Novak", "Okafor", "Olsen", "Park", "Quinn", "Rossi",
    "Sato", "Silva", "Singh", "Tanaka", "Ueda", "Vargas", "Weber", "Xu", "Yilmaz", "Zhang", "Berg", "Dunn",
    "Hale", "Lund", "Marsh", "Reed",
)
INITIALS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Tokenizer(Protocol):
    """What data building needs from a transformers tokenizer."""

    all_special_ids: list[int]

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class MemorizationSet:
    """Prompts and targets as token ids; sequence i is prompts[i] followed by targets[i]."""

    prompts: tuple[tuple[int, ...], ...]
    targets: tuple[tuple[int, ...], ...]

    @property
    def num_sequences(self) -> int:
        return len(self.targets)

    @property
    def target_tokens(self) -> int:
        """ℓ: target tokens summed over sequences."""
        return sum(len(t) for t in self.targets)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def random_candidates(tokenizer: Tokenizer) -> np.ndarray:
    """Token ids a random target may use: the whole vocabulary except special tokens."""
    special = set(tokenizer.all_special_ids)
    return np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)


def random_keys(n: int, length: int, candidates: np.ndarray, seed: int) -> list[tuple[int, ...]]:
    """n distinct random prompts; collisions (vanishingly rare) are redrawn deterministically."""
    keys, seen = [], set()
    for i in range(n):
        attempt = 0
        while True:
            key = tuple(int(t) for t in candidates[_rng(seed, i, _STREAM_PROMPT, attempt).integers(0, len(candidates), length)])
            if key not in seen:
                break
            attempt += 1
        seen.add(key)
        keys.append(key)
    return keys


def random_targets(cfg: DataConfig, candidates: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(t) for t in candidates[_rng(cfg.seed, i, _STREAM_TARGET).integers(0, len(candidates), cfg.target_tokens)])
            for i in range(cfg.num_sequences)]


def read_text(cfg: DataConfig) -> str:
    if cfg.text_file is None:
        return resources.files("trainables").joinpath("corpora", SAMPLE_TEXT).read_text(encoding="utf-8")
    return Path(cfg.text_file).expanduser().read_text(encoding="utf-8")


def text_targets(cfg: DataConfig, tokenizer: Tokenizer, candidates: np.ndarray) -> list[tuple[int, ...]]:
    tokens = tokenizer.encode(read_text(cfg), add_special_tokens=False)
    need = cfg.target_tokens * cfg.num_sequences
    if need > len(tokens):
        limit = len(tokens) // cfg.num_sequences
        raise ConfigError([Problem("data.target_tokens", f"the text has {len(tokens)} tokens: target_tokens × "
                                   f"num_sequences must be <= {len(tokens)} (target_tokens <= {limit} here), "
                                   f"got {cfg.target_tokens} × {cfg.num_sequences}")])
    targets = []
    for i in range(cfg.num_sequences):
        seq = np.array(tokens[i * cfg.target_tokens:(i + 1) * cfg.target_tokens], dtype=np.int64)
        n_random = round(cfg.random_share * cfg.target_tokens)
        if n_random:
            rng = _rng(cfg.seed, i, _STREAM_SHARE)
            where = rng.choice(cfg.target_tokens, size=n_random, replace=False)
            seq[where] = candidates[rng.integers(0, len(candidates), n_random)]
        targets.append(tuple(int(t) for t in seq))
    return targets


def phonebook_entries(n: int, seed: int) -> list[tuple[str, str]]:
    """n (unique name, 10-digit number) pairs."""
    space = len(FIRST_NAMES) * len(INITIALS) * len(LAST_NAMES)
    if n > space:
        raise ConfigError([Problem("data.num_sequences", f"phonebook holds at most {space} unique names, got {n}")])
    rng = _rng(seed, _STREAM_TARGET)
    picks = rng.choice(space, size=n, replace=False)
    entries = []
    for code in picks:
        first, rest = divmod(int(code), len(INITIALS) * len(LAST_NAMES))
        initial, last = divmod(rest, len(LAST_NAMES))
        name = f"{FIRST_NAMES[first]} {INITIALS[initial]}. {LAST_NAMES[last]}"
        number = "".join(str(d) for d in rng.integers(0, 10, 10))
        entries.append((name, number))
    return entries


def build_memorization_set(cfg: DataConfig, tokenizer: Tokenizer) -> MemorizationSet:
    """The prompts and targets of a trial. Raises ConfigError (naming the field) if impossible."""
    candidates = random_candidates(tokenizer)
    if cfg.kind == "phonebook":
        entries = phonebook_entries(cfg.num_sequences, cfg.seed)
        prompts = [tuple(tokenizer.encode(f"Name: {name}\nPhone: ", add_special_tokens=False)) for name, _ in entries]
        targets = [tuple(tokenizer.encode(number, add_special_tokens=False)) for _, number in entries]
        return MemorizationSet(tuple(prompts), tuple(targets))
    prompts = random_keys(cfg.num_sequences, cfg.prompt_tokens, candidates, cfg.seed)
    if cfg.kind == "random":
        targets = random_targets(cfg, candidates)
    else:
        targets = text_targets(cfg, tokenizer, candidates)
    return MemorizationSet(tuple(prompts), tuple(targets))


def pack(sequences: Sequence[tuple[int, ...]], pad_id: int, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pad token lists into an [N, S] id array and its attention mask (right- or left-padded)."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    attn = np.zeros((len(sequences), width), dtype=np.int64)
    for i, s in enumerate(sequences):
        if left:
            ids[i, width - len(s):], attn[i, width - len(s):] = s, 1
        else:
            ids[i, :len(s)], attn[i, :len(s)] = s, 1
    return ids, attn
