"""Run every benchmark under bench/ and write their figures as one Markdown table (docs/benchmarks.md).

Each bench runs as its own subprocess (`python bench/<name>.py ... --json`), so one bench's
threads, Ray instance or crash cannot touch another's figure, and each ends by printing one JSON
result line (bench/bench_result.py). The document notes the machine (CPU, cores, RAM, torch and Ray
versions), the load average around every bench (the 2 cores here are shared), the date, the commit
and the exact command, so a figure can be traced back to the run that made it.

    python bench/run_all.py [--quick] [--experiment memlaw-runs/law-grid-cpu] [--out docs/benchmarks.md]
    make bench

A bench file that does not exist yet is a row saying "not yet available", never a dropped row.
Timings are never part of the test suite; tests/test_bench_runner.py only checks the writer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from orchestrator.reproduction.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
LOG_DIR = ROOT / "memlaw-runs" / "bench-logs"  # each bench's full stdout/stderr (git-ignored)
TIMEOUT_S = 1800


@dataclass(frozen=True)
class Bench:
    """One benchmark script and its arguments at full and at --quick size."""

    script: str
    title: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    takes_experiment: bool = False  # accepts --experiment (a finished law grid) instead of running one
    why_not_met: str = ""  # what limits the figure, shown only when the goal is missed (analysis, not a measurement)
    timed: bool = True  # False when the figure counts steps or trials: machine load cannot move it


BENCHES: tuple[Bench, ...] = (
    Bench("trial_step.py", "trial loop vs hand-written torch+peft", quick=("--steps", "15", "--rounds", "3")),
    Bench("sweep_overhead.py", "sweep wall time vs ideal", quick=("--trials", "40"),
          why_not_met="wall minus ideal is Tune's and Ray's fixed cost per trial (scheduling, trial start, "
                      "result processing, teardown), large against trials of a few seconds (ideal_s × slots / trials in "
                      "docs/benchmarks.json); the ratio falls as trials get longer."),
    Bench("law_refit.py", "law refit at 10k records", quick=("--actor-records", "50")),
    Bench("certificate_vs_greedy.py", "certificate vs greedy at l = 512", quick=("--repeats", "3")),
    Bench("zero_memory.py", "ZeRO-3 per-worker memory vs unsharded"),
    Bench("memft_vs_sft.py", "stable certification at the capacity edge, best MemFT arm vs SFT",
          quick=("--seeds", "1", "--regimes", "edge", "--schedules", "linear"),
          why_not_met="not established by a measurement yet. A hypothesis to test: under the OT mask a token "
                      "leaves the loss once p > 0.5 and can slip back below it, so at lr 1e-2 the certified set "
                      "oscillates and settles only as the linear schedule takes lr to 0 (see the per-seed steps in "
                      "docs/benchmarks.json: a run that certifies only at its last step fits this). Table 2 of "
                      "docs/reproduction.md measures the other side: at equal steps MemFT-OT's token accuracy.",
          timed=False),
    Bench("prefix_cache_step.py", "SmolLM2 paper-placement step, prefix cache vs hand loop",
          quick=("--lengths", "256", "--rounds", "1")),
    Bench("sweep_base_reuse.py", "8-trial SmolLM2 sweep, base reused vs loaded per trial",
          quick=("--trials", "4")),
    Bench("law_grid_wall.py", "tiny CPU law grid wall, after vs before issue 18", quick=("--steps", "50")),
    Bench("chunked_loss_memory.py", "peak memory at l = 4096 (quick: 1536), chunked loss vs whole logits",
          quick=("--length", "1536", "--steps", "1"), timed=False),
    Bench("adaptive_vs_grid.py", "adaptive law search vs full grid, paper-size oracle (GPU-hours at 1.25x the "
          "grid's widths)", takes_experiment=True,
          why_not_met="the bench's result line says which part of the goal was missed and why, in its own figures "
                      "(details.reason); the distribution per grid, noise level and arm is in its output and JSON.",
          timed=False),
)


@dataclass
class Outcome:
    """What one bench run gave: its JSON result, or why there is none."""

    bench: Bench
    command: str
    status: str  # "ok", "missing", "failed"
    result: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    load_before: float | None = None
    load_after: float | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"script": self.bench.script, "title": self.bench.title, "command": self.command,
                "status": self.status, "result": self.result, "wall_s": self.wall_s,
                "load_before": self.load_before, "load_after": self.load_after, "error": self.error,
                "why_not_met": self.bench.why_not_met}


# -- running -------------------------------------------------------------------------------------


def bench_args(bench: Bench, quick: bool, experiment: str | None) -> list[str]:
    args = list(bench.quick if quick else bench.full)
    if bench.takes_experiment and experiment:
        args += ["--experiment", experiment]
    return [*args, "--json"]


def last_json_line(stdout: str) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object with a "name": the bench's result line."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and "name" in obj:
                return obj
    return None


def run_bench(bench: Bench, quick: bool, experiment: str | None, log_dir: Path) -> Outcome:
    path = BENCH_DIR / bench.script
    argv = [sys.executable, str(path.relative_to(ROOT)), *bench_args(bench, quick, experiment)]
    command = shlex.join(["python", *argv[1:]])
    if not path.is_file():
        return Outcome(bench, command, "missing", error=f"{path.relative_to(ROOT)} does not exist yet")
    print(f"[bench] {command}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
        stdout, stderr, rc = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        stdout, stderr, rc = _text(err.stdout), _text(err.stderr), f"timeout after {TIMEOUT_S} s"
    wall = time.perf_counter() - start
    stem = Path(bench.script).stem
    (log_dir / f"{stem}.stdout").write_text(stdout)
    (log_dir / f"{stem}.stderr").write_text(stderr)
    outcome = Outcome(bench, command, "ok", wall_s=wall, load_before=load_before, load_after=os.getloadavg()[0])
    result = last_json_line(stdout)
    if rc != 0 or result is None:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        outcome.status, outcome.error = "failed", f"exit {rc}, no result line: {tail}" if result is None \
            else f"exit {rc}: {tail}"
    if result is not None:
        outcome.result = result
    print(f"[bench]   {outcome.status} in {wall:.0f} s: {_figure_text(outcome)}", file=sys.stderr, flush=True)
    return outcome


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


# -- the machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, library versions, commit, date."""
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": _ram_gib(), "gpu": _gpu(),
        "python": platform.python_version(), "torch": _version("torch"), "ray": _version("ray"),
        "transformers": _version("transformers"), "peft": _version("peft"),
        "commit": _commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "os": platform.platform(),
    }


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpu() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip().replace("\n", ", ") or "none"
    except (OSError, subprocess.TimeoutExpired):
        return "none"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


