"""The commands that read an experiment: `memlaw best`, `law`, `plan`, `export` and `plot`. From
storage they need no Ray; only `--live`, `--address` and `--dashboard` import the modules that
reach a cluster, inside the command."""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.cli.output import EXIT_BAD_INPUT, print_error, report_damage
from orchestrator.tune.jobs import JobsError  # no Ray
from trainables.schema import ConfigError, Problem


# -- an experiment, read from storage (the sweep commands' summary reads it too) -----------------
def open_experiment(path: str):
    """The experiment at `path` for reading (no Ray): its saved sweep, fully validated."""
    from orchestrator.experiment import folder

    return folder.open_experiment(path)


def search_result(sweep, uri: str, warn_damage: bool = False) -> dict | None:
    """A search without a law (orchestrator/law_report.search_result), read from storage."""
    from orchestrator.report import law_report
    from orchestrator.records.journal import LAW_FOLDER, RecordLog

    log = RecordLog.for_experiment(uri)
    if warn_damage:
        report_damage(f"{uri.rstrip('/')}/{LAW_FOLDER}", log.damaged, strict=False)
    return law_report.search_result(sweep, log.all(), uri)


# -- best ----------------------------------------------------------------------------------------
def cmd_best(args: argparse.Namespace) -> int:
    """The best trials or Pareto front of a search, and its held-out validation."""
    from orchestrator.report.law_report import format_search_report

    try:
        sweep = open_experiment(args.path).sweep
    except ConfigError as err:
        print_error(args.path, err)
        return EXIT_BAD_INPUT
    result = search_result(sweep, args.path, warn_damage=True)
    if result is None:
        print(f"error: {args.path} is a {sweep.search.kind} sweep over a law grid: its result is the law "
              f"(memlaw law --experiment {args.path})", file=sys.stderr)
        return EXIT_BAD_INPUT
    if report_damage(f"{args.path.rstrip('/')}/validation", result["damaged"], args.strict):
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_search_report(result["no_law"], result["best"], result["validation"]))
    return 0


# -- the law -------------------------------------------------------------------------------------
def _report_from_experiment(path: str, robust: bool = False) -> dict:
    """The fit from storage, with the files its record log could not use under "damaged"."""
    from orchestrator.report.law_report import build_report
    from orchestrator.records.journal import LAW_FOLDER, RecordLog

    sweep = open_experiment(path).sweep
    log = RecordLog.for_experiment(path)
    report = build_report(sweep.name, log.all(), sweep.fit, robust=robust)
    report["sweep_config"] = sweep.to_dict()
    report["damaged"] = [d.to_dict() for d in log.damaged]
    report["damaged_in"] = f"{path.rstrip('/')}/{LAW_FOLDER}"
    return report


def _no_law(report: dict) -> str | None:
    """Why this sweep has no law (an Optuna search), when the report comes with its sweep's config."""
    if "sweep_config" not in report:
        return None
    from orchestrator.config.sweep import SweepConfig
    from orchestrator.search.kinds import search_of

    sweep = SweepConfig.from_dict(report["sweep_config"])
    return search_of(sweep).law_reason(sweep)


def _stopping(report: dict) -> list[str]:
    """The adaptive stopping rule's lines, when the report comes with its sweep's config."""
    if "sweep_config" not in report:
        return []
    from orchestrator.config.sweep import SweepConfig
    from orchestrator.search.kinds import search_of

    sweep = SweepConfig.from_dict(report["sweep_config"])
    return search_of(sweep).stopping_lines(sweep, report)


def _report_live(path: str, sweep: str | None) -> dict:
    """`--experiment PATH --live`: the running sweep's actor, else the fit from storage, said as such."""
    from orchestrator.experiment import live_file as live
    from orchestrator.experiment.live_trust import trusted_address

    try:
        info = live.read_live(path)
        address = trusted_address(info, live.live_path(path))  # the Ray token goes nowhere else
        from orchestrator.tune.live_query import ask

        return ask(address, sweep or info["sweep"], info["namespace"])
    except live.NotLive as err:
        print(f"memlaw: {err}; showing the fit from storage instead", file=sys.stderr)
        report = _report_from_experiment(path)
        report["source"] = f"storage (not live: {err})"
        return report


