"""Tests for orchestrator.experiment.export and orchestrator.report.plot on synthetic records from a known law.

The records go through a real RecordLog in a temporary experiment folder, exactly as the results
actor leaves them, so the tests read what `memlaw export` and `memlaw plot` will read.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the editable install may predate the packages' __init__ files

from orchestrator.experiment import export as ex  # noqa: E402
from orchestrator.report import plot  # noqa: E402
from orchestrator.config.sweep import FitConfig  # noqa: E402
from orchestrator.law.grouping import fit_groups  # noqa: E402
from orchestrator.records.journal import RecordLog, law_rows  # noqa: E402
from orchestrator.records.trial_record import (RESULT_KEYS, TrialRecord, config_hash,  # noqa: E402
                                              record_from_result)
from trainables import metric_names as K  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402

RANKS = (1, 2, 4, 8)
LENGTHS = (64, 128, 256, 512, 1024)
LAW = dict(C=2.0, alpha=0.75, beta=0.62, b=0.05)
LOSS_INIT = 6.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def law_delta(rank: float, ell: float) -> float:
    return LAW["C"] * rank ** LAW["alpha"] * ell ** -LAW["beta"] + LAW["b"]


def config(rank: int, ell: int, method: str = "sft", seed: int = 42) -> dict:
    base = TrialConfig().to_dict()  # the real layout: nested sections, lists, None fields
    base["adapter"]["rank"], base["data"]["target_tokens"] = rank, ell
    base["method"]["name"], base["seed"] = method, seed
    return base


def result(rank: int, ell: int, delta: float, *, recall: float, steps_to_certified=None) -> dict:
    return {
        K.STEP: 300, K.LOSS_INIT: LOSS_INIT, K.LOSS_FINAL: LOSS_INIT - delta, K.DELTA_LOSS: delta,
        K.FRAC_P_GT_HALF: recall, K.GREEDY_EXACT_MATCH: recall, K.GREEDY_TOKEN_ACC: recall,
        K.STEPS_TO_CERTIFIED: steps_to_certified, K.RANK: rank, K.TARGET_TOKENS: ell,
        K.TRAINABLE_PARAMS: rank * 128, K.BITS_PER_PARAM: ell * delta / math.log(2) / (rank * 128),
        K.WALL_S: 1.5, "timestamp": 1_700_000_000.0 + rank * ell, "time_total_s": 12.0,
    }


def synthetic_records(method: str = "sft", prefix: str = "") -> list[TrialRecord]:
    """4 ranks × 5 lengths from LAW (1 % noise), a repeat, 2 saturated trials and one NaN failure."""
    rng = np.random.default_rng(0)
    out, n = [], 0

    def add(rank, ell, delta, status="ok", recall=0.0, seed=42, **extra):
        nonlocal n
        trial_id = f"{prefix}{n:05d}"  # looks like a number: CSV must keep it text
        res = result(rank, ell, delta, recall=recall, **extra) if status == "ok" else extra["res"]
        out.append(record_from_result(trial_id, "law", config(rank, ell, method, seed), res, status=status,
                                      error=None if status == "ok" else "loss became NaN", node_id="node-1"))
        n += 1

    for rank in RANKS:
        for ell in LENGTHS:
            add(rank, ell, law_delta(rank, ell) * math.exp(0.01 * rng.standard_normal()),
                recall=min(1.0, rank * 64 / ell / 4))
    add(8, 64, law_delta(8, 64) * 1.01, recall=0.5, seed=7)  # a repeat of one cell
    add(16, 64, LOSS_INIT - 0.3, recall=1.0, steps_to_certified=120)  # saturated: loss_final < ln 2
    add(16, 128, LOSS_INIT - 0.5, recall=1.0, steps_to_certified=250)
    add(2, 2048, 0.0, status="nan", res={K.STEP: 40, K.LOSS_INIT: LOSS_INIT, K.LOSS_FINAL: float("nan")})
    return out


def experiment(tmp_path: Path, records: list[TrialRecord], name: str = "exp") -> str:
    path = str(tmp_path / name)
    os.makedirs(path, exist_ok=True)  # a sweep makes its folder when it starts; the log only when it writes
    log = RecordLog.for_experiment(path, snapshot_every=10)  # records in the snapshot and in the journal
    for record in records:
        assert log.add(record)
    return path


def comparable(record: TrialRecord) -> TrialRecord:
    """What an export keeps: RESULT_KEYS metrics with a value (None, NaN and absent are one empty cell)."""
    metrics = {k: v for k, v in record.metrics.items()
               if k in RESULT_KEYS and v is not None and not (isinstance(v, float) and math.isnan(v))}
    return TrialRecord(**{**record.to_dict(), "metrics": metrics})


@pytest.fixture(scope="module")
def records() -> list[TrialRecord]:
    return synthetic_records()


@pytest.fixture
def exp(tmp_path, records) -> str:
    return experiment(tmp_path, records)


# -- export ----------------------------------------------------------------------------------------


def test_records_frame_one_sorted_row_per_trial_with_failures(records):
    frame = ex.records_frame(reversed(records))
    assert list(frame["trial_id"]) == sorted(r.trial_id for r in records)
    assert frame["trial_id"].is_unique and len(frame) == len(records) == 24
    assert dict(frame["status"].value_counts()) == {"ok": 23, "nan": 1}
    for column in ("trial_id", "sweep", "status", "config_hash", "seed", "node_id", "group",
                   "config.adapter.rank", "config.data.target_tokens", "config.adapter.target_modules",
                   *RESULT_KEYS):
        assert column in frame.columns, column
    assert list(frame.columns[-len(RESULT_KEYS):]) == list(RESULT_KEYS)
    assert str(frame[K.STEPS_TO_CERTIFIED].dtype) == "Int64"  # integers with gaps stay integers


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trip(tmp_path, exp, records, suffix):
    out = str(tmp_path / "out" / f"law{suffix}")
    assert ex.export(exp, out) == len(records)
    back = ex.read_export(out)
    assert [r.trial_id for r in back] == sorted(r.trial_id for r in records)
    by_id = {r.trial_id: r for r in back}
    for record in records:
        assert by_id[record.trial_id] == comparable(record), record.trial_id
    failed = by_id[records[-1].trial_id]
    assert failed.status == "nan" and K.LOSS_FINAL not in failed.metrics and failed.metrics[K.STEP] == 40
    assert isinstance(failed.metrics[K.STEP], int) and back[0].config["adapter"]["layers"] is None
    assert back[0].config["adapter"]["target_modules"] == records[0].config["adapter"]["target_modules"]


def test_parquet_carries_provenance_metadata(tmp_path, exp, records):
    out = str(tmp_path / "law.parquet")
    ex.export(exp, out)
    meta = ex.export_metadata(out)
    assert meta["sweeps"] == ["law"] and meta["rows"] == len(records) and meta["experiment"] == exp
    assert meta["memlaw_version"] == importlib.metadata.version("memlaw")
    assert meta["exported_at"].endswith("+00:00")
    import pyarrow.parquet as pq

    assert ex.METADATA_KEY in pq.read_schema(out).metadata


def test_export_to_a_uri(exp, records):
    out = f"memory://exports-{uuid.uuid4().hex}/law.parquet"
    assert ex.export(exp, out) == len(records)
    assert len(ex.read_export(out)) == len(records)


@pytest.mark.parametrize("name", ["law.json", "law", "law.parquet.gz"])
def test_unknown_suffix_is_refused_before_anything_is_written(tmp_path, exp, name):
    with pytest.raises(ValueError, match=r"\.parquet, \.csv"):
        ex.export(exp, str(tmp_path / "out" / name))
    assert not (tmp_path / "out").exists()


def test_missing_experiment_is_an_error_not_an_empty_export(tmp_path):
    with pytest.raises(FileNotFoundError):
        ex.export(str(tmp_path / "nowhere"), str(tmp_path / "law.csv"))
    assert not (tmp_path / "nowhere").exists()


def test_empty_experiment_exports_a_header(tmp_path):
    out = tmp_path / "law.csv"
    assert ex.export(experiment(tmp_path, []), str(out)) == 0
    assert out.read_text().splitlines()[0].startswith("trial_id,sweep,status")
    assert ex.read_export(str(out)) == []


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("existing", [True, False])
def test_failed_write_leaves_old_file_or_nothing(tmp_path, exp, monkeypatch, suffix, existing):
    out = tmp_path / f"law{suffix}"
    if existing:
        out.write_bytes(b"the previous export")

    def crash(fd):
        raise OSError("disk failed mid-write")

    monkeypatch.setattr(os, "fsync", crash)  # the temp file is written but never made durable
    with pytest.raises(OSError, match="mid-write"):
        ex.export(exp, str(out))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == sorted(["exp", out.name] if existing else ["exp"])  # no temp left
    if existing:
        assert out.read_bytes() == b"the previous export"
    assert ex.export(exp, str(out)) == 24 and len(ex.read_export(str(out))) == 24  # and a retry succeeds


# -- plot ------------------------------------------------------------------------------------------


def test_recall_grid_averages_repeats(records):
    grid = plot.recall_grid([r for r in records if r.ok])
    assert grid.ranks == (1, 2, 4, 8, 16) and grid.lengths == LENGTHS
    assert grid.values.shape == (5, 5)
    assert grid.values[3, 0] == pytest.approx((1.0 + 0.5) / 2)  # rank 8, ℓ 64: two repeats
    assert grid.values[4, 0] == 1.0 and np.isnan(grid.values[4, 2])  # rank 16 has only ℓ 64 and 128


def test_plot_law_writes_a_png(tmp_path, exp):
    out = str(tmp_path / "fig" / "law.png")
    assert plot.plot_law(exp, out) == [out]
    data = Path(out).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000


def test_plot_law_puts_every_group_in_one_file_even_without_a_law(tmp_path, records):
    one_rank = [r for r in synthetic_records(method="memft", prefix="m") if r.metrics.get(K.RANK) == 2]
    path = experiment(tmp_path, [*records, *one_rank])  # the memft group's fit is "one_capacity"
    out = str(tmp_path / "law.png")
    assert plot.plot_law(path, out, fit=FitConfig(capacity_variable=K.TRAINABLE_PARAMS)) == [out]
    assert Path(out).read_bytes().startswith(PNG_MAGIC)


def test_plot_law_without_finished_trials_raises(tmp_path, records):
    with pytest.raises(ValueError, match="no finished trials"):
        plot.plot_law(experiment(tmp_path, [], "empty"), str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="no finished trials"):
        failed = experiment(tmp_path, [r for r in records if not r.ok], "failed")
        plot.plot_law(failed, str(tmp_path / "b.png"))
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


# -- what the law panel draws (issue 25, item 9) -----------------------------------------------------

TITLE = "tiny-s, random tokens, paper placement, SFT"


def with_saturated_large_rank() -> list[TrialRecord]:
    """synthetic_records plus rank 512 at ℓ 64, saturated: the law extrapolated to it is far above L_init."""
    extra = record_from_result("x0512", "law", config(512, 64), result(512, 64, LOSS_INIT - 0.2, recall=1.0),
                               status="ok", node_id="node-1")
    return [r for r in synthetic_records() if r.ok] + [extra]


def law_lines(ax, gid: str) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def test_the_law_is_never_drawn_above_l_init():
    fig = plot.law_figure(with_saturated_large_rank())
    law_ax = fig.axes[0]
    fit = fit_groups(law_rows(with_saturated_large_rank()))["tiny-s|random|0|paper|sft"].fit
    assert fit.status == "ok" and fit.predict(512, 64) > 2 * LOSS_INIT  # uncapped, the line would be there
    lines = law_lines(law_ax, plot.FITTED_GID) + law_lines(law_ax, plot.EXTRAPOLATED_GID)
    assert len(lines) == 4 + 6  # solid for the 4 fitted ranks; an extrapolation part for all 6 ranks
    for line in lines:
        y = np.asarray(line.get_ydata(), float)
        assert np.nanmax(y) <= LOSS_INIT and np.nanmin(y) > 0
    r512 = max(law_lines(law_ax, plot.EXTRAPOLATED_GID), key=lambda line: np.nanmax(line.get_ydata()))
    y = np.asarray(r512.get_ydata(), float)
    assert np.isnan(y[0]) and np.isfinite(y[-1])  # cut at short ℓ (above L_init), shown at long ℓ
    assert any(f"{LOSS_INIT:.2f}" in text.get_text() for text in law_ax.get_legend().get_texts())


def test_the_law_is_solid_only_over_the_lengths_it_was_fitted_on():
    law_ax = plot.law_figure(with_saturated_large_rank()).axes[0]
    solid = law_lines(law_ax, plot.FITTED_GID)
    assert len(solid) == 4  # ranks 1, 2, 4, 8; ranks 16 and 512 only saturated: no fitted range
    for line in solid:
        assert (min(line.get_xdata()), max(line.get_xdata())) == (min(LENGTHS), max(LENGTHS))
        assert line.get_linestyle() == "-"
    solid_colours = {line.get_color() for line in solid}
    dashed = law_lines(law_ax, plot.EXTRAPOLATED_GID)
    assert len({line.get_color() for line in dashed} - solid_colours) == 2  # ranks 16 and 512: all dashed
    for line in dashed:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert line.get_linestyle() == "--" and line.get_alpha() < 1
        inside = (x > min(LENGTHS)) & (x < max(LENGTHS))
        if line.get_color() in solid_colours:  # a fitted rank: dashed only beyond its fitted lengths
            assert np.isnan(y[inside]).all()
        else:  # a rank the fit never saw: a prediction wherever it is drawn (and under L_init)
            assert np.isfinite(y[inside]).any()


def test_log_ticks_read_as_plain_numbers():
    fig = plot.law_figure([r for r in synthetic_records() if r.ok])
    fig.canvas.draw()
    law_ax = fig.axes[0]
    for axis in (law_ax.xaxis, law_ax.yaxis):
        texts = [t.get_text() for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)]
        shown = [t for t in texts if t]
        assert shown, "no tick labelled"
        assert not any(mark in t for t in shown for mark in ("\\times", "^", "$", "e+")), shown
        assert all(float(t) > 0 for t in shown)
    assert {"100", "1000"} <= {t.get_text() for t in law_ax.xaxis.get_ticklabels()}
    assert plot._plain_number(6.0) == "6" and plot._plain_number(0.05) == "0.05"
    assert plot._plain_number(100000.0) == "100000" and plot._plain_number(0.30000000000000004) == "0.3"


def test_an_axis_within_one_decade_labels_its_minor_ticks_plainly():
    """Where ΔL spans less than a decade matplotlib labels minor ticks too: 6×10⁰ before, 6 now."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([3.0, 9.0], [3.0, 9.0])
    ax.set(xscale="log", yscale="log", xlim=(3, 9), ylim=(3, 9))
    plot._plain_log_ticks(ax.yaxis)
    fig.canvas.draw()
    plain = {t.get_text() for t in ax.yaxis.get_ticklabels(minor=True)} - {""}
    assert {"4", "6"} <= plain and all(float(t) == int(t) for t in plain)
    default = {t.get_text() for t in ax.xaxis.get_ticklabels(minor=True)} - {""}
    assert any("\\times" in t for t in default)  # the x axis kept matplotlib's labels: what the fix replaces


