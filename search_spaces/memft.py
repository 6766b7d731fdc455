"""Optuna search spaces for MemFT's knobs, as data plus one define-by-run function.

A space lists parameters (dotted TrialConfig fields) with distributions; `define_by_run(space)`
turns it into the function OptunaSearch calls, so knobs of a method are only sampled when that
method is (SFT draws no margin; which methods own a knob is trainables/methods.py's table).
Keeping the ranges as data lets sweep validation check them against TrialConfig's own ranges (an
inverted range or a margin of 0.7 is refused before Ray starts; Ray itself accepts
`uniform(5, 1)` silently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from trainables.methods import knob_owners


@dataclass(frozen=True)
class Param:
    name: str  # dotted TrialConfig field, e.g. "method.threshold_margin"
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def methods(self) -> tuple[str, ...]:
        """Sample only when method.name is one of these (empty: always): the methods that own the knob
        in trainables/methods.py, so a space can never draw a knob its trial's method refuses."""
        return knob_owners(self.name) if self.name.startswith("method.") else ()


@dataclass(frozen=True)
class OptunaSpace:
    params: tuple[Param, ...]
    description: str = ""
    kind: str = "optuna"
    constants: dict[str, Any] = field(default_factory=dict)

    def with_ranges(self, overrides: dict[str, Any]) -> OptunaSpace:
        """Override ranges: {name: [low, high]} or {name: [choices...]} for categoricals."""
        params = []
        for p in self.params:
            if p.name in overrides:
                v = overrides[p.name]
                if p.kind == "categorical":
                    p = Param(p.name, p.kind, choices=tuple(v))
                else:
                    p = Param(p.name, p.kind, v[0], v[1], p.log)
            params.append(p)
        return OptunaSpace(tuple(params), self.description, constants=self.constants)


@dataclass(frozen=True)
class DefineByRun:
    """The function OptunaSearch calls with an optuna.Trial (a class: Tune pickles its searcher)."""

    space: OptunaSpace

    def __call__(self, trial) -> dict[str, Any]:
        method = None
        for p in self.space.params:
            if p.methods and method not in p.methods:
                continue
            if p.kind == "categorical":
                value = trial.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                value = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
            else:
                value = trial.suggest_float(p.name, p.low, p.high, log=p.log)
            if p.name == "method.name":
                method = value
        return dict(self.space.constants)


def define_by_run(space: OptunaSpace) -> Callable:
    return DefineByRun(space)


MEMFT_KNOBS = OptunaSpace(
    params=(
        # SFT is a point of this space twice over: as a method, and as mix = 0 of memft (bit for bit).
        Param("method.name", "categorical", choices=("sft", "memft", "memft_sw", "memft_curriculum")),
        Param("method.mix", "float", 0.0, 1.0),  # drawn for memft and memft_curriculum
        Param("method.threshold_margin", "float", 0.0, 0.3),
    ),
    description="MemFT's method, mix λ (0 = SFT, 1 = OT) and margin at the sweep's fixed budget and lr",
)

FAULT_DRILL = OptunaSpace(
    params=(
        Param("inject_fault", "categorical", choices=("none", "nan", "error")),
        Param("budget.lr", "float", 3e-3, 3e-2, log=True),
    ),
    description="fault drills: some trials diverge (NaN) or raise on purpose; the sweep must go on",
)

OPTUNA_SPACES: dict[str, OptunaSpace] = {"memft_optuna": MEMFT_KNOBS, "fault_drill": FAULT_DRILL}
