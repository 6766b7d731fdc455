"""The current law of a sweep as one JSON-safe report, and its table for people. Pure: no Ray.

The results actor, `memlaw law --experiment` (offline, from storage) and `memlaw law --address`
all produce this same report, so the live fit and a refit from storage can be compared key by key.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from orchestrator.law.grouping import fit_groups, robust_groups
from orchestrator.law.robust_fit import HUBER_DELTA, disagreements
from orchestrator.config.sweep import FitConfig
from orchestrator.records.identity import distinct
from orchestrator.records.journal import law_rows
from orchestrator.report.budget_ladder import ladder_lines, ladders
from orchestrator.records.trial_record import FAILURES, TrialRecord, law_group_labels
from trainables import metric_names as K
from trainables.convergence import RISING_RATIO


def build_report(sweep: str, records: Iterable[TrialRecord], fit: FitConfig = FitConfig(),
                 robust: bool = False) -> dict[str, Any]:
    """Fit every group of finished trials, one record per configuration (orchestrator/records/
    identity.py); count failures by category; name repeated and conflicting records. `robust` adds
    each group's fit by the robust recipe (orchestrator/law/robust_fit.py; ~0.5 s a group, so never
    in the live actor's refits) and where it disagrees with the least-squares fit."""
    records = list(records)
    seen = distinct(records)
    counted = seen.records
    ok = [r for r in counted if r.ok]
    failures: dict[str, int] = {}
    unfinished: dict[str, int] = {}
    for r in counted:
        if r.status in FAILURES:
            failures[r.status] = failures.get(r.status, 0) + 1
        elif not r.ok:
            unfinished[r.status] = unfinished.get(r.status, 0) + 1
    rows = law_rows(ok)
    groups = fit_groups(rows, capacity_variable=fit.capacity_variable, response=fit.response)
    robust_fits = robust_groups(rows, capacity_variable=fit.capacity_variable, response=fit.response) if robust else {}
    replicates = replicate_kinds(ok)
    ladder = ladders(ok)
    return {
        "sweep": sweep,
        "updated_at": time.time(),
        "capacity_variable": fit.capacity_variable,
        "response": fit.response,
        "trials_accepted": len(counted),
        "trials_ok": len(ok),
        "trials_failed": failures,
        "trials_unfinished": unfinished,
        "records": len(records),
        "repeated": {"duplicates": [list(p) for p in seen.duplicates], "superseded": [list(p) for p in seen.superseded]},
        "conflicts": [c.to_dict() for c in seen.conflicts],
        "conflict_lines": [c.text() for c in seen.conflicts],
        "trial_ids": sorted(r.trial_id for r in records),
        "groups": {label: {**g.to_dict(), "replicates": replicates.get(label),
                           **_robust_entry(g.fit, robust_fits.get(label))} for label, g in groups.items()},
        **({"budget_ladder": ladder} if ladder else {}),
    }


def _robust_entry(least_squares, robust) -> dict[str, Any]:
    if robust is None:
        return {}
    return {"robust": robust.to_dict(), "robust_disagrees": disagreements(least_squares, robust)}


def replicate_kinds(records: list[TrialRecord]) -> dict[str, str]:
    """Per law group: what a cell's replicates vary (the adapter init `seed`, the targets `data.seed`).
    Replicates on the same targets measure init noise alone, smaller than a fresh draw's: the
    lack-of-fit test then rejects too easily (docs/science.md §5)."""
    labels = law_group_labels([r.config for r in records])
    cells: dict[tuple, list[TrialRecord]] = {}
    for label, r in zip(labels, records):
        key = (label, r.metrics.get(K.RANK), r.metrics.get(K.TARGET_TOKENS))
        cells.setdefault(key, []).append(r)
    found: dict[str, set[str]] = {}
    for (label, *_), members in cells.items():
        if len(members) < 2:
            continue
        inits = {m.config.get("seed") for m in members}
        targets = {(m.config.get("data") or {}).get("seed") for m in members}
        found.setdefault(label, set()).add({(True, True): "fresh init and fresh targets", (True, False): "init only "
                                            "(same targets)", (False, True): "targets only (same init)"}
                                           .get((len(inits) > 1, len(targets) > 1), "neither init nor targets"))
    return {label: " / ".join(sorted(kinds)) for label, kinds in found.items()}


