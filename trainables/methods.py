"""Training methods as a table: each method's knobs (MethodConfig fields) and its token weights.

    METHODS[name] -> Method
        knobs          the MethodConfig fields it reads; every other method's knob must stay at its
                       default (`method.sw_window: only for memft_sw (method.name is sft)`)
        weights        (method config, teacher-forced step, rows, window state) -> per-token weights
                       [B, T] summing to 1, or None to skip the step's update
        pool           the sequence ids a step may draw from, and the step that pool started at
        needs_correct  the step needs the teacher-forced argmax (MemFT-SW's anchor)

To add a method, edit this file only: its knobs as MethodConfig fields (range and one-line doc in
`spec`, the one home of their defaults), and its row in METHODS. MethodConfig.name's choices, the
knob check, the training loop (trainables/memorize.py) and which methods an Optuna space draws a
knob for (search_spaces/memft.py) all read the table. Its math may go to trainables/memft.py
(pure torch, tested there).

TrialConfig validation reads this table on every CLI call, so the module imports no torch: the
weight functions import trainables.memft (torch) when first called.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from trainables.schema import Config, Problem, spec

if TYPE_CHECKING:
    import numpy as np
    import torch

    from trainables.memft import WindowState
    from trainables.recall import TeacherForced


# -- the rows' functions -------------------------------------------------------------------------
def _mean(m: MethodConfig, tf: TeacherForced, rows: np.ndarray, window: WindowState) -> torch.Tensor | None:
    """SFT: every target token weighs 1/T."""
    from trainables import memft

    return memft.mean_weights(tf.mask)


def _empty_rule(m: MethodConfig) -> str:
    """What w_OT is when nothing is below threshold: "mean" or "skip" (`auto`: skip for the
    curriculum, as the official trainer does, mean for memft)."""
    if m.when_all_learned == "auto":
        return "skip" if m.name == "memft_curriculum" else "mean"
    return m.when_all_learned


def _mixed(m: MethodConfig, tf: TeacherForced, rows: np.ndarray, window: WindowState) -> torch.Tensor | None:
    """MemFT: (1 - λ) SFT + λ OT(m); None (skip the update, no backward pass) when nothing is left."""
    from trainables import memft

    w = memft.mixed_weights(tf.losses.detach(), tf.mask, m.threshold_margin, m.mix, _empty_rule(m))
    return None if not bool((w > 0).any()) else w


def _sliding_window(m: MethodConfig, tf: TeacherForced, rows: np.ndarray,
                    window: WindowState) -> torch.Tensor | None:
    """MemFT-SW: sigmoid base weight times a decaying window after the first argmax error."""
    from trainables import memft

    return memft.sliding_window_weights(tf.losses.detach(), tf.correct, tf.mask, [int(r) for r in rows],
                                        window, WindowKnobs.of(m))


def _all_sequences(m: MethodConfig, step: int, steps: int, order: np.ndarray,
                   batch_size: int | None) -> tuple[np.ndarray, int]:
    """Every sequence, from step 0 (one pool for the whole trial)."""
    import numpy as np

    return np.arange(len(order)), 0


def _curriculum(m: MethodConfig, step: int, steps: int, order: np.ndarray,
                batch_size: int | None) -> tuple[np.ndarray, int]:
    """A growing prefix of the seeded order, 1/stages of the data more at each stage."""
    from trainables import memft

    if m.curriculum_schedule == "epochs":
        size, start = memft.epoch_curriculum(step, m.curriculum_stages, m.curriculum_stage_epochs,
                                             len(order), batch_size)
        return order[:size], start
    size = memft.curriculum_size(step, steps, m.curriculum_stages, len(order))
    return order[:size], memft.curriculum_stage_start(step, steps, m.curriculum_stages)


# -- the table -----------------------------------------------------------------------------------
WeightFn = Callable[[Any, Any, Any, Any], Any]  # (MethodConfig, TeacherForced, rows, WindowState) -> [B, T] | None
PoolFn = Callable[[Any, int, int, Any, Any], Any]  # (MethodConfig, step, steps, order, batch size) -> (ids, start)


@dataclass(frozen=True)
class Method:
    """One training method: a row of METHODS."""

    name: str
    summary: str  # a few words for MethodConfig.name's help text
    knobs: tuple[str, ...]
    weights: WeightFn
    pool: PoolFn = _all_sequences
    needs_correct: bool = False


BUDGET_KNOBS = ("threshold_margin", "mix", "when_all_learned")
WINDOW_KNOBS = ("sw_kappa", "sw_window", "sw_decay", "sw_beyond", "sw_growth", "sw_max_expansion", "sw_patience",
                "sw_growth_rule")
CURRICULUM_KNOBS = ("curriculum_stages", "curriculum_schedule", "curriculum_stage_epochs")

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "plain fine-tuning", (), _mean),
    Method("memft", "(1 - mix) SFT + mix OT at a margin", BUDGET_KNOBS, _mixed),
    Method("memft_sw", "sliding window", WINDOW_KNOBS, _sliding_window, needs_correct=True),
    Method("memft_curriculum", "memft on a growing data prefix", (*BUDGET_KNOBS, *CURRICULUM_KNOBS), _mixed,
           pool=_curriculum),
)}
METHOD_NAMES = tuple(METHODS)


def knob_owners(field: str) -> tuple[str, ...]:
    """The methods that read a MethodConfig knob (`sw_window` or `method.sw_window`); () for anything else."""
    knob = field.removeprefix("method.")
    return tuple(m.name for m in METHODS.values() if knob in m.knobs)


# -- the config section --------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodConfig(Config):
    """The training loss: plain fine-tuning or one of the MemFT variants (docs/science.md §3)."""

    name: Literal[METHOD_NAMES] = spec(  # type: ignore[valid-type]  (the table's names, in its order)
        "sft", " | ".join(f"{m.name} ({m.summary})" for m in METHODS.values()))
    threshold_margin: float = spec(0.0, "memft: a token counts as learned only when p > 0.5 + m",
                                   lo=0.0, hi=0.5, hi_open=True)
    mix: float = spec(1.0, "memft: λ in w = (1 - λ) SFT + λ OT(margin); 0 is SFT exactly, 1 is OT",
                      lo=0.0, hi=1.0)
    when_all_learned: Literal["auto", "mean", "skip"] = spec(
        "auto", "memft: with no sub-threshold token, OT's part is the plain mean (mean) or nothing, and the "
                "update is skipped when nothing is left (skip); auto: skip for memft_curriculum (official), "
                "mean for memft")
    sw_kappa: float = spec(10.0, "memft_sw: sharpness of the sigmoid base weight", lo=0.0, lo_open=True)
    sw_window: int = spec(50, "memft_sw: base window length in tokens", lo=1)
    sw_decay: float = spec(20.0, "memft_sw: decay length inside the window, tokens", lo=0.0, lo_open=True)
    sw_beyond: float = spec(0.01, "memft_sw: weight factor beyond the window", lo=0.0, hi=1.0)
    sw_growth: float = spec(0.5, "memft_sw: window expansion step when the anchor stalls", lo=0.0)
    sw_max_expansion: float = spec(4.0, "memft_sw: largest window expansion factor", lo=1.0)
    sw_patience: int = spec(3, "memft_sw: steps the anchor must stall before the window grows", lo=1)
    sw_growth_rule: Literal["every_step", "per_patience"] = spec(
        "every_step", "memft_sw: every_step (official): grow at every step once stalled sw_patience steps; "
                      "per_patience: grow once per sw_patience stalled steps")
    curriculum_stages: int = spec(5, "memft_curriculum: stages of the growing data prefix", lo=1, hi=1000)
    curriculum_schedule: Literal["epochs", "equal"] = spec(
        "epochs", "memft_curriculum: epochs (official): each stage but the last lasts curriculum_stage_epochs "
                  "epochs over its pool, the full set the rest; equal: equal shares of the step budget")
    curriculum_stage_epochs: int = spec(20, "memft_curriculum: epochs per stage (schedule epochs; official 20)",
                                        lo=1, hi=100000)

    def cross_checks(self) -> list[Problem]:
        """A knob of another method, set away from its default, would be silently ignored: refuse it."""
        row = METHODS.get(self.name)
        if row is None:  # built directly with a bad name: no table row to judge by
            return []
        problems = []
        for f in dataclasses.fields(self):
            if f.name != "name" and f.name not in row.knobs and getattr(self, f.name) != f.default:
                owners = " or ".join(knob_owners(f.name))
                problems.append(Problem(f.name, f"only for {owners} (method.name is {self.name})"))
        epochs_default = type(self).__dataclass_fields__["curriculum_stage_epochs"].default
        if self.curriculum_schedule == "equal" and self.curriculum_stage_epochs != epochs_default:
            problems.append(Problem("curriculum_stage_epochs", "only for curriculum_schedule epochs "
                                                               "(curriculum_schedule is equal)"))
        return problems


__all__ = ["METHODS", "METHOD_NAMES", "Method", "MethodConfig", "knob_owners"]


_DEFAULT = MethodConfig()  # the sw_* defaults live in MethodConfig only


@dataclass(frozen=True)
class WindowKnobs:
    """MemFT-SW's knobs, named as in trainables/memft.py's notation; MethodConfig's `sw_<name>`
    fields (torch-free, so the weights' module needs no MethodConfig and this one no torch)."""

    kappa: float = _DEFAULT.sw_kappa
    window: int = _DEFAULT.sw_window
    decay: float = _DEFAULT.sw_decay
    beyond: float = _DEFAULT.sw_beyond
    growth: float = _DEFAULT.sw_growth
    max_expansion: float = _DEFAULT.sw_max_expansion
    patience: int = _DEFAULT.sw_patience
    growth_rule: str = _DEFAULT.sw_growth_rule

    @classmethod
    def of(cls, method: MethodConfig) -> WindowKnobs:
        """The knobs a trial's method section sets."""
        return cls(**{f.name: getattr(method, f"sw_{f.name}") for f in dataclasses.fields(cls)})
