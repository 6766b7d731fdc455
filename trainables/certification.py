"""Certification that lasts: when a trial's certificate became stable, and how often it was lost.

Notation (docs/science.md §2)
    e_1 .. e_n      the trial's evaluations so far, at steps s_1 < ... < s_n
    c_i             True when every sequence was certified at e_i (frac_sequences_certified = 1)
    first           s_i of the first i with c_i (steps_to_certified; None if none)
    stable from     s_i of the first i such that c_j holds for every j >= i; "not stable" when c_n
                    is False. Reported as `budget steps + 1` then, so the metric stays a finite number
                    that ranks after every real step (a right-censored value: "not within the budget").
    losses          the number of i with c_i True and c_{i+1} False

Pure Python: the training loop (trainables/memorize.py) observes each evaluation and saves the track
in its checkpoints, so a resumed trial counts exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainables import metric_names as K


@dataclass
class CertificationTrack:
    """The certificate's history, reduced to what the metrics need."""

    stable_from: int | None = None  # first step of the current unbroken run of certified evaluations
    losses: int = 0  # certified -> not certified transitions
    last: bool = False  # whether the latest evaluation was certified

    def observe(self, step: int, certified: bool) -> None:
        if certified and not self.last:
            self.stable_from = step
        elif not certified:
            if self.last:
                self.losses += 1
            self.stable_from = None
        self.last = certified

    def stable_certified_from(self, budget_steps: int) -> int:
        """The stable figure: `budget_steps + 1` when the latest evaluation is not certified."""
        return self.stable_from if self.stable_from is not None else budget_steps + 1

    def metrics(self, budget_steps: int) -> dict[str, Any]:
        return {K.STABLE_CERTIFIED_FROM: self.stable_certified_from(budget_steps),
                K.CERTIFICATION_LOSSES: self.losses}

    def to_dict(self) -> dict[str, Any]:
        return {"stable_from": self.stable_from, "losses": self.losses, "last": self.last}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> CertificationTrack:
        """A checkpoint written before the track existed has none: start empty (counted from resume)."""
        return cls(**d) if d else cls()


def track_of(certified: list[bool], steps: list[int]) -> CertificationTrack:
    """The track after a whole history (for tests and for records that hold per-evaluation rows)."""
    track = CertificationTrack()
    for s, c in zip(steps, certified):
        track.observe(s, c)
    return track