def flat_fits(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per group with the issue's keys: C, alpha, beta, b, r2, mape, ... plus group, updated_at."""
    rows = []
    for label, g in report["groups"].items():
        fit = g["fit"]
        row = {"group": label, "updated_at": report["updated_at"], "n_rows": g["n_rows"],
               "bits_above_chance_per_param_mean": g.get("bits_above_chance_per_param_mean"),
               "bits_above_chance_per_param_unsaturated_mean": g.get("bits_above_chance_per_param_unsaturated_mean"),
               "certified_bits_per_param_mean": g.get("certified_bits_per_param_mean"),
               "cells_rising": g.get("cells_rising"), "cells_ratio_known": g.get("cells_ratio_known"),
               "replicates": g.get("replicates"), "left_out": g.get("left_out") or [],
               "robust": g.get("robust"), "robust_disagrees": g.get("robust_disagrees"),
               "bits_per_param_mean": g["bits_per_param_mean"]}
        row.update({k: fit.get(k) for k in ("status", "message", "C", "alpha", "beta", "b", "r2", "mape",
                                            "n_points", "n_excluded", "n_invalid", "C_ci", "alpha_ci", "beta_ci",
                                            "b_ci", "lolo_mape", "capacity_variable", "response", "init_excess",
                                            "comparable", "n_cells", "dof", "lack_of_fit_p", "alpha_profile_ci",
                                            "beta_profile_ci", "alpha_over_b", "beta_over_b", "identified")})
        rows.append(row)
    return rows


def _num(value: Any, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def _ci(pair: Any) -> str:
    if not pair:
        return ""
    lo, hi = pair
    return f" [{_num(lo)}, {_num(hi)}]"


def _width(pair: Any) -> float | None:
    return None if not pair or None in pair else pair[1] - pair[0]


def format_report(report: dict[str, Any]) -> str:
    """A human table: one block per group."""
    failed = sum(report["trials_failed"].values())
    unfinished = ", ".join(f"{n} {status}" for status, n in sorted(report.get("trials_unfinished", {}).items()))
    lines = [f"sweep {report['sweep']}: {report['trials_accepted']} trials accepted, {report['trials_ok']} ok, "
             f"{failed} failed {report['trials_failed'] or ''}".rstrip() + (f", {unfinished} (not in the fit)"
                                                                           if unfinished else ""),
             f"law: {_response_symbol(report.get('response'))} = C · {report['capacity_variable']}^α · ℓ^(−β) + b   "
             f"(95 % intervals)"]
    lines += repeat_lines(report)
    if not report["groups"]:
        lines.append("  no finished trials yet")
    lines += ladder_lines(report.get("budget_ladder") or {})
    for row in flat_fits(report):
        lines.append(f"  group {row['group']}  ({row['n_rows']} trials)")
        if row["status"] != "ok":
            lines.append(f"    {row['status']}: {row['message']}")
            continue
        lines.append(f"    alpha {_num(row['alpha'])}{_ci(row['alpha_ci'])} (width {_num(_width(row['alpha_ci']))})   "
                     f"beta {_num(row['beta'])}{_ci(row['beta_ci'])} (width {_num(_width(row['beta_ci']))})")
        lines.append(f"    C {_num(row['C'])}{_ci(row['C_ci'])}   b {_num(row['b'])}{_ci(row['b_ci'])}")
        lines.append(f"    R² {_num(row['r2'], '.4f')}   MAPE {_num(row['mape'], '.2f')} %   leave-one-length-out "
                     f"MAPE {_num(row['lolo_mape'], '.2f')} %   points {row['n_points']} in {_num(row.get('n_cells'))} "
                     f"cells, dof {_num(row.get('dof'))} (+{row['n_excluded']} saturated, {row['n_invalid']} invalid)")
        if row.get("replicates"):
            lines.append(f"    replicates vary: {row['replicates']}")
        lines += left_out_lines(row)
        lines += robust_lines(row)
        lines += identification_lines(row)
        if row.get("cells_ratio_known"):
            lines.append(f"    {convergence_line(row)}")
        lines.append(f"    {bits_line(row)}")
        if row.get("comparable") is False:
            lines.append(f"    not comparable: L_init is {_num(row['init_excess'], '.2f')} nats above chance, so part "
                         f"of every ΔL undoes overconfidence (fit.response: drop_below_chance fits only the drop)")
    return "\n".join(lines)


def robust_lines(row: dict[str, Any]) -> list[str]:
    """The robust recipe's exponents beside the least-squares ones, and a WARNING where they disagree."""
    robust = row.get("robust")
    if not robust:
        return []
    if robust["status"] != "ok":
        return [f"    robust fit: {robust['status']}"]
    lines = [f"    robust fit (Huber δ={HUBER_DELTA:g} on log residuals, multi-start L-BFGS, cell bootstrap of "
             f"{robust['n_boot']}): alpha {_num(robust['alpha'])}{_ci(robust['alpha_ci'])}   "
             f"beta {_num(robust['beta'])}{_ci(robust['beta_ci'])}   b {_num(robust['b'])}"]
    for text in row.get("robust_disagrees") or []:
        lines.append(f"    WARNING the estimators disagree on {text}: a few cells decide the least-squares fit "
                     f"(docs/science.md §5)")
    if not row.get("robust_disagrees"):
        lines.append("    the estimators agree: each exponent inside the other's interval")
    return lines


def left_out_lines(row: dict[str, Any]) -> list[str]:
    """Where the fit's cut fell (GroupFit.left_out): for each reason, the cells as x × ℓ (records)."""
    by_reason: dict[str, list[str]] = {}
    for x, ell, reason, n in row.get("left_out") or []:
        by_reason.setdefault(reason, []).append(f"{_num(x)}×{_num(ell)}" + (f" ({n})" if n > 1 else ""))
    meaning = {"saturated": "saturated (final loss < ln 2: ΔL capped by L_init − ln 2, not by capacity)",
               "y <= 0": f"{_response_symbol(row.get('response'))} <= 0 (no relative error exists for it)",
               "not finite": "not finite"}
    symbol = "rank" if row.get("capacity_variable") == "rank" else "params"
    return [f"    left out, {meaning.get(reason, reason)}: {len(cells)} cells ({symbol} × ℓ, records) "
            f"{', '.join(cells)}" for reason, cells in sorted(by_reason.items())]


def convergence_line(row: dict[str, Any]) -> str:
    """How many fitted cells were still rising at the budget (trainables/convergence.py)."""
    rising, known = row["cells_rising"], row["cells_ratio_known"]
    if rising:
        return (f"convergence: {rising} of {known} fitted cells still rising (ΔL(T)/ΔL(T/2) > {RISING_RATIO}): "
                f"ΔL at T steps, not converged; a longer budget moves this fit")
    return f"convergence: all {known} fitted cells settled (ΔL(T)/ΔL(T/2) <= {RISING_RATIO})"


def identification_lines(row: dict[str, Any]) -> list[str]:
    """Whether the cells pin the exponents down (orchestrator/law/identifiability.py): profile intervals,
    the exponents' ranges over b's interval, the lack-of-fit test; a warning line where they fail."""
    lines = []
    if row.get("alpha_profile_ci") or row.get("alpha_over_b"):
        lines.append(f"    profile intervals: alpha{_ci(row.get('alpha_profile_ci'))}  beta{_ci(row.get('beta_profile_ci'))}"
                     f"   with b held across its interval: alpha{_ci(row.get('alpha_over_b'))}  "
                     f"beta{_ci(row.get('beta_over_b'))}")
    if row.get("identified") is False:
        lines.append("    WARNING not identified: as b moves within its interval the exponents move further than their "
                     "own intervals; the offset trades against α and β, and these cells do not pin them down")
    p = row.get("lack_of_fit_p")
    if p is not None:
        verdict = "the law fits within the replicates' scatter" if p >= 0.05 else "WARNING the cells scatter about " \
            "the law more than replicates scatter about their cell means"
        lines.append(f"    lack of fit: F test against the replicates' pure error p = {p:.2g}: {verdict}")
    return lines


def repeat_lines(report: dict[str, Any]) -> list[str]:
    """What the counts leave out: records that repeat a configuration already counted, and conflicts."""
    repeated = report.get("repeated") or {}
    lines = []
    if repeated.get("duplicates"):
        lines.append(f"  {len(repeated['duplicates'])} records repeat a configuration already counted (same config "
                     f"and seed, same result): each counted once")
    if repeated.get("superseded"):
        lines.append(f"  {len(repeated['superseded'])} unfinished or failed records of a configuration that has a "
                     f"result: not counted")
    lines += [f"  {line}" for line in report.get("conflict_lines", [])]
    return lines


def _response_symbol(response: str | None) -> str:
    return "drop below chance" if response == "drop_below_chance" else "ΔL"


def bits_line(row: dict[str, Any]) -> str:
    """The honest figure first, the paper's ΔL-based one labelled as such (docs/science.md §6). Bits above
    chance are per-sequence code-length savings, shown over the unsaturated trials (final loss >= ln 2,
    where capacity binds) and over all of them; never a maximum, which picks the noisiest trial."""
    return (f"bits above chance/param {_num(row.get('bits_above_chance_per_param_unsaturated_mean'))} unsaturated, "
            f"{_num(row.get('bits_above_chance_per_param_mean'))} all   certified bits/param "
            f"{_num(row.get('certified_bits_per_param_mean'))}   (the paper's ΔL-based bits/param "
            f"{_num(row.get('bits_per_param_mean'))}; means over trials)")


# -- sweeps without a law: the best trials or Pareto front, and the held-out validation ------------
def format_validation(summary: dict[str, Any]) -> str:
    """The held-out validation as text (orchestrator/search/validation_text.py: shares with intervals
    inside [0, 1], censored steps as bounds, Holm-adjusted p beside the verdict)."""
    from orchestrator.search.validation_text import format_validation as text

    return text(summary)


def format_search_report(reason: str, best: dict[str, Any], validation: dict[str, Any] | None) -> str:
    """The end report of a sweep whose space is not a law grid: why no law, its best, its validation."""
    from orchestrator.search.best_trials import format_best

    parts = [reason, format_best(best)]
    if validation is not None:
        parts.append(validation["text"] if validation.get("incomplete") else format_validation(validation))
    return "\n".join(parts)


def search_result(sweep, records: Iterable[TrialRecord], experiment_uri: str) -> dict[str, Any] | None:
    """What `memlaw best` and a search's end report show: why no law, the best or the Pareto front,
    the validation's summary when it ran. None for a sweep that has a law (a grid)."""
    from orchestrator.search.best_trials import best_section
    from orchestrator.search.kinds import search_of
    from orchestrator.experiment.folder import validation_summary

    reason = search_of(sweep).law_reason(sweep)
    if reason is None:
        return None
    s = sweep.search
    validation, damaged = validation_summary(experiment_uri)
    if validation is None and not damaged:
        validation, damaged = _unfinished_validation(sweep, experiment_uri)
    return {"sweep": sweep.name, "no_law": reason, "best": best_section(records, s.metrics, s.modes),
            "validation": validation, "damaged": [d.to_dict() for d in damaged]}


def _unfinished_validation(sweep, experiment_uri: str) -> tuple[dict[str, Any] | None, list]:
    """A validation that planned its trials and has no summary yet: how far it got (no verdict)."""
    from orchestrator.experiment.folder import VALIDATION, VALIDATION_PLAN_FILE, parse_validation_plan, validation_uri
    from orchestrator.records.journal import Damage, DamagedFile, RecordLog
    from orchestrator.records.storage import Store
    from orchestrator.search.validation_plan import incomplete_text, progress

    folder = Store(validation_uri(experiment_uri))
    if not folder.exists(VALIDATION_PLAN_FILE):
        return None, []
    try:
        plan = parse_validation_plan(folder.read_bytes(VALIDATION_PLAN_FILE))
        done, planned = progress(plan, sweep, RecordLog.for_experiment(validation_uri(experiment_uri)).all())
    except (OSError, DamagedFile, KeyError, TypeError, AttributeError) as err:  # an arm that is not one
        return None, [Damage(f"{VALIDATION}/{VALIDATION_PLAN_FILE}", "validation", f"torn or unreadable ({err}"[:200]
                             + "): left out")]
    return {"incomplete": True, "done": done, "planned": planned,
            "text": incomplete_text(done, planned, experiment_uri)}, []
