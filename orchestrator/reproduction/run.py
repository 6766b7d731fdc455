"""docs/reproduction.md: the paper's measurements, redone on this machine with a tiny model, as one document.

`memlaw reproduce` runs (or reuses) three kinds of real sweeps through the ordinary sweep path
(orchestrator.tune.tuner.run_sweep), then reads only what they stored:

    law grid   examples/law_grid_cpu.yaml: the fitted law per group (α, β, C, b with 95 % intervals,
               R², MAPE, leave-one-length-out error), the figure and recall heatmap (orchestrator.report.plot),
               bits per adapter parameter at capacity
    Optuna     examples/memft_optuna_cpu.yaml: the search over MemFT's knobs and its held-out validation
               (each arm on fresh seeds, paired differences to SFT, the verdict)
    Table 2    the Optuna example's task at ranks TABLE2_RANKS x seeds TABLE2_SEEDS, one grid sweep per
               method (SFT, MemFT-OT, MemFT-SW, the validated best), all at the same steps and lr:
               greedy token accuracy with its interval
    SmolLM2    (--smollm2) the study of smollm2.py on SmolLM2-135M: β at rank 1 over four lengths with
               fresh-data replicates, the 2-D map with its identifiability report and a held-out rank,
               and the semantic-density axis (examples/*_smollm2.yaml; about 45 min on 2 quiet cores)

and the certificate check over every trial folder of all of them (result.json's per-sequence list):
how many certified sequences decoded exactly (must be all), how many decoded exactly uncertified.

An experiment folder that already holds all its trials is reused, so regenerating the document
needs no new training; one that holds some but not all is an error (resume it with `memlaw resume`).
The facts go to a JSON file next to the document, so two runs can be compared number by number.
`collect` and `render` are separate from running, so a test can feed them a small real sweep.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.law.capacity import required_capacity
from orchestrator.law.grouping import GroupFit
from orchestrator.law.grouping import fit_groups
from orchestrator.config.preflight import load_sweep
from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.export import load_experiment
from orchestrator.reproduction.machine import cpu_model
from orchestrator.reproduction.smollm2 import SMOLLM2_FILES, smollm2_sweeps, study_facts
from orchestrator.reproduction.trial_setup import setup_facts
from orchestrator.records.journal import law_rows
from orchestrator.records.trial_record import TrialRecord
from trainables import metric_names as K

LN2 = math.log(2.0)
ROOT = Path(__file__).resolve().parents[2]
LAW_FILE = ROOT / "examples" / "law_grid_cpu.yaml"
OPTUNA_FILE = ROOT / "examples" / "memft_optuna_cpu.yaml"
TABLE2_RANKS = (1, 2, 4, 8)
#: Table 2's fixed methods: label -> the method fields every trial of that column gets.
TABLE2_METHODS: dict[str, dict[str, Any]] = {
    "SFT": {"method.name": "sft"},
    "MemFT-OT": {"method.name": "memft", "method.threshold_margin": 0.0, "method.mix": 1.0},
    "MemFT-SW": {"method.name": "memft_sw"},
}
OPTUNA_LABEL = "MemFT (validated best)"
#: Seeds of every Table 2 cell (the adapter init, dropout and batch order; the data stays the one task).
TABLE2_SEEDS = (42, 43, 44)
TRIAL_FOLDER = "memlaw_trial"  # orchestrator.tune.trainable.TRIAL_FOLDER, without importing Ray here
# -- running (or reusing) the sweeps ---------------------------------------------------------------


@dataclass(frozen=True)
class Experiments:
    """Where each sweep's results live."""

    law: str
    optuna: str | None = None
    table2: tuple[tuple[str, str], ...] = ()  # (method label, experiment path)
    smollm2: tuple[str, ...] = ()  # the SmolLM2 study's experiments (smollm2.SMOLLM2_FILES' order), when asked for

    def all(self) -> list[str]:
        return [p for p in (self.law, self.optuna, *(p for _, p in self.table2), *self.smollm2) if p]


