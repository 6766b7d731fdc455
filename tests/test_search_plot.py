"""`memlaw plot` on a search draws what a search has (issue 25 item 4): its Pareto front, its history
and Optuna's parameter importances, not four empty "no law" panels. A real experiment folder (the
sweep file, a RecordLog, an Optuna journal study), no Ray; the CLI runs in-process."""

from __future__ import annotations

import json
import os

import optuna

from orchestrator.cli.main import main
from orchestrator.config.sweep import SweepConfig
from orchestrator.experiment.export import read_experiment
from orchestrator.experiment.folder import OPTUNA_FILE, SWEEP_FILE, optuna_storage
from orchestrator.records.journal import RecordLog
from orchestrator.records.trial_record import record_from_result
from orchestrator.report.search_plot import importances, search_figure
from orchestrator.search.best_trials import rank_trials
from trainables import metric_names as K

METRICS, MODES = (K.GREEDY_TOKEN_ACC, K.STABLE_CERTIFIED_FROM), ("max", "min")
#: (method, mix, greedy token accuracy, stable-from step): the front is a (0.9, 80), c (0.5, 40), e (0.3, 20)
TRIALS = [("sft", None, 0.9, 80), ("memft", 0.2, 0.6, 90), ("memft_sw", None, 0.5, 40), ("memft", 0.8, 0.4, 60),
          ("memft", 0.5, 0.3, 20), ("sft_again", None, 0.2, 100)]


def _search_experiment(tmp_path) -> tuple[str, SweepConfig]:
    uri = str(tmp_path / "opt")
    sweep = SweepConfig.from_dict({"name": "opt", "trial": {"model": {"name": "tiny-xs"}}, "space": "memft_optuna",
                                   "search": {"kind": "optuna", "metrics": list(METRICS), "modes": list(MODES)},
                                   "num_samples": len(TRIALS), "storage_path": str(tmp_path)})
    os.makedirs(uri)
    with open(os.path.join(uri, SWEEP_FILE), "w") as fh:
        json.dump(sweep.to_dict(), fh)
    log = RecordLog.for_experiment(uri)
    study = optuna.create_study(study_name="opt", storage=optuna_storage(uri), directions=["maximize", "minimize"])
    for i, (method, mix, acc, stable) in enumerate(TRIALS):
        name = "sft" if method == "sft_again" else method
        knobs = {"method.name": name, **({"method.mix": mix} if mix is not None else {})}
        config = sweep.trial_config({**knobs, "seed": 10 + i}).to_dict()
        log.add(record_from_result(f"t{i}", "opt", config, {K.GREEDY_TOKEN_ACC: acc, K.STABLE_CERTIFIED_FROM: stable,
                                                           K.STEP: 100}, status="ok"))
        dist = {"method.name": optuna.distributions.CategoricalDistribution(["sft", "memft", "memft_sw"])}
        study.add_trial(optuna.trial.create_trial(params={"method.name": name}, distributions=dist,
                                                  values=[acc, stable]))
    return uri, sweep


def test_the_search_figure_rings_the_pareto_front_and_draws_history_and_importance(tmp_path):
    uri, _ = _search_experiment(tmp_path)
    records = [r for r in read_experiment(uri).records if r.ok]
    ranked = rank_trials(records, METRICS, MODES)
    found = importances(uri, "opt", METRICS)
    assert set(found) == set(METRICS) and all(set(v) == {"method.name"} for v in found.values()), found
    fig = search_figure(records, ranked, METRICS, MODES, found)
    front_ax, history_ax, importance_ax = fig.axes[:3]
    (line,) = [ln for ln in front_ax.get_lines() if ln.get_gid() == "pareto-front"]
    assert sorted(zip(line.get_xdata(), line.get_ydata())) == [(0.3, 20), (0.5, 40), (0.9, 80)]
    labels = {t.get_text() for t in front_ax.texts}
    assert any(lbl.startswith("memft_sw") for lbl in labels) and any(lbl.startswith("sft") for lbl in labels)
    assert "3 of 6" in front_ax.get_title()
    assert len(importance_ax.patches) == 2  # method.name, once per objective
    assert history_ax.get_title() == "history"


def test_memlaw_plot_on_a_search_writes_its_figure_and_reads_nothing_it_would_create(tmp_path, capsys):
    uri, _ = _search_experiment(tmp_path)
    png = tmp_path / "search.png"
    assert main(["plot", uri, "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "memlaw plot: wrote" in capsys.readouterr().out
    os.remove(os.path.join(uri, OPTUNA_FILE))  # a study lost: the figure still comes, the panel says why
    assert importances(uri, "opt", METRICS)[METRICS[0]].startswith("no Optuna study")
    assert main(["plot", uri, "--out", str(png)]) == 0
    assert not os.path.exists(os.path.join(uri, OPTUNA_FILE))  # reading never creates the journal


def test_a_search_with_no_finished_objective_is_one_error_line(tmp_path, capsys):
    uri = str(tmp_path / "empty")
    os.makedirs(uri)
    sweep = SweepConfig.from_dict({"name": "empty", "trial": {"model": {"name": "tiny-xs"}}, "space": "memft_optuna",
                                   "search": {"kind": "optuna"}, "num_samples": 2, "storage_path": str(tmp_path)})
    with open(os.path.join(uri, SWEEP_FILE), "w") as fh:
        json.dump(sweep.to_dict(), fh)
    RecordLog.for_experiment(uri).add(record_from_result("t0", "empty", sweep.trial_config({}).to_dict(),
                                                         {K.STEP: 1}, status="ok"))
    assert main(["plot", uri, "--out", str(tmp_path / "s.png")]) == 2
    assert "nothing to plot" in capsys.readouterr().err
