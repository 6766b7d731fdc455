"""How long a full refit of the law takes: the results actor refits on every finished trial.

Goal: under 50 ms for 10 000 records, leave-one-length-out included. Records come from a known law
(C = 2, α = 0.75, β = 0.62, b = 0.05) with 2 % multiplicative noise and arrive shuffled, as the
actor sees them. Two layouts:
  grid      7 ranks × 10 lengths, repeated seeds: what sweeps produce (the fit collapses the
            records to 70 cells, exactly);
  distinct  x drawn continuously in [1, 64], the same 10 lengths: no two records share a cell, the
            worst case for the solver.

A second section measures the live path end to end on a local Ray: a results actor on a temporary
experiment folder receives ACTOR_RECORDS records one at a time, and each is timed from
`add.remote` until `report.remote(wait_s=...)` returns a report whose `trial_ids` include it
(journal write, refit, report). Figures only; no goal.

Run from the repository root:  python bench/law_refit.py [--actor-records 200] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without an install

from bench_result import emit  # noqa: E402
from orchestrator.law.fit import LawFit  # noqa: E402
from orchestrator.law.uncertainty import fit_law  # noqa: E402

GOAL_MS = 50.0
TRUE = dict(C=2.0, alpha=0.75, beta=0.62, b=0.05)
RANKS = 2.0 ** np.arange(7)  # 1 .. 64
LENGTHS = 64.0 * 2.0 ** np.arange(10)  # 64 .. 32768
REPEATS = 15


def records(n: int, layout: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(x, ℓ, ΔL, final loss), shuffled; final loss 3.0 keeps every record unsaturated."""
    rng = np.random.default_rng(seed)
    if layout == "grid":
        x, ell = rng.choice(RANKS, n), rng.choice(LENGTHS, n)
    else:
        x = np.exp(rng.uniform(0.0, np.log(64.0), n))
        ell = rng.choice(LENGTHS, n)
    clean = TRUE["C"] * x ** TRUE["alpha"] * ell ** -TRUE["beta"] + TRUE["b"]
    delta = clean * np.exp(0.02 * rng.standard_normal(n))
    return x, ell, delta, np.full(n, 3.0)


def median_ms(columns: tuple[np.ndarray, ...], lolo: bool) -> tuple[float, LawFit]:
    times, fit = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        fit = fit_law(*columns, leave_one_length_out=lolo)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), fit


def refit_table() -> dict[tuple[str, int], float]:
    """Print the refit table; (layout, records) -> median ms with leave-one-length-out."""
    print(f"law refit, median of {REPEATS} runs (goal: < {GOAL_MS:.0f} ms at 10 000 records, with LOLO)")
    timings = {}
    header = ("layout", "records", "no LOLO ms", "LOLO ms", "alpha", "beta", "LOLO MAPE %", "goal")
    print("{:<9} {:>8} {:>11} {:>9} {:>7} {:>7} {:>12}  {}".format(*header))
    for layout in ("grid", "distinct"):
        for n in (1_000, 10_000):
            columns = records(n, layout)
            bare, _ = median_ms(columns, lolo=False)
            full, fit = median_ms(columns, lolo=True)
            timings[(layout, n)] = full
            verdict = ("met" if full < GOAL_MS else "MISSED") if n == 10_000 else ""
            print(f"{layout:<9} {n:>8} {bare:>11.1f} {full:>9.1f} {fit.alpha:>7.4f} {fit.beta:>7.4f} "
                  f"{fit.lolo_mape:>12.3f}  {verdict}")
    return timings


ACTOR_RECORDS = 200