def expected_trials(sweep: SweepConfig) -> int:
    return sweep.trial_count()


def finished_records(path: str) -> list[TrialRecord] | None:
    """The experiment's records, or None when there is no experiment at `path` yet."""
    if not os.path.isdir(path):
        return None
    return load_experiment(path)


def ensure_experiment(sweep: SweepConfig) -> str:
    """Run the sweep unless its experiment already holds every trial; its experiment path."""
    records = finished_records(sweep.experiment_uri)
    if records is not None:
        _same_sweep(sweep)
    if records is not None and len(records) >= expected_trials(sweep):
        print(f"memlaw reproduce: reusing {sweep.experiment_uri} ({len(records)} trials)", flush=True)
        return sweep.experiment_uri
    if records:
        raise RuntimeError(f"{sweep.experiment_uri} holds {len(records)} of {expected_trials(sweep)} trials: "
                           f"finish it with `memlaw resume {sweep.experiment_uri}` or remove it")
    from orchestrator.tune.tuner import run_sweep

    print(f"memlaw reproduce: running {sweep.name} ({expected_trials(sweep)} trials) -> {sweep.experiment_uri}",
          flush=True)
    run_sweep(sweep)
    return sweep.experiment_uri


def _same_sweep(sweep: SweepConfig) -> None:
    """Refuse to reuse a folder that holds another sweep under this name (a changed example, or Table 2's
    'validated best' column after the validation named other knobs): its trials would answer for the wrong
    configuration."""
    from orchestrator.experiment.folder import open_experiment

    saved = open_experiment(sweep.experiment_uri).sweep.to_dict()
    wanted = sweep.to_dict()
    differ = sorted(k for k in set(saved) | set(wanted) if k != "storage_path" and saved.get(k) != wanted.get(k))
    if differ:
        raise RuntimeError(f"{sweep.experiment_uri} holds another sweep named {sweep.name} (it differs in "
                           f"{', '.join(differ)}): remove it, or give --storage a new folder")


def table2_sweep(label: str, values: dict[str, Any], storage: str) -> SweepConfig:
    """One column of Table 2: the Optuna example's trial at every rank of TABLE2_RANKS, one method."""
    base = load_sweep(str(OPTUNA_FILE))
    slug = label.lower().replace(" ", "-").replace("(", "").replace(")", "").replace(",", "").replace("λ", "lambda")
    return SweepConfig.from_dict({
        "name": f"table2-{slug}", "trial": base.trial, "space": "law_grid_smoke",
        "space_overrides": {"adapter.rank": list(TABLE2_RANKS), "data.target_tokens": [base.base_trial.data.target_tokens],
                            "seed": list(TABLE2_SEEDS), **values},
        "search": {"kind": "grid"}, "resources": {"cpu": 1}, "max_concurrency": 2, "storage_path": storage,
        "max_failures": 0,
    })


def run_all(storage: str, law_experiment: str | None = None, smollm2: bool = False) -> Experiments:
    """Every sweep the document needs, on one local Ray (started once, stopped at the end)."""
    from orchestrator.tune.ray_session import stop_ray

    try:
        law_path = law_experiment or ensure_experiment(load_sweep(str(LAW_FILE), {"storage_path": storage}))
        optuna_path = ensure_experiment(load_sweep(str(OPTUNA_FILE), {"storage_path": storage}))
        best = validated_best(optuna_path)
        columns = dict(TABLE2_METHODS)
        if best is not None:
            columns[OPTUNA_LABEL] = dict(best["knobs"])
        table2 = tuple((label, ensure_experiment(table2_sweep(label, values, storage)))
                       for label, values in columns.items())
        real = tuple(ensure_experiment(sweep) for sweep in smollm2_sweeps(storage).values()) if smollm2 else ()
    finally:
        stop_ray()
    return Experiments(law_path, optuna_path, table2, real)