def test_panels_name_the_group_in_words():
    fig = plot.law_figure([r for r in synthetic_records() if r.ok])
    law_ax, recall_ax = fig.axes[:2]
    assert law_ax.get_title().splitlines()[0] == TITLE and recall_ax.get_title().splitlines()[0] == TITLE
    assert "|" not in law_ax.get_title()


def test_groups_that_differ_in_budget_get_a_panel_each():
    """The figure groups trials as the fit does (law_group_labels): a sweep over two budgets has two
    law groups, and each is drawn with its own law (grouping by the bare label failed to find them)."""
    records = []
    for steps in (300, 600):
        for r in synthetic_records(prefix=f"s{steps}-"):
            if r.ok:
                cfg = {**r.config, "budget": {**r.config["budget"], "steps": steps}}
                records.append(TrialRecord(**{**r.to_dict(), "config": cfg, "config_hash": config_hash(cfg)}))
    fig = plot.law_figure(records)
    titles = [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_title()]
    assert titles == [f"{TITLE}, budget.steps=300"] * 2 + [f"{TITLE}, budget.steps=600"] * 2


@pytest.mark.parametrize("label, words", [
    ("tiny-s|random|0|paper|sft", TITLE),
    ("tiny-m|text|0.25|peft|memft_sw", "tiny-m, text with 25% random tokens, peft placement, MemFT sliding window"),
    ("tiny-s|phonebook|0|paper|memft|budget.steps=300", "tiny-s, phone book, paper placement, MemFT, budget.steps=300"),
    ("not a label", "not a label"),
])
def test_group_title(label, words):
    from orchestrator.records.trial_record import group_title

    assert group_title(label) == words