# -- the document ----------------------------------------------------------------------------------


def _figure_text(outcome: Outcome) -> str:
    if outcome.status == "missing":
        return "not yet available"
    figure = outcome.result.get("figure")
    if figure is None:
        return "no figure" + (f" ({outcome.error})" if outcome.error else "")
    unit = outcome.result.get("unit", "")
    number = f"{figure:.3g}" if abs(figure) < 100 else f"{figure:.0f}"
    return f"{number} {unit}".strip() if not unit.startswith("x") else f"{number}{unit}"


def _met_text(outcome: Outcome) -> str:
    if outcome.status == "missing":
        return "-"
    met = outcome.result.get("met")
    if outcome.status == "failed" and not outcome.result:
        return "**failed**"
    return "-" if met is None else ("yes" if met else "**no**")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(outcomes: list[Outcome]) -> list[str]:
    """The figures table: one row per bench, in BENCHES order."""
    lines = ["| benchmark | memlaw | compared with | figure | goal | met? |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        details = o.result.get("details", {})
        if o.status == "missing":
            memlaw, baseline = f"not yet available ({o.bench.script} missing)", "-"
        else:
            memlaw, baseline = details.get("memlaw", "-"), details.get("baseline", "-")
        goal = o.result.get("goal", "-")
        lines.append("| " + " | ".join(_cell(c) for c in (o.bench.title, memlaw, baseline, _figure_text(o), goal,
                                                             _met_text(o))) + " |")
        for extra in _extra_rows(o):
            lines.append("| " + " | ".join(_cell(c) for c in (
                extra.bench.title, extra.result["details"]["memlaw"], extra.result["details"]["baseline"],
                _figure_text(extra), extra.result["goal"], _met_text(extra))) + " |")
    return lines


def _extra_rows(o: Outcome) -> list[Outcome]:
    """A bench's further measurements (details.rows, bench_result.py), each as an outcome of its own row."""
    rows = o.result.get("details", {}).get("rows", []) if o.status != "missing" else []
    return [Outcome(Bench(o.bench.script, r.get("title", o.bench.title), timed=o.bench.timed), o.command, o.status,
                    {"figure": r.get("figure"), "unit": r.get("unit", ""), "goal": r.get("goal", "-"),
                     "met": r.get("met"), "details": {"memlaw": r.get("memlaw", "-"), "baseline": r.get("baseline", "-"),
                                                      "reason": r.get("reason", "")}}, o.wall_s, o.load_before,
                    o.load_after) for r in rows]


def machine_lines(machine: dict[str, Any]) -> list[str]:
    return [
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; RAM {machine['ram_gib']} GiB; GPU: {machine['gpu']}",
        f"- {machine['os']}; Python {machine['python']}, torch {machine['torch']}, Ray {machine['ray']}, "
        f"transformers {machine['transformers']}, peft {machine['peft']}",
        f"- commit {machine['commit']}, run {machine['date']}",
    ]


def _contention(o: Outcome, cores: int) -> str:
    """A note when the bench ran on a machine busier than its cores: its timing is then not a clean figure."""
    load = max(v for v in (o.load_before, o.load_after, 0.0) if v is not None)
    if not o.bench.timed or not cores or load <= cores:
        return ""
    return (f" It ran under a 1-minute load average of up to {load:.1f} on {cores} cores (other work on the "
            "machine), so its timings include waiting for a core: rerun it on an idle machine before reading it "
            "as the figure of the code.")


def details_lines(outcomes: list[Outcome], cores: int = 0) -> list[str]:
    """Per bench: the command, its wall time, the load around it, its setup and any failure."""
    lines = []
    for o in outcomes:
        lines.append(f"### {o.bench.title}")
        lines.append(f"- command: `{o.command}`")
        if o.status == "missing":
            lines.append(f"- not yet available: {o.error}; the row stays in the table until the bench exists.")
            lines.append("")
            continue
        load = f"{o.load_before:.2f} -> {o.load_after:.2f}" if o.load_before is not None else "-"
        lines.append(f"- wall {o.wall_s:.0f} s; 1-minute load average before -> after: {load}")
        setup = o.result.get("details", {}).get("setup")
        if setup:
            lines.append(f"- setup: {setup}")
        if o.error:
            lines.append(f"- **{o.status}**: {_cell(o.error)}")
        if o.result.get("met") is False:
            reason = o.result.get("details", {}).get("reason") or o.bench.why_not_met
            lines.append(f"- goal not met: measured {_figure_text(o)} against {o.result.get('goal')}."
                         + (f" Why: {reason}" if reason else "") + _contention(o, cores))
        for extra in _extra_rows(o):
            if extra.result.get("met") is False:
                reason = extra.result["details"]["reason"]
                lines.append(f"- {extra.bench.title}: goal not met: measured {_figure_text(extra)} against "
                             f"{extra.result.get('goal')}." + (f" Why: {reason}" if reason else ""))
        lines.append("")
    return lines


def render(outcomes: list[Outcome], machine: dict[str, Any], command: str, quick: bool) -> str:
    """docs/benchmarks.md from the outcomes: pure, so a test can feed it given results."""
    cores = machine.get("cores") or 0
    loads = [o.load_before for o in outcomes if o.load_before is not None]
    busiest = max(loads) if loads else None
    lines = [
        "# Benchmarks",
        "",
        "Generated by `" + command + "`" + (" (quick sizes)" if quick else "") + "; every figure below comes from "
        "that command, each bench in its own process (its own command and load are listed below), the two sides of "
        "each ratio measured side by side in one run.",
        "Regenerate with `make bench` (full sizes) or the command above.",
        "",
        *table(outcomes),
        "",
        "## Machine",
        "",
        *machine_lines(machine),
        f"- load: the {cores} cores are shared with other work on this machine (other agents, CI); the 1-minute "
        f"load average before each bench is listed below"
        + (f" (highest {busiest:.2f} against {cores} cores: figures taken under contention are noisier)"
           if busiest is not None and busiest > 0.5 * cores else "") + ".",
        "",
        "## Each benchmark",
        "",
        *details_lines(outcomes, cores),
        "Raw JSON of this run: `docs/benchmarks.json`.",
        "",
    ]
    return "\n".join(lines)


def outcome_from_dict(data: dict[str, Any]) -> Outcome:
    """Rebuild an outcome from docs/benchmarks.json (re-render without re-running)."""
    bench = next((b for b in BENCHES if b.script == data["script"]), Bench(data["script"], data["title"]))
    return Outcome(bench, data["command"], data["status"], data.get("result", {}), data.get("wall_s", 0.0),
                   data.get("load_before"), data.get("load_after"), data.get("error", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (minutes instead of ~15 min)")
    parser.add_argument("--experiment", help="a finished law grid for adaptive_vs_grid (default: it runs one)")
    parser.add_argument("--only", action="append", default=[], metavar="SCRIPT",
                        help="run only this bench (e.g. trial_step.py; repeatable) and replace its row in the last "
                             "run's document, keeping the other rows")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the Markdown file (JSON next to it)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the Markdown from the JSON of the last run, without running anything")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "bench/run_all.py", *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    if args.render_only:
        saved = json.loads(out.with_suffix(".json").read_text())
        outcomes = [outcome_from_dict(o) for o in saved["outcomes"]]
        out.write_text(render(outcomes, saved["machine"], saved["command"], saved["quick"]))
        return 0
    log_dir = LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    benches = [b for b in BENCHES if not args.only or b.script in args.only]
    outcomes = [run_bench(b, args.quick, args.experiment, log_dir) for b in benches]
    machine = machine_info()
    if args.only and out.with_suffix(".json").is_file():  # rerun some rows, keep the others of the last run
        saved = json.loads(out.with_suffix(".json").read_text())
        fresh = {o.bench.script: o for o in outcomes}
        outcomes = [fresh.get(o["script"]) or outcome_from_dict(o) for o in saved["outcomes"]]
        outcomes += [o for o in fresh.values() if o not in outcomes]
        command = f"{saved['command']}, then {command}"
    out.write_text(render(outcomes, machine, command, args.quick))
    out.with_suffix(".json").write_text(json.dumps({"command": command, "quick": args.quick, "machine": machine,
                                                    "outcomes": [o.to_dict() for o in outcomes]}, indent=1) + "\n")
    print(f"[bench] wrote {out} and {out.with_suffix('.json')} (logs in {log_dir})", file=sys.stderr)
    return 0 if all(o.status != "failed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