# -- collecting the facts (reads storage only) ------------------------------------------------------


def _dotted(config: dict[str, Any], name: str) -> Any:
    node: Any = config
    for part in name.split("."):
        node = (node or {}).get(part)
    return node


DENSITY_METRICS = (K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS, K.FRAC_P_GT_HALF, K.GREEDY_EXACT_MATCH,
                   K.BITS_ABOVE_CHANCE_PER_PARAM, K.BITS_PER_PARAM)


def density_facts(path: str) -> dict[str, Any] | None:
    """Per random share and ℓ (text targets with that share of random tokens): the losses, the
    certified share, exact match and bits per parameter, mean over the cell's trials; None when the
    experiment has no random-share axis (a law map)."""
    records = [r for r in load_experiment(path) if r.ok]
    shares = sorted({_dotted(r.config, "data.random_share") for r in records} - {None})
    if not records or _dotted(records[0].config, "data.kind") != "text":
        return None
    cells = []
    for share in shares:
        for tokens in sorted({r.metrics[K.TARGET_TOKENS] for r in records}):
            mine = [r for r in records
                    if _dotted(r.config, "data.random_share") == share and r.metrics[K.TARGET_TOKENS] == tokens]
            if mine:
                cells.append({"random_share": share, "tokens": tokens, "trials": len(mine),
                              "rank": mine[0].metrics[K.RANK], **{k: _mean_metric(mine, k) for k in DENSITY_METRICS}})
    return {"experiment": path, "cells": cells}


def wall_facts(paths: list[str]) -> dict[str, float]:
    """Per experiment: seconds from its first trial's start to its last trial's end (what a rerun of
    that sweep costs on this machine, Ray's start-up aside)."""
    out = {}
    for path in paths:
        records = load_experiment(path)
        starts = [r.started_at for r in records if r.started_at]
        ends = [r.ended_at for r in records if r.ended_at]
        if starts and ends:
            out[os.path.basename(os.path.normpath(path))] = max(ends) - min(starts)
    return out


def validated_best(optuna_experiment: str) -> dict[str, Any] | None:
    """The knob set Table 2 carries: the validation's winner, else its best-ranked searched arm
    (top1), from the held-out validation the Optuna example ends with; None without one. Never a
    knob set transplanted from the search's own best trial: that score is optimistic by selection."""
    from orchestrator.experiment.folder import read_validation_summary

    return validated_best_of(read_validation_summary(optuna_experiment))