def actor_records(n: int, sweep: str, seed: int = 0) -> list[dict]:
    """n record dicts from the law on the rank × length grid, shuffled cells; each its own configuration
    (rank, length and seed in its config), since records of one configuration are one point of the law."""
    from orchestrator.records.trial_record import record_from_result
    from trainables import metric_names as K
    from trainables.config import TrialConfig
    from trainables.schema import set_dotted

    x, ell, delta, final = records(n, "grid", seed)
    base = TrialConfig().to_dict()
    out = []
    for i in range(n):
        result = {K.RANK: int(x[i]), K.TARGET_TOKENS: int(ell[i]), K.DELTA_LOSS: float(delta[i]),
                  K.LOSS_FINAL: float(final[i]), K.LOSS_INIT: float(final[i] + delta[i]),
                  K.TRAINABLE_PARAMS: int(128 * x[i]), "timestamp": time.time(), "time_total_s": 1.0}
        config = set_dotted(base, {"adapter.rank": int(x[i]), "data.target_tokens": int(ell[i]), "seed": i})
        out.append(record_from_result(f"bench-{i:05d}", sweep, config, result).to_dict())
    return out


def actor_round_trip(n: int = ACTOR_RECORDS) -> float:
    """Median and p95 of add -> a report that includes the record, through a real results actor."""
    import tempfile

    import orchestrator  # noqa: F401  (RAY_AUTH_MODE before Ray is imported)
    import ray

    from orchestrator.tune import results_actor

    sweep = "bench-refit"
    print(f"\nresults actor on a local Ray: {n} records sent one at a time; "
          "add.remote -> a report that includes the record")
    with tempfile.TemporaryDirectory(prefix="memlaw-bench-") as folder:
        start = time.perf_counter()
        ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=100 * 2**20,
                 _node_ip_address="127.0.0.1", namespace=results_actor.NAMESPACE, log_to_driver=False)
        try:
            actor = results_actor.get_or_create(sweep, folder)
            ray.get(actor.report.remote(wait_s=30.0))  # the first (empty) fit; the worker is warm
            print(f"ray.init + actor ready: {time.perf_counter() - start:.1f} s")
            totals, fits, polls = [], [], 0
            for record in actor_records(n, sweep):
                t0 = time.perf_counter()
                actor.add.remote(record)
                while True:
                    report = ray.get(actor.report.remote(wait_s=5.0))
                    polls += 1
                    if record["trial_id"] in report["trial_ids"]:
                        break
                totals.append(1e3 * (time.perf_counter() - t0))
                if report["fit_latency_s"] is not None:
                    fits.append(1e3 * report["fit_latency_s"])
            fit = next(iter(report["groups"].values()))["fit"]
            print("{:<44} {:>9} {:>9} {:>9}".format("", "median", "p95", "max"))
            for label, values in (("add.remote -> report with the record (ms)", totals),
                                  ("actor: arrival -> fit covering it (ms)", fits)):
                p95 = float(np.percentile(values, 95))
                print(f"{label:<44} {statistics.median(values):>9.1f} {p95:>9.1f} {max(values):>9.1f}")
            print(f"report calls {polls} for {n} records; final fit on {report['trials_accepted']} records: "
                  f"alpha {fit['alpha']:.4f}, beta {fit['beta']:.4f}")
            return statistics.median(totals)
        finally:
            ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actor-records", type=int, default=ACTOR_RECORDS,
                        help="records sent through the live results actor (0: skip that section)")
    parser.add_argument("--json", action="store_true", help="end with one JSON result line (bench/run_all.py)")
    args = parser.parse_args()
    timings = refit_table()
    actor_ms = actor_round_trip(args.actor_records) if args.actor_records else None
    if args.json:
        ms = timings[("grid", 10_000)]
        emit("law refit at 10k records (leave-one-length-out included)", ms, "ms", f"< {GOAL_MS:.0f} ms",
             ms < GOAL_MS, memlaw=f"{ms:.1f} ms (10k grid records)",
             baseline=f"{timings[('distinct', 10_000)]:.1f} ms (10k records in distinct cells, worst case)",
             ms_by_layout={f"{layout}/{n}": v for (layout, n), v in timings.items()},
             actor_round_trip_median_ms=actor_ms)


if __name__ == "__main__":
    main()
