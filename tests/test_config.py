"""TrialConfig: strict loading, errors that name the dotted field and what is allowed, presets,
`--set` overrides, YAML files, hashing; and the model-shape checks of `check_against_model`.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from trainables.config import BUDGET_PRESETS, TrialConfig
from trainables.schema import ConfigError
from trainables.yaml_input import apply_overrides, parse_override


def problems_of(data) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict(data)
    return {p.field: p.message for p in err.value.problems}


# -- bad inputs: one problem each, naming the field and what is allowed --------------------------------
BAD = [
    pytest.param({"adapter": {"rnak": 4}}, "adapter.rnak", ["unknown key", "did you mean 'rank'", "allowed:"],
                 id="unknown-key"),
    pytest.param({"budget": {"step": 10}}, "budget.step", ["did you mean 'steps'"], id="unknown-key-budget"),
    pytest.param({"adapter": {"rank": "eight"}}, "adapter.rank", ["must be an integer", "'eight'"],
                 id="str-for-int"),
    pytest.param({"budget": {"lr": "fast"}}, "budget.lr", ["must be a number"], id="str-for-float"),
    pytest.param({"eval": {"early_stop_certified": 1}}, "eval.early_stop_certified", ["true or false"],
                 id="int-for-bool"),
    pytest.param({"adapter": {"rank": 0}}, "adapter.rank", ["[1, 65536]", "got 0"], id="rank-0"),
    pytest.param({"method": {"threshold_margin": 0.7}}, "method.threshold_margin", ["[0.0, 0.5)", "got 0.7"],
                 id="margin-0.7"),
    pytest.param({"method": {"mix": 1.5}}, "method.mix", ["[0.0, 1.0]", "got 1.5"],
                 id="ratio-1.5"),
    pytest.param({"budget": {"lr": -1}}, "budget.lr", ["(0.0, 10.0]", "got -1"], id="lr-negative"),
    pytest.param({"budget": {"lr": float("nan")}}, "budget.lr", ["finite", "(0.0, 10.0]"], id="lr-nan"),
    pytest.param({"budget": {"steps": 10, "warmup_steps": 10}}, "budget.warmup_steps",
                 ["must be < steps (10)"], id="warmup-ge-steps"),
    pytest.param({"method": {"name": "foo"}}, "method.name",
                 ["'sft', 'memft', 'memft_sw', 'memft_curriculum'", "got 'foo'"], id="unknown-literal"),
    pytest.param({"budget": {"preset": "fast"}}, "budget.preset", ["unknown preset 'fast'", "paper, cpu"],
                 id="unknown-preset"),
    pytest.param({"data": {"kind": "text", "text_file": "/no/such/file.txt"}}, "data.text_file",
                 ["no such file"], id="missing-text-file"),
    pytest.param({"data": {"kind": "random", "text_file": __file__}}, "data.text_file",
                 ["only for kind: text"], id="text-file-with-random"),
    pytest.param({"data": {"kind": "phonebook", "random_share": 0.5}}, "data.random_share",
                 ["only for kind: text"], id="share-with-phonebook"),
    pytest.param({"dtype": "float16", "device": "cpu"}, "dtype",
                 ["float16 needs a GPU", "float32 or bfloat16"], id="fp16-on-cpu"),
    pytest.param({"device": "gpu0"}, "device", ["auto, cpu, cuda or cuda:N"], id="bad-device"),
    pytest.param({"adapter": {"placement": "peft", "layer": 3}}, "adapter.layer",
                 ["only for placement: paper"], id="layer-with-peft"),
    pytest.param({"adapter": {"layers": [1]}}, "adapter.layers", ["only for placement: peft"],
                 id="layers-with-paper"),
    pytest.param({"adapter": {"placement": "peft", "layers": [0, "x"]}}, "adapter.layers[1]",
                 ["must be an integer"], id="list-item-type"),
    pytest.param({"adapter": 3}, "adapter", ["must be a mapping"], id="section-not-mapping"),
    pytest.param({"model": {"name": "tiny-s", "gguf_file": "m.gguf"}}, "model.gguf_file", ["must be null"],
                 id="gguf-with-tiny"),
    pytest.param({"seed": 1.0e308}, "seed", ["must be in [0, 4294967295]", "got 1e+308"], id="seed-1e308"),
    pytest.param({"seed": 2**32}, "seed", ["must be in [0, 4294967295]", "got 4294967296"], id="seed-2**32"),
    pytest.param({"seed": 1.5}, "seed", ["must be an integer", "1.5"], id="seed-fraction"),
    pytest.param({"data": {"seed": -1}}, "data.seed", ["must be in [0, 4294967295]"], id="data-seed-negative"),
    pytest.param({"model": {"seed": 2**64}}, "model.seed", ["must be in [0, 4294967295]"], id="model-seed-2**64"),
    pytest.param({"data": {"num_sequences": 10_000_000, "target_tokens": 10_000_000}}, "data.num_sequences",
                 ["the trial needs at least 1.6 PB", "10000000 sequences × 10000008 tokens × 16 bytes", "over the cap of",
                  "must be in [1, "], id="data-10**14-tokens"),
]


@pytest.mark.parametrize("data, field, says", BAD)
def test_bad_input_names_field_and_what_is_allowed(data, field, says):
    problems = problems_of(data)
    assert list(problems) == [field]
    for text in says:
        assert text in problems[field]


def test_error_text_starts_with_dotted_field():
    with pytest.raises(ConfigError, match=r"^method\.mix: must be in \[0\.0, 1\.0\], got 1\.5$"):
        TrialConfig.from_dict({"method": {"mix": 1.5}})


def test_several_errors_are_reported_together():
    problems = problems_of({
        "adapter": {"rank": 0, "rnak": 3},
        "budget": {"lr": -1},
        "method": {"name": "foo", "mix": 2},
        "bogus": 1,
    })
    # range problems are reported even beside an unknown key or a wrong type in the same section
    assert set(problems) == {"adapter.rank", "adapter.rnak", "budget.lr", "method.name",
                             "method.mix", "bogus"}
    assert "[1, 65536]" in problems["adapter.rank"] and "[0.0, 1.0]" in problems["method.mix"]


def test_several_errors_are_reported_together_with_a_bad_preset():
    problems = problems_of({"budget": {"preset": "fast", "lr": -1}, "adapter": {"rank": 0}})
    assert set(problems) == {"budget.preset", "budget.lr", "adapter.rank"}


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="must be a mapping"):
        TrialConfig.from_dict(["adapter"])


# -- good inputs -------------------------------------------------------------------------------------
def test_defaults_build():
    cfg = TrialConfig.from_dict({})
    assert cfg == TrialConfig() == TrialConfig.from_dict(None)
    assert (cfg.adapter.rank, cfg.method.name, cfg.budget.steps, cfg.data.kind) == (8, "sft", 300, "random")
    assert cfg.adapter.effective_dropout == 0.1 and cfg.adapter.effective_alpha == 8.0


def test_preset_paper_fills_budget():
    b = TrialConfig.from_dict({"budget": {"preset": "paper"}}).budget
    got = (b.steps, b.lr, b.batch_size, b.warmup_steps, b.grad_clip, b.schedule)
    assert got == (2000, 1e-2, 1, 0, 1.0, "linear")


def test_explicit_keys_override_the_preset():
    b = TrialConfig.from_dict({"budget": {"preset": "paper", "steps": 50, "batch_size": None}}).budget
    assert (b.steps, b.lr, b.batch_size) == (50, 1e-2, None)
    assert BUDGET_PRESETS["paper"]["steps"] == 2000  # the preset table itself is untouched


def test_explicit_keys_after_preset_are_validated():
    assert list(problems_of({"budget": {"preset": "paper", "warmup_steps": 5000}})) == ["budget.warmup_steps"]


@pytest.mark.parametrize("text, keys, value", [
    ("adapter.rank=8", ["adapter", "rank"], 8),
    ("budget.lr=0.05", ["budget", "lr"], 0.05),
    ("budget.lr=1e-3", ["budget", "lr"], 1e-3),
    ("budget.batch_size=null", ["budget", "batch_size"], None),
    ("eval.early_stop_certified=true", ["eval", "early_stop_certified"], True),
    ("adapter.target_modules=[q_proj, v_proj]", ["adapter", "target_modules"], ("q_proj", "v_proj")),
    ("method.name=memft", ["method", "name"], "memft"),
    ("seed=7", ["seed"], 7),
])
def test_set_overrides_are_yaml_typed(text, keys, value):
    cfg = TrialConfig.from_dict(apply_overrides({}, [text]))
    got = cfg
    for k in keys:
        got = getattr(got, k)
    assert got == value and type(got) is type(value)


def test_parse_override_types():
    assert parse_override("adapter.rank=8") == (["adapter", "rank"], 8)
    assert parse_override("model.name=a=b") == (["model", "name"], "a=b")
    assert parse_override("adapter.alpha=") == (["adapter", "alpha"], None)


@pytest.mark.parametrize("text", ["adapter.rank", "=3"])
def test_malformed_override_names_set(text):
    with pytest.raises(ConfigError) as err:
        parse_override(text)
    assert [p.field for p in err.value.problems] == ["--set"]


def test_apply_overrides_does_not_mutate_its_input():
    data = {"adapter": {"rank": 4, "placement": "paper"}}
    out = apply_overrides(data, ["adapter.rank=16", "budget.steps=9"])
    assert data == {"adapter": {"rank": 4, "placement": "paper"}}
    assert out == {"adapter": {"rank": 16, "placement": "paper"}, "budget": {"steps": 9}}


def test_bad_override_value_names_the_field():
    assert list(problems_of(apply_overrides({}, ["adapter.rank=lots"]))) == ["adapter.rank"]


def test_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text(textwrap.dedent("""\
        adapter: {rank: 4, placement: peft, target_modules: [q_proj]}
        budget: {preset: paper}
        method:
          name: memft
          threshold_margin: 0.1
        """))
    cfg = TrialConfig.from_yaml(str(path), ["adapter.rank=16", "budget.steps=100"])
    assert cfg.adapter.rank == 16 and cfg.adapter.target_modules == ("q_proj",)
    assert (cfg.budget.steps, cfg.budget.batch_size) == (100, 1)
    assert (cfg.method.name, cfg.method.threshold_margin) == ("memft", 0.1)
    assert TrialConfig.from_yaml(str(path)).adapter.rank == 4


def test_empty_yaml_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert TrialConfig.from_yaml(str(path)) == TrialConfig()


@pytest.mark.parametrize("text, says", [
    ("- adapter\n- budget\n", "must hold a YAML mapping at the top, got list"),
    ("just a string\n", "must hold a YAML mapping at the top, got str"),
    ("adapter: [1, 2\n", "YAML syntax error"),
    ("adapter:\n  rank: 4\n rank: 5\n", "YAML syntax error"),
])
def test_bad_yaml_files_give_clear_errors(tmp_path, text, says):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_yaml(str(path))
    assert says in str(err.value) and str(path) in str(err.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        TrialConfig.from_yaml(str(tmp_path / "nope.yaml"))


def test_yaml_errors_name_fields(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("adapter: {rank: 0}\nmethod: {mix: 1.5}\n")
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_yaml(str(path))
    assert [p.field for p in err.value.problems] == ["adapter.rank", "method.mix"]


# -- hashing and round trips -------------------------------------------------------------------------
def test_config_hash_is_stable_and_tracks_fields():
    a = TrialConfig.from_dict({"adapter": {"rank": 4}})
    h = a.config_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert h == TrialConfig.from_dict({"adapter": {"rank": 4}}).config_hash() == a.config_hash()
    assert h != TrialConfig.from_dict({"adapter": {"rank": 5}}).config_hash()
    assert h != TrialConfig.from_dict({"adapter": {"rank": 4}, "budget": {"lr": 0.02}}).config_hash()
    # the preset is resolved before hashing: same values, same hash
    assert TrialConfig.from_dict({"budget": {"preset": "paper"}}).config_hash() == \
        TrialConfig.from_dict({"budget": dict(BUDGET_PRESETS["paper"])}).config_hash()


@pytest.mark.parametrize("data", [
    {},
    {"adapter": {"placement": "peft", "rank": 3, "target_modules": ["q_proj", "v_proj"], "layers": [0, 1]},
     "budget": {"preset": "paper"}, "method": {"name": "memft_sw", "sw_window": 7}, "dtype": "bfloat16"},
    {"data": {"kind": "text", "random_share": 0.4, "target_tokens": 200}, "eval": {"every": 3}},
])
def test_to_dict_round_trips_through_from_dict(data):
    cfg = TrialConfig.from_dict(data)
    plain = cfg.to_dict()
    back = TrialConfig.from_dict(plain)
    assert back == cfg
    assert back.config_hash() == cfg.config_hash()
    assert back.to_dict() == plain


def test_field_docs_cover_every_leaf():
    names = {name for name, _, _ in TrialConfig.field_docs()}
    assert {"adapter.rank", "budget.lr", "method.threshold_margin", "data.random_share", "seed"} <= names
    assert all(doc for _, doc, _ in TrialConfig.field_docs())


# -- checks against the model's shape (tiny-s: hidden 128, 2 layers; meta-device skeleton) ----------
@pytest.mark.parametrize("adapter, field, says", [
    ({"rank": 200}, "adapter.rank", "[1, 128]"),
    ({"placement": "paper", "layer": 2}, "adapter.layer", "[0, 1]"),
    ({"placement": "peft", "target_modules": ["q_proj", "foo_proj"]}, "adapter.target_modules",
     "['foo_proj']"),
    ({"placement": "peft", "layers": [0, 5]}, "adapter.layers", "[0, 1]"),
])
def test_check_against_model_names_the_field(adapter, field, says):
    from trainables.model import check_against_model

    cfg = TrialConfig.from_dict({"model": {"name": "tiny-s"}, "adapter": adapter})
    with pytest.raises(ConfigError) as err:
        check_against_model(cfg)
    assert [p.field for p in err.value.problems] == [field]
    assert says in str(err.value)


def test_check_against_model_accepts_a_fitting_adapter():
    from trainables.model import check_against_model

    dims = check_against_model(TrialConfig.from_dict({"model": {"name": "tiny-s"},
                                                      "adapter": {"rank": 128, "layer": 1}}))
    assert (dims.hidden, dims.layers) == (128, 2)
    assert {"q_proj", "down_proj"} <= dims.module_names


# -- preflight values: seeds, and data that cannot fit (issue 14) -------------------------------------
def test_the_largest_seed_passes_and_reaches_numpy_and_torch():
    import numpy as np
    import torch

    from trainables.config import SEED_MAX

    cfg = TrialConfig.from_dict({"seed": SEED_MAX, "data": {"seed": SEED_MAX}, "model": {"seed": SEED_MAX}})
    np.random.seed(cfg.seed)  # the narrowest seed API: [0, 2**32 - 1]
    np.random.default_rng([cfg.seed, 7])
    torch.manual_seed(cfg.data.seed)
    with pytest.raises(ValueError):
        np.random.seed(SEED_MAX + 1)  # why the range stops there


def test_data_size_check_states_its_estimate_against_a_quarter_of_memory(monkeypatch):
    """On a machine of 8 GB (the cap is 2 GB): tokens only without the model's shape; with the
    vocabulary, the logits of one batch (every sequence when batch_size is null)."""
    from trainables import config as config_module

    monkeypatch.setattr(config_module, "physical_memory_bytes", lambda: 8 * 10**9)
    data = {"kind": "random", "num_sequences": 100_000, "target_tokens": 1000, "prompt_tokens": 8}
    whole = {"loss_chunk_tokens": 0}  # the whole logits at once (the chunked loss off)
    fits = TrialConfig.from_dict({"data": data, **whole})  # 100,000 × 1008 × 16 B = 1.61 GB < 2 GB
    assert config_module.memory_problem(fits) is None
    full = config_module.memory_problem(fits, vocab=512)  # + 100,000 × 1008 × 512 × 4 B = 206 GB: 208 GB
    assert full.field == "data.num_sequences"
    assert "at least 208 GB" in full.message and "over the cap of 2 GB (25% of this machine's 8 GB)" in full.message
    assert "must be in [1, 961] at 1008 tokens a sequence" in full.message  # 2e9 // (1008 × (16 + 2048))
    batched = TrialConfig.from_dict({"data": data, "budget": {"batch_size": 8}, **whole})
    assert config_module.memory_problem(batched, vocab=512) is None  # 1.61 GB + 8 × 1008 × 512 × 4 B
    # the chunked loss (the default): one chunk's logits, 1024 × 512 × 4 B, whatever the batch
    assert config_module.memory_problem(TrialConfig.from_dict({"data": data}), vocab=512) is None
    near = TrialConfig.from_dict({"data": {**data, "num_sequences": 124_000}})
    assert "logits of one loss chunk: 1024 positions × vocab 512" in config_module.memory_problem(near, 512).message
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"data": {**data, "num_sequences": 200_000}})
    assert [p.field for p in err.value.problems] == ["data.num_sequences"]
    assert "must be in [1, 124007]" in str(err.value)  # 2e9 // (1008 × 16)
    monkeypatch.setattr(config_module, "physical_memory_bytes", lambda: None)
    assert config_module.memory_problem(fits, vocab=512) is None  # no cap where memory cannot be read


def test_check_against_model_counts_the_logits_of_a_cpu_trial(monkeypatch):
    from trainables import config as config_module
    from trainables.model import check_against_model

    monkeypatch.setattr(config_module, "physical_memory_bytes", lambda: 8 * 10**9)
    data = {"kind": "random", "num_sequences": 10_000, "target_tokens": 1000}
    with pytest.raises(ConfigError) as err:
        check_against_model(TrialConfig.from_dict({"model": {"name": "tiny-s"}, "data": data, "device": "cpu",
                                                   "loss_chunk_tokens": 0}))
    assert [p.field for p in err.value.problems] == ["data.num_sequences"]
    assert "logits of one batch: 10000 × 1008 tokens × vocab 512 × 4 bytes" in str(err.value)
    check_against_model(TrialConfig.from_dict({"model": {"name": "tiny-s"}, "data": data,
                                               "budget": {"batch_size": 4}, "device": "cpu"}))


def test_fields_joined_by_plus_take_one_value_together_and_the_demo_replicates_draw_fresh_targets():
    """`seed+data.seed: [0, 1]`: each replicate a fresh adapter init and fresh targets (issue 23.2), so a
    cell's replicates measure the noise of a new draw, not the init's alone."""
    from orchestrator.config.preflight import load_sweep
    from orchestrator.search.kinds import sweep_grid
    from trainables.schema import set_dotted

    tree = {"data": {"kind": "random"}}
    assert set_dotted(tree, {"seed+data.seed": 3}) == {"data": {"kind": "random", "seed": 3}, "seed": 3}
    assert tree == {"data": {"kind": "random"}}  # the input is not changed
    sweep = load_sweep(str(Path(__file__).resolve().parents[1] / "examples" / "law_grid_cpu.yaml"))
    configs = [sweep.trial_config(point) for point in sweep_grid(sweep).points()]
    assert len(configs) == 24 and len({c.config_hash() for c in configs}) == 24
    assert {(c.seed, c.data.seed) for c in configs} == {(0, 0), (1, 1)}