def validated_best_of(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """validated_best from a validation summary already read."""
    if not summary:
        return None
    searched = [a for a in summary["arms"] if a.get("search")]
    winner = summary["verdict"].get("winner")
    arm = next((a for a in searched if a["label"] == winner), searched[0] if searched else None)
    if arm is None:
        return None
    return {"label": arm["label"], "knobs": arm["knobs"], "text": arm["text"], "winner": arm["label"] == winner,
            "verdict": summary["verdict"]["text"]}


def law_facts(path: str) -> dict[str, Any]:
    """The fit per group on both responses (ΔL, the paper's; the drop below chance), with bits per
    parameter measured and at the law's capacity."""
    records = [r for r in load_experiment(path) if r.ok]
    fits = fit_groups(law_rows(records))
    drop_fits = fit_groups(law_rows(records), response=K.DROP_BELOW_CHANCE)
    groups = {}
    for label, g in fits.items():
        mine = [r for r in records if r.group == label]
        groups[label] = {**g.to_dict(), "bits": bits_facts(g, mine), "trials": len(mine),
                         "loss_init_mean": g.loss_init_mean, "vocab": _vocab(mine),
                         "loss_ref_mean": _mean_metric(mine, K.LOSS_REF),
                         "drop_fit": drop_fits[label].fit.to_dict()}
    grid = {"steps": sorted({r.metrics.get(K.STEP) for r in records if r.metrics.get(K.STEP) is not None}),
            "ranks": sorted({r.metrics[K.RANK] for r in records}),
            "lengths": sorted({r.metrics[K.TARGET_TOKENS] for r in records}),
            "seeds_per_cell": _seeds_per_cell(records)}
    return {"experiment": path, "groups": groups, "grid": grid, "setup": setup_facts(records)}


def _vocab(records: list[TrialRecord]) -> int | None:
    from trainables.config import TrialConfig
    from trainables.model import model_dims

    try:
        return model_dims(TrialConfig.from_dict(records[0].config).model).vocab
    except Exception:  # noqa: BLE001 - a model whose config cannot be read here: no chance level then
        return None


def _seeds_per_cell(records: list[TrialRecord]) -> int | None:
    """The fewest finished trials any (rank, ℓ) cell of the grid holds."""
    cells: dict[tuple[Any, Any], int] = {}
    for r in records:
        key = (r.metrics.get(K.RANK), r.metrics.get(K.TARGET_TOKENS))
        cells[key] = cells.get(key, 0) + 1
    return min(cells.values()) if cells else None


def _mean_metric(records: list[TrialRecord], key: str) -> float | None:
    values = [float(r.metrics[key]) for r in records if r.metrics.get(key) is not None]
    return float(np.mean(values)) if values else None


def bits_facts(g: GroupFit, records: list[TrialRecord]) -> dict[str, Any]:
    """Bits per adapter parameter, measured per trial and at capacity as the fitted law puts it.

    Measured: bits above chance and certified bits per parameter (trainables/information.py, the
    honest figures, recorded by each trial), beside the paper's ΔL-based ℓ · ΔL / ln 2 / N_eff. At
    capacity: the ΔL law's rank r* where the predicted final loss reaches ln 2 (f(r*, ℓ) = L_init − ln 2),
    and what is stored there counted from the reference, ℓ · (L_ref − ln 2) / ln 2 / N_eff, beside the
    paper's ℓ · (L_init − ln 2) / ln 2 / N_eff, which counts overconfidence undone as stored.
    """
    measured = []
    for r in records:
        m = r.metrics
        n = m.get(K.TRAINABLE_PARAMS)
        if not n or m.get(K.DELTA_LOSS) is None:
            continue
        measured.append({"rank": m[K.RANK], "tokens": m[K.TARGET_TOKENS], "bits_per_param": m.get(K.BITS_PER_PARAM),
                         "above_chance": m.get(K.BITS_ABOVE_CHANCE_PER_PARAM),
                         "certified": m.get(K.CERTIFIED_BITS_PER_PARAM)})
    loss_ref = _mean_metric(records, K.LOSS_REF)
    at_capacity = []
    if g.fit.status == "ok" and g.loss_init_mean and g.params_per_rank:
        for tokens in sorted({row["tokens"] for row in measured}):
            est = required_capacity(g.fit, tokens, g.loss_init_mean, params_per_rank=g.params_per_rank)
            if est.status != "ok":
                at_capacity.append({"tokens": tokens, "status": est.status})
                continue
            params = est.capacity * g.params_per_rank
            honest = None if loss_ref is None else tokens * max(0.0, loss_ref - LN2) / LN2 / params
            at_capacity.append({"tokens": tokens, "status": "ok", "rank": est.capacity, "params": params,
                                "bits_above_chance_per_param": honest,
                                "bits_per_param": tokens * est.required_delta_loss / LN2 / params,
                                "extrapolated": est.extrapolated})
    return {"measured": measured, "at_capacity": at_capacity, "loss_ref_mean": loss_ref}


def trial_results(path: str) -> list[dict[str, Any]]:
    """Every trial folder's result.json under an experiment (local storage)."""
    out = []
    for found in sorted(Path(path).glob(f"*/{TRIAL_FOLDER}/result.json")):
        try:
            out.append(json.loads(found.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def certificate_facts(paths: list[str]) -> dict[str, Any]:
    """Certified sequences that decoded exactly, and exact sequences that were not certified."""
    counts = {"trials": 0, "trials_with_results": 0, "sequences": 0, "certified": 0, "certified_exact": 0,
              "exact": 0, "exact_uncertified": 0}
    for path in paths:
        counts["trials"] += sum(1 for r in load_experiment(path) if r.ok)
        for result in trial_results(path):
            counts["trials_with_results"] += 1
            for seq in result.get(K.PER_SEQUENCE) or []:
                certified, exact = bool(seq[K.SEQ_CERTIFIED]), bool(seq[K.SEQ_GREEDY_EXACT])
                counts["sequences"] += 1
                counts["certified"] += certified
                counts["exact"] += exact
                counts["certified_exact"] += certified and exact
                counts["exact_uncertified"] += exact and not certified
    return counts


#: Shares only: each gets Wilson's interval inside [0, 1]. Steps to certification are censored at the
#: budget and belong to the validation's time-to-event summary, never to a mean.
TABLE2_METRICS = (K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH, K.FRAC_P_GT_HALF)


def table2_facts(columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Per method and rank: each share's mean over the cell's seeds with its 95 % Wilson interval."""
    from orchestrator.search.validation_stats import wilson_interval

    table: dict[str, dict[str, Any]] = {}
    for label, path in columns:
        records = [r for r in load_experiment(path) if r.ok]
        cells = {}
        for rank in sorted({r.metrics[K.RANK] for r in records}):
            mine = [r.metrics for r in records if r.metrics[K.RANK] == rank]
            cells[str(rank)] = {k: wilson_interval([m[k] for m in mine if m.get(k) is not None]).to_dict()
                                for k in TABLE2_METRICS}
            cells[str(rank)]["steps"] = mine[0][K.STEP]
            cells[str(rank)]["seeds"] = len(mine)
        table[label] = {"experiment": path, "cells": cells,
                        "config": records[0].config if records else {}}
    return table


def collect(experiments: Experiments) -> dict[str, Any]:
    """Every figure the document shows, as JSON-safe data."""
    from orchestrator.experiment.folder import read_validation_summary

    validation = read_validation_summary(experiments.optuna) if experiments.optuna else None
    study = dict(zip(SMOLLM2_FILES, experiments.smollm2))
    return {
        "law": law_facts(experiments.law),
        "certificate": certificate_facts(experiments.all()),
        "optuna_best": validated_best_of(validation),
        "validation": validation,
        "optuna_experiment": experiments.optuna,
        "table2": table2_facts(experiments.table2),
        "smollm2_study": study_facts(study["beta"], study["map"]) if study else None,
        "smollm2_density": [d for d in (density_facts(study["density"]),) if d] if study else [],
        "wall_s": wall_facts(experiments.all()),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_1min": os.getloadavg()[0],
                    "python": platform.python_version()},
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- the document ----------------------------------------------------------------------------------


def reproduce(out: str, storage: str, command: str, law_experiment: str | None = None,
              experiments: Experiments | None = None, smollm2: bool = False) -> dict[str, Any]:
    """Run (or reuse) the sweeps, then write `out` (Markdown), its JSON facts and its figure; the facts."""
    from orchestrator.report.plot import plot_law
    from orchestrator.reproduction.doc import render

    experiments = experiments or run_all(storage, law_experiment, smollm2)
    facts = collect(experiments)
    out_path = Path(out)
    figure = out_path.parent / "figures" / f"{out_path.stem}_law.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_law(experiments.law, str(figure))
    out_path.write_text(render(facts, command, os.path.relpath(figure, out_path.parent)))
    out_path.with_suffix(".json").write_text(json.dumps(facts, indent=1, default=str) + "\n")
    return facts
