"""docs/reproduction.md's SmolLM2 section (§6) and the table that sets every law beside the paper's (§5),
from the facts of run.py and smollm2.py. Pure: no Ray, no torch.

Why the table carries its setup: an exponent measured at 600 steps on a quantised 135M base is not the
same quantity as one measured at 2000 steps on an 8B base; each row names the model (and its weights),
placement, budget, lr schedule, replicates and whether ΔL had settled, and an exponent appears only with
its interval and its range over the offset b (the identifiability report).
"""

from __future__ import annotations

from typing import Any

from orchestrator.reproduction.table_format import PAPER, cell, interval, num, pct, where

RISING = "ΔL(T)/ΔL(T/2) > 1.05"
#: The paper's setup (docs/science.md §5), the first row of the comparison.
PAPER_ROW = ("the paper", "Qwen3-8B / Llama-3.1-8B-Instruct (bf16)", "one layer (24 of 36, 18 of 32), parallel to the MLP",
             "2000 steps", "AdamW lr 1e-2, linear to 0, no warm-up", "1 (seed 42)", "not reported",
             f"{PAPER['alpha'][0]}–{PAPER['alpha'][1]} (read from its figure, ±0.1)", "-",
             f"{PAPER['beta'][0]}–{PAPER['beta'][1]}", "-", f"{PAPER['r2'][0]}–{PAPER['r2'][1]}")


def _one(values: list[Any] | None) -> str:
    values = [v for v in (values or []) if v is not None]
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) or "-"


def model_text(setup: dict[str, Any]) -> str:
    gguf = [g for g in setup.get("gguf_file") or [] if g]
    name = _one(setup.get("model"))
    if gguf:
        return f"{name}: {_one(gguf)} dequantised to fp32 (not the released bf16 weights)"
    return f"{name} (random init, fp32)" if name.startswith("tiny") else name


def schedule_text(setup: dict[str, Any]) -> str:
    warmup = [w for w in setup.get("warmup_steps") or [] if w]
    return (f"AdamW lr {_one(setup.get('lr'))}, {_one(setup.get('schedule'))}"
            + (f", {_one(warmup)} warm-up steps" if warmup else ", no warm-up"))


def settled_text(g: dict[str, Any], ladder: str) -> str:
    known = g.get("cells_ratio_known")
    if not known:
        return f"not measured in the trials; {ladder}"
    return f"{g['cells_rising']} of {known} fitted cells still rising ({RISING}); {ladder}"


def _exponent(fit: dict[str, Any], name: str) -> tuple[str, str]:
    over_b = fit.get(f"{name}_over_b")
    span = f"{num(over_b[0])}–{num(over_b[1])}" if over_b else "-"
    # "identified" only says b does not trade against the exponent; a wide interval still says the cells
    # do not pin it down, so only the failure is flagged and the range speaks for itself.
    flag = " (**not identified**)" if fit.get("identified") is False else ""
    return f"{num(fit[name])}{interval(fit.get(name + '_ci'))}", span + (flag if over_b else "")


def law_row(label: str, setup: dict[str, Any], g: dict[str, Any], ladder: str) -> tuple[str, ...]:
    fit = g["fit"]
    if fit["status"] != "ok":
        return (label, model_text(setup), _one(setup.get("placement")), f"{_one(setup.get('steps'))} steps",
                schedule_text(setup), _one(setup.get("replicates")), settled_text(g, ladder),
                f"no fit: {fit['status']}", "-", "-", "-", "-")
    alpha, alpha_b = _exponent(fit, "alpha")
    beta, beta_b = _exponent(fit, "beta")
    return (label, model_text(setup), _one(setup.get("placement")), f"{_one(setup.get('steps'))} steps",
            schedule_text(setup), _one(setup.get("replicates")), settled_text(g, ladder), alpha, alpha_b,
            beta, beta_b, num(fit.get("r2"), ".4f"))


