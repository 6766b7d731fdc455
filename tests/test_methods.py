"""The method table (trainables/methods.py): every method has one row, every knob one owner, and a
knob set for a method that does not read it is refused, naming the field and its owners."""

from __future__ import annotations

import dataclasses
from typing import get_args, get_type_hints

import pytest

import search_spaces
from search_spaces.memft import OPTUNA_SPACES, DefineByRun, OptunaSpace, Param
from trainables.config import TrialConfig
from trainables.methods import WindowKnobs
from trainables.methods import METHODS, MethodConfig, knob_owners
from trainables.schema import ConfigError, set_dotted

KNOBS = [f.name for f in dataclasses.fields(MethodConfig) if f.name != "name"]


def test_the_table_covers_every_method_name_and_every_knob():
    assert set(get_args(get_type_hints(MethodConfig)["name"])) == set(METHODS)
    assert all(row.name == name for name, row in METHODS.items())
    owned = {k for row in METHODS.values() for k in row.knobs}
    assert owned == set(KNOBS), "every MethodConfig knob is read by some method, and only real fields are"
    assert all(name in MethodConfig.__dataclass_fields__["name"].metadata["doc"] for name in METHODS)


# (method, knob set away from its default, the message's owners)
FOREIGN = [
    ("sft", {"sw_window": 5}, "memft_sw"),
    ("sft", {"threshold_margin": 0.1}, "memft or memft_curriculum"),
    ("memft", {"sw_kappa": 3.0}, "memft_sw"),
    ("memft", {"curriculum_stages": 3}, "memft_curriculum"),
    ("memft_sw", {"when_all_learned": "skip"}, "memft or memft_curriculum"),
    ("memft_curriculum", {"sw_patience": 9}, "memft_sw"),
    ("memft", {"curriculum_schedule": "equal"}, "memft_curriculum"),
    ("memft_curriculum", {"sw_growth_rule": "per_patience"}, "memft_sw"),
]


def test_stage_epochs_only_for_the_epochs_schedule():
    with pytest.raises(ConfigError, match=r"^method\.curriculum_stage_epochs: only for curriculum_schedule epochs"):
        TrialConfig.from_dict({"method": {"name": "memft_curriculum", "curriculum_schedule": "equal",
                                          "curriculum_stage_epochs": 3}})
    TrialConfig.from_dict({"method": {"name": "memft_curriculum", "curriculum_stage_epochs": 3}})


def test_the_defaults_are_the_official_trainer():
    m = MethodConfig()
    assert (m.sw_growth_rule, m.curriculum_schedule, m.curriculum_stage_epochs) == ("every_step", "epochs", 20)
    assert m.mix == 1.0 and m.threshold_margin == 0.0  # memft's defaults are OT


@pytest.mark.parametrize("name, knob, owners", FOREIGN)
def test_a_knob_of_another_method_is_refused_with_its_field_and_owners(name, knob, owners):
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"method": {"name": name, **knob}})
    field = next(iter(knob))
    assert str(err.value) == f"method.{field}: only for {owners} (method.name is {name})"


def test_every_foreign_knob_is_reported_at_once_and_defaults_pass():
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"method": {"name": "sft", "sw_window": 5, "mix": 0.5}})
    assert {p.field for p in err.value.problems} == {"method.sw_window", "method.mix"}
    # a knob written out at its default is not a setting: sweeps and records write whole sections
    TrialConfig.from_dict({"method": {**MethodConfig().to_dict(), "name": "sft"}})
    for name, row in METHODS.items():
        TrialConfig.from_dict({"method": {"name": name}})
        for knob in row.knobs:
            assert name in knob_owners(knob) and name in knob_owners(f"method.{knob}")


def test_window_knobs_take_their_defaults_and_values_from_method_config():
    default = MethodConfig()
    assert WindowKnobs() == WindowKnobs.of(default)
    assert {f.name: getattr(WindowKnobs(), f.name) for f in dataclasses.fields(WindowKnobs)} == \
        {f.name: getattr(default, f"sw_{f.name}") for f in dataclasses.fields(WindowKnobs)}
    set_ = MethodConfig(name="memft_sw", sw_window=7, sw_kappa=3.0)
    assert (WindowKnobs.of(set_).window, WindowKnobs.of(set_).kappa) == (7, 3.0)


class _Draws:
    """An optuna.Trial stand-in: `method` for the method's choice, the first of other choices, and
    the high end of each range (away from every knob's default)."""

    def __init__(self, method: str):
        self.method, self.params = method, {}

    def suggest_categorical(self, name, choices):
        return self._set(name, self.method if name == "method.name" else choices[0])

    def suggest_int(self, name, low, high, log=False):
        return self._set(name, high)

    def suggest_float(self, name, low, high, log=False):
        return self._set(name, high)

    def _set(self, name, value):
        self.params[name] = value
        return value


@pytest.mark.parametrize("space_name", sorted(OPTUNA_SPACES))
def test_optuna_spaces_draw_a_method_knob_only_for_the_methods_that_own_it(space_name):
    space = search_spaces.get(space_name)
    choice = [p.choices for p in space.params if p.name == "method.name"]
    for method in (choice[0] if choice else ("sft",)):
        trial = _Draws(method)
        DefineByRun(space)(trial)
        TrialConfig.from_dict(set_dotted({}, {"method.name": method, **trial.params}))  # valid: no foreign knob


def test_a_params_methods_are_its_owners_in_the_table():
    assert Param("method.sw_window", "int", 1, 9).methods == ("memft_sw",)
    assert Param("budget.lr", "float", 1e-3, 1e-2).methods == Param("method.name", "categorical").methods == ()
    widened = OptunaSpace((Param("method.mix", "float", 0.3, 1.0),)).with_ranges(
        {"method.mix": [0.1, 0.9]})
    assert widened.params[0].methods == knob_owners("mix") == ("memft", "memft_curriculum")
