"""MemFT against SFT across regimes: first and stable certification and final accuracy, per method.

The regime map: three data sizes at one rank (below capacity, at the edge, over capacity) times two
lr schedules (linear decay, constant), and in each SFT, MemFT-OT, OT with a margin (hysteresis
against threshold churn), MemFT-SW, and, when given (`--best method.mix=0.4,method.threshold_margin=0.1`),
a validated MemFT setting; several seeds each, every seed setting both the adapter init and the data.
Per cell: the steps to the first fully certified evaluation and to stable certification (every later
evaluation certified, at least one of them) as right-censored time-to-event data
(orchestrator/search/validation_censored.py): the seeds certified within the budget with their exact
Clopper–Pearson interval, and the Kaplan–Meier median, printed as the bound "> t" when fewer than half
the seeds certified (never the budget + 1 placeholder as a number); and the mean final greedy token
accuracy and exact match. The figure is at the capacity edge with linear decay: the best MemFT arm's
KM median steps to stable certification over SFT's (goal <= 0.7x), an upper bound when SFT's median
is not reached, none when neither is.

    python bench/memft_vs_sft.py [--rank 4] [--seeds 3] [--steps 200] [--regimes edge] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("MEMLAW_CACHE", os.path.join(tempfile.gettempdir(), "memlaw-bench-cache"))

from bench_result import emit  # noqa: E402
from orchestrator.search.validation_censored import describe, observe  # noqa: E402
from trainables import metric_names as K  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.memorize import train  # noqa: E402

#: regime -> number of 32-token sequences at the bench's rank (tiny-s; 16 is about the edge at r = 4)
REGIMES = {"below": 4, "edge": 16, "over": 48}
ARMS = {
    "SFT": {"name": "sft"},
    "OT": {"name": "memft"},
    "OT m=0.2": {"name": "memft", "threshold_margin": 0.2},
    "SW": {"name": "memft_sw"},
}


def parse_best(text: str) -> dict:
    """`method.mix=0.4,method.threshold_margin=0.1` -> the method section of that arm (name memft by default)."""
    out = {"name": "memft"}
    for part in filter(None, text.split(",")):
        key, value = part.split("=", 1)
        key = key.removeprefix("method.")
        out[key] = value if key in ("name", "when_all_learned") else float(value)
    return out


def run(method: dict, sequences: int, schedule: str, seed: int, args) -> dict:
    cfg = TrialConfig.from_dict({
        "adapter": {"placement": "peft", "rank": args.rank}, "seed": seed,
        "data": {"target_tokens": 32, "num_sequences": sequences, "seed": seed},
        "budget": {"preset": "cpu", "steps": args.steps, "schedule": schedule},
        "method": method, "eval": {"every": args.every},
    })
    with tempfile.TemporaryDirectory() as out:
        r = train(cfg, out)
    last = args.steps - args.steps % args.every  # the last evaluation (every `every` steps)
    return {"first": observe(r[K.STEPS_TO_CERTIFIED], last, args.steps, needs_later_eval=False),
            "stable": observe(r[K.STABLE_CERTIFIED_FROM], last, args.steps),
            "losses": r[K.CERTIFICATION_LOSSES], "acc": r[K.GREEDY_TOKEN_ACC], "em": r[K.GREEDY_EXACT_MATCH]}


def censored_cell(obs: list, budget: int) -> tuple[str, float | None]:
    """'KM median (k/n [lo, hi])' or '> t (k/n [lo, hi])', and the median when reached."""
    d = describe(dict(enumerate(obs)), budget)
    share = d["certified_share"]
    median = f"{d['median']:g}" if d["median_reached"] else f"> {d['median_above']:g}"
    return f"{median} ({share['k']}/{share['n']} [{share['lo']:.2f}, {share['hi']:.2f}])", d["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--regimes", default="below,edge,over")
    parser.add_argument("--schedules", default="linear,constant")
    parser.add_argument("--best", default="", help="a validated MemFT setting, e.g. method.mix=0.4")
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    arms = dict(ARMS, **({"best": parse_best(args.best)} if args.best else {}))
    cells = {}
    print(f"tiny-s, PEFT LoRA r={args.rank}, 32-token random sequences, lr 1e-2, budget {args.steps} steps, "
          f"certificate every {args.every}, {args.seeds} seeds (adapter init and data); steps: Kaplan-Meier median, "
          f"'> t' when not reached, then seeds certified within the budget with a 95 % Clopper-Pearson interval; "
          f"means of accuracy")
    print("| regime | schedule | arm | first certified | stable certified | times lost | greedy acc | exact match |")
    print("|---|---|---|---|---|---|---|---|")
    for regime in args.regimes.split(","):
        for schedule in args.schedules.split(","):
            for label, method in arms.items():
                rows = [run(method, REGIMES[regime], schedule, 1000 + s, args) for s in range(args.seeds)]
                first, _ = censored_cell([r["first"] for r in rows], args.steps)
                stable, stable_median = censored_cell([r["stable"] for r in rows], args.steps)
                cell = {"first": first, "stable": stable, "stable_median": stable_median,
                        "stable_censored_at": max(o.time for o in (r["stable"] for r in rows)),
                        "losses": statistics.mean(r["losses"] for r in rows),
                        "acc": statistics.mean(r["acc"] for r in rows), "em": statistics.mean(r["em"] for r in rows)}
                cells[(regime, schedule, label)] = cell
                print(f"| {regime} | {schedule} | {label} | {first} | {stable} | "
                      f"{cell['losses']:.1f} | {cell['acc']:.3f} | {cell['em']:.3f} |", flush=True)
    edge = {label: c for (regime, schedule, label), c in cells.items() if regime == "edge" and schedule == "linear"}
    if "SFT" in edge and len(edge) > 1:
        report_edge(edge, args)


def report_edge(edge: dict, args) -> None:
    """The best MemFT arm's KM median over SFT's: exact when both medians are reached, an upper bound
    when only SFT's is not (its median is later than the last step seen), none when the arm's is not."""
    reached = [(c["stable_median"], label) for label, c in edge.items() if label != "SFT" and c["stable_median"]]
    sft = edge["SFT"]
    best = min(reached) if reached else None
    if best is None:
        ratio, bound = None, ""
    elif sft["stable_median"] is None:
        ratio, bound = best[0] / sft["stable_censored_at"], "at most "
    else:
        ratio, bound = best[0] / sft["stable_median"], ""
    print(f"at the edge, linear: no MemFT arm reached a median stable certification within {args.steps} steps "
          "(raise --steps)" if ratio is None else
          f"at the edge, linear: {best[1]} stable certification / SFT's = {bound}{ratio:.2f} (goal <= 0.7)"
          + (f"; SFT's median not reached within {args.steps} steps, so the ratio is an upper bound" if bound else ""))
    if args.json:
        emit("steps to stable certification at the capacity edge, best MemFT arm vs SFT (KM medians)"
             + (" (upper bound: SFT's median not reached)" if bound else ""), ratio, "x", "<= 0.7x",
             None if ratio is None else ratio <= 0.7,
             memlaw=f"{best[0]:g} steps ({best[1]}, KM median)" if best else "not reached",
             baseline=f"SFT: {sft['stable']}",
             setup=f"tiny-s, PEFT r={args.rank}, {REGIMES['edge']}x32 tokens, lr 1e-2 linear, {args.seeds} seeds, "
                   f"budget {args.steps}", cells={label: c["stable"] for label, c in edge.items()})


if __name__ == "__main__":
    main()