def _report_from_dashboard(url: str, sweep: str | None, insecure_http: bool = False) -> dict:
    """Through the Ray Jobs API (orchestrator/tune/jobs.py): a short job on the cluster reads the actor."""
    from orchestrator.tune.jobs import law_from_dashboard

    report = law_from_dashboard(url, sweep, insecure_http)
    report["source"] = f"live: the results actor, through the Jobs API at {url}"
    return report


def _get_report(args: argparse.Namespace) -> dict:
    if args.experiment and args.live:
        return _report_live(args.experiment, args.sweep)
    if args.live:
        raise ConfigError([Problem("--live", "goes with --experiment DIR (the running sweep's folder)")])
    if args.experiment:
        return _report_from_experiment(args.experiment, robust=getattr(args, "robust", False))  # plan has none
    if args.dashboard:
        return _report_from_dashboard(args.dashboard, args.sweep, args.insecure_http)
    from orchestrator.tune.live_query import ask

    return ask(args.address, args.sweep)


def cmd_law(args: argparse.Namespace) -> int:
    from orchestrator.report.law_report import flat_fits, format_report
    from orchestrator.experiment.live_file import NotLive

    if args.robust and (args.live or not args.experiment):
        print("error: --robust refits from storage: it goes with --experiment DIR, without --live (the live actor "
              "refits by least squares only)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report = _get_report(args)
    except ConfigError as err:
        if args.experiment:
            print_error(args.experiment, err)
        else:  # a refused --dashboard URL: one line
            print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (LookupError, NotLive, JobsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    damaged = report.get("damaged", [])
    if report_damage(report.get("damaged_in", "the record log"), damaged, args.strict):
        return EXIT_BAD_INPUT
    if args.strict and report.get("conflicts"):
        print(f"error: {len(report['conflicts'])} configurations have two different results (--strict):\n  "
              + "\n  ".join(report.get("conflict_lines", [])), file=sys.stderr)
        return EXIT_BAD_INPUT
    no_law = _no_law(report)
    if no_law and not args.json:
        print(f"{format_report(report).splitlines()[0]}\n{no_law}")  # the counts line, then why no law
        return 0
    if args.json:
        report["no_law"] = no_law
        print(json.dumps({"sweep": report["sweep"], "updated_at": report["updated_at"],
                          "trials_accepted": report["trials_accepted"], "trials_failed": report["trials_failed"],
                          "fits": flat_fits(report), "stopping": _stopping(report), "damaged": damaged,
                          "source": report.get("source", "storage"), "report": report}, indent=1))
    else:
        print("\n".join([format_report(report), *_stopping(report)]))
        if report.get("source"):
            print(f"(source: {report['source']})")
    return 0


#: Largest `memlaw plan --tokens` (beyond it the law is extrapolated past any measured length by 10⁶×).
MAX_PLAN_TOKENS = 10**12


def cmd_plan(args: argparse.Namespace) -> int:
    from orchestrator.law.capacity import required_capacity
    from orchestrator.law.grouping import GroupFit
    from orchestrator.experiment.live_file import NotLive

    if not 1 <= args.tokens <= MAX_PLAN_TOKENS:
        print(f"error: --tokens must be in [1, {MAX_PLAN_TOKENS:.0e}] target tokens, got {args.tokens}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report = _get_report(args)
    except (ConfigError, LookupError, NotLive, JobsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if report_damage(report.get("damaged_in", "the record log"), report.get("damaged", []), args.strict):
        return EXIT_BAD_INPUT
    groups = {label: GroupFit.from_dict(g) for label, g in report["groups"].items()}
    if args.group:
        groups = {k: v for k, v in groups.items() if k == args.group}
    if not groups:
        print(f"error: no group to plan for (groups: {', '.join(report['groups']) or 'none yet'})", file=sys.stderr)
        return EXIT_BAD_INPUT
    answers = {}
    for label, g in groups.items():
        if g.loss_init_mean is None:
            continue
        est = required_capacity(g.fit, args.tokens, g.loss_init_mean, params_per_rank=g.params_per_rank)
        answers[label] = est.to_dict()
    if args.json:
        print(json.dumps({"tokens": args.tokens, "groups": answers}, indent=1))
        return 0
    for label, est in answers.items():
        print(f"group {label}: to memorize {args.tokens} tokens (final loss < ln 2)")
        if est["status"] != "ok":
            print(f"  {est['status']}: {est['message']}")
            continue
        ci = est.get("rank_ci") or est.get("capacity_ci")
        print(f"  rank >= {est['rank']} (next power of two {est['rank_pow2']}); 95 % interval {ci}"
              + ("  [extrapolated beyond the sweep]" if est.get("extrapolated") else ""))
    return 0


# -- export and plot -----------------------------------------------------------------------------
def _write_failed(out: str, err: OSError) -> int:
    """A write refused by the system (permissions, a read-only disk, a file in a folder's place) is
    bad input: one line, exit 2. Any other OSError (a full disk) is a failed run, raised."""
    import errno

    if isinstance(err, (PermissionError, NotADirectoryError, IsADirectoryError, FileNotFoundError)) or \
            err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        print(f"error: cannot write {out}: {err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    raise err


def cmd_export(args: argparse.Namespace) -> int:
    from orchestrator.experiment.export import (CSV_PROVENANCE_SUFFIX, check_writable, export, export_format,
                                                read_experiment)
    from orchestrator.experiment.provenance import read_runs

    try:
        export_format(args.out)  # input errors first, before anything is read: one line, exit 2
        check_writable(args.out)
        loaded = read_experiment(args.path)
    except (ValueError, FileNotFoundError) as err:  # StorageError (an unknown scheme) is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if report_damage(loaded.log_folder, loaded.damaged, args.strict):
        return EXIT_BAD_INPUT
    try:
        n = export(args.path, args.out, loaded=loaded)
    except ValueError as err:  # `out` names a folder
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        return _write_failed(args.out, err)
    beside = "" if export_format(args.out) == ".parquet" else f" (provenance: {args.out}{CSV_PROVENANCE_SUFFIX})"
    print(f"memlaw export: {n} trials -> {args.out}{beside}")
    _, no_runs = read_runs(args.path)
    if no_runs:  # an experiment made before runs were recorded: its export says so in its metadata too
        print(f"memlaw export: note: run provenance {no_runs}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from orchestrator.experiment.export import check_writable, read_experiment
    from orchestrator.report.plot import plot_law
    from orchestrator.report.search_plot import plot_search
    from orchestrator.search.kinds import search_of

    try:
        sweep = open_experiment(args.path).sweep
    except ConfigError as err:
        print_error(args.path, err)
        return EXIT_BAD_INPUT
    try:
        check_writable(args.out)
        loaded = read_experiment(args.path)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if report_damage(loaded.log_folder, loaded.damaged, args.strict):
        return EXIT_BAD_INPUT
    try:
        if search_of(sweep).law_reason(sweep):  # a search: its front, history and importances, not a law
            paths = plot_search(args.path, args.out, sweep.search.metrics, sweep.search.modes, loaded, sweep.name)
        else:
            paths = plot_law(args.path, args.out, fit=sweep.fit, loaded=loaded)
    except ValueError as err:  # no finished trial to plot, `out` names a folder
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        return _write_failed(args.out, err)
    print("memlaw plot: wrote " + ", ".join(paths))
    return 0