def comparison_lines(facts: dict[str, Any]) -> list[str]:
    """One row per law: the paper, the tiny model's, SmolLM2's 2-D law and its rank-1 β."""
    rows = [PAPER_ROW]
    law = facts["law"]
    for label, g in law["groups"].items():
        rows.append(law_row(f"2-D law, {cell(label)} (§1)", law.get("setup") or {}, g, "budget ladder in §1"))
    study = facts.get("smollm2_study")
    if study:
        for label, g in study["groups"].items():
            rows.append(law_row(f"2-D law, {cell(label)} (§6c)", study["setup"], g, "budget ladder in §6"))
        for s in (study["slope"], study.get("slope_drop")):
            if s:
                rows.append(_slope_row(study["setup"], s))
    head = ("law", "model (weights)", "placement", "budget", "lr schedule", "replicates per cell", "ΔL settled?",
            "α [95 %]", "α over b's interval", "β [95 %]", "β over b's interval", "R²")
    return [_row(head), "|" + "---|" * len(head), *(_row(r) for r in rows)]


def _slope_row(setup: dict[str, Any], s: dict[str, Any]) -> tuple[str, ...]:
    beta = f"{num(s['beta'])}{interval(s['beta_ci'])}" if s["beta"] is not None else f"none: {s['status']}"
    n = len(s["slopes"])
    return (f"β alone at rank 1, {_one(setup.get('model'))}, slope of {s.get('response', 'ΔL')} (§6b)", model_text(setup),
            _one(setup.get("placement")), f"{_one(setup.get('steps'))} steps", schedule_text(setup),
            f"{n} replicate{'s' if n != 1 else ''} (one slope each)", "budget ladder in §6", "-", "-", beta,
            "per-replicate slopes (b taken as 0)", "-")


def _range(pair: Any) -> str:
    """An interval on its own in a table cell ("-" when not computed)."""
    return interval(pair).strip() or "-"


def _row(values: tuple[str, ...]) -> str:
    return "| " + " | ".join(values) + " |"


# -- §6 ------------------------------------------------------------------------------------------------


def smollm2_section(study: dict[str, Any] | None) -> list[str]:
    """The SmolLM2 study: its cells, β alone, the 2-D law with its identifiability, the held-out rank."""
    title = "## 6. The law on a real pretrained model (SmolLM2-135M)"
    if not study:
        return [title, "", "Not run: `memlaw reproduce --smollm2` adds it (about 45 min on 2 quiet cores).", ""]
    setup = study["setup"]
    steps = _one(setup.get("steps"))
    lines = [title, "",
             f"{model_text(setup)}, the {_one(setup.get('placement'))} placement, random-token targets, "
             f"{schedule_text(setup)}, {steps} steps, replicates per cell: {_one(setup.get('replicates'))} (each a "
             f"fresh adapter init and fresh targets); experiments {', '.join(f'`{where(p)}`' for p in study['experiments'])}. "
             f"**ΔL here is ΔL at {steps} steps**: read the budget ladder above before reading the exponents as "
             "capacity.", "", *cells_lines(study["cells"]),
             *slope_lines([s for s in (study["slope"], study.get("slope_drop")) if s]),
             *fit_lines(study["groups"]), *held_out_lines(study["held_out"])]
    return lines


def cells_lines(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["### 6a. The cells", "",
             "Means over each cell's replicates; a cell whose every replicate saturated (final loss < ln 2) shows its "
             "ΔL as a bound: it stored the whole target, so its ΔL measures the target, not the adapter.", "",
             "| rank | ℓ | trials | L_init | ΔL (range) | L_final | tokens p > 0.5 | exact match | "
             f"{RISING.split(' >')[0]} | saturated |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        dl = c["delta_loss"]
        low, high = c["delta_loss_range"] or (None, None)
        text = f"≥ {num(low)} (bound)" if c["saturated"] == c["trials"] else f"{num(dl)} ({num(low)}–{num(high)})"
        lines.append(f"| {c['rank']:g} | {c['tokens']:g} | {c['trials']} | {num(c['loss_init'])} | {text} | "
                     f"{num(c['loss_final'])} | {pct(c['frac_p_gt_half'])} | {pct(c['greedy_exact_match'])} | "
                     f"{num(c['convergence_ratio'], '.3f')} | {c['saturated']} of {c['trials']} |")
    return [*lines, ""]


def slope_lines(slopes: list[dict[str, Any]]) -> list[str]:
    """§6b: β as per-replicate slopes, one row per response (ΔL, then the drop below chance)."""
    lines = ["### 6b. β alone, at rank 1", "",
             "Each replicate's slope of ln y on ln ℓ over the lengths unsaturated in every replicate; β is minus "
             "their mean, its interval Student's t over replicates (orchestrator/law/length_slope.py). y is ΔL (the "
             "paper's response) and the drop below chance L_ref − L_final, which leaves out the part of ΔL that "
             "undoes the base's overconfidence: that part is paid at every ℓ alike, so it flattens ΔL's slope.", ""]
    lines += [f"- **{s['response']}: {s['message']}.**" for s in slopes]
    by_rep = {rep: [] for s in slopes for rep, _ in s["slopes"]}
    for s in slopes:
        values = dict(s["slopes"])
        for rep in by_rep:
            by_rep[rep].append(num(values.get(rep), ".3f"))
    if by_rep:
        lines += ["", "| replicate (data.seed) | " + " | ".join(f"slope of ln y on ln ℓ, y = {s['response']}" for s in slopes)
                  + " |", "|---|" + "---|" * len(slopes),
                  *(f"| {rep} | " + " | ".join(v) + " |" for rep, v in by_rep.items())]
    saturated = slopes[0]["saturated"] if slopes else []
    if saturated:
        bounds = "; ".join(f"replicate {c['replicate']}, ℓ = {c['ell']:g}: ΔL ≥ {num(c['delta_loss'])}" for c in saturated)
        lines += ["", f"Left out as bounds (saturated): {bounds}. Length(s) dropped from every replicate: "
                  f"{', '.join(f'{v:g}' for v in slopes[0]['dropped_lengths'])}."]
    return [*lines, ""]


def fit_lines(groups: dict[str, Any]) -> list[str]:
    lines = ["### 6c. The 2-D law on both experiments", "",
             "ΔL = C · r^α · ℓ^(−β) + b on every unsaturated cell of the β study and the map (relative least "
             "squares over cells, 95 % covariance and profile intervals, exponents refitted with b held across its "
             "own interval, lack of fit against the replicates' spread).", "",
             "| response | α [95 %] | α profile | α over b | β [95 %] | β profile | β over b | C | b [95 %] | "
             "cells (dof) | R² | MAPE | LOLO MAPE | lack of fit p |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for label, g in groups.items():
        for response, fit in (("ΔL", g["fit"]), ("drop below chance", g.get("drop_fit"))):
            if not fit:
                continue
            if fit["status"] != "ok":
                lines.append(f"| {response} | no fit: {fit['status']} |" + " |" * 12)
                continue
            lines.append(f"| {response} | {num(fit['alpha'])}{interval(fit['alpha_ci'])} | {_range(fit.get('alpha_profile_ci'))} | "
                         f"{_range(fit.get('alpha_over_b'))} | {num(fit['beta'])}{interval(fit['beta_ci'])} | "
                         f"{_range(fit.get('beta_profile_ci'))} | {_range(fit.get('beta_over_b'))} | {num(fit['C'])} | "
                         f"{num(fit['b'])}{interval(fit.get('b_ci'))} | {fit.get('n_cells')} ({fit.get('dof')}) | "
                         f"{num(fit['r2'], '.4f')} | {num(fit['mape'], '.2f')} % | {num(fit['lolo_mape'], '.2f')} % | "
                         f"{num(fit.get('lack_of_fit_p'), '.3g')} |")
            notes.append(f"- {response} ({cell(label)}): {fit['message']}")
    return [*lines, "", *notes, ""]


def held_out_lines(h: dict[str, Any]) -> list[str]:
    lines = [f"### 6d. The law's form out of sample: rank {h['rank']:g} predicted from the smaller ranks", "",
             f"**{h['message']}.**", ""]
    if h.get("cells"):
        lines += ["| rank | ℓ | records | observed ΔL | predicted | error |", "|---|---|---|---|---|---|"]
        for c in h["cells"]:
            observed = f"≥ {num(c['observed'])} (saturated: bound)" if c["saturated"] else num(c["observed"])
            error = "-" if c["error"] is None else f"{100 * c['error']:+.1f} %"
            lines.append(f"| {c['x']:g} | {c['ell']:g} | {c['records']} | {observed} | {num(c['predicted'])} | {error} |")
        lines.append("")
    return lines
