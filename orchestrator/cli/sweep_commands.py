"""The commands that run Ray work: `memlaw sweep`, `submit` (a Ray Job), `resume`, `demo` and
`reproduce`. Ray is imported only inside the commands, through orchestrator.tune."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from orchestrator.cli.output import EXIT_BAD_INPUT, EXIT_STORAGE, print_error
from orchestrator.records.storage_failure import StorageFailed
from orchestrator.cli.read_commands import open_experiment, search_result
from orchestrator.tune.interrupt import EXIT_INTERRUPTED, SweepInterrupted  # no Ray
from orchestrator.tune.jobs import JobsError, dashboard_url_problem  # no Ray
from trainables.schema import ConfigError, Problem


# -- sweeps --------------------------------------------------------------------------------------
def _load_sweep_or_exit(path: str, **overrides):
    from orchestrator.config.preflight import load_sweep

    try:
        return load_sweep(path, overrides)
    except ConfigError as err:
        print_error(path, err)
        return None


def _summarize_sweep(experiment, grid, interrupted: bool = False, logs: str | None = None) -> None:
    from orchestrator.tune import results_actor
    from orchestrator.report.law_report import format_report, format_search_report
    from orchestrator.search.kinds import search_of
    from orchestrator.tune.sweep_output import trial_table

    sweep, uri = experiment.sweep, experiment.uri
    errors = sum(1 for r in grid if r.error is not None)
    result = search_result(sweep, uri)
    if result is not None:  # no law for this space: its best trials or Pareto front, and the validation
        print(format_search_report(result["no_law"], result["best"], result["validation"]))
    else:
        report, records = results_actor.final_report(sweep.name)
        print(f"\nevery trial of {sweep.name} (certified: share of target tokens with p > 0.5; greedy EM: share of "
              "sequences recalled exactly):")
        print(trial_table(records))
        print()
        print("\n".join([format_report(report), *search_of(sweep).stopping_lines(sweep, report)]))
    if interrupted:
        print(f"\n{interrupted_line(sweep, grid)}\n  memlaw resume {uri}        trains the rest; finished "
              f"trials are not rerun", file=sys.stderr)
    else:
        print(f"\nmemlaw: {len(grid)} trials ({errors} failed). Experiment: {uri}", file=sys.stderr)
    print(f"  memlaw {'best' if result else 'law --experiment'} {uri}        the "
          f"{'best trials' if result else 'fit'}, from storage", file=sys.stderr)
    print(f"  memlaw export {uri} --out results.parquet", file=sys.stderr)
    print(f"  memlaw plot {uri} --out {'search' if result else 'law'}.png", file=sys.stderr)
    if logs:
        print(logs, file=sys.stderr)


def interrupted_line(sweep, grid) -> str:
    """What an interrupted sweep did: finished, stopped mid-training, failed, and not started yet."""
    from orchestrator.records.trial_record import completion_status
    from orchestrator.search.kinds import search_of

    pruning = sweep.scheduler == "asha"
    statuses = [("failed" if r.error is not None else completion_status(r.metrics, pruning)) for r in grid]
    counts = {s: statuses.count(s) for s in ("ok", "pruned", "stopped", "failed")}
    parts = [f"{counts['ok']} finished", f"{counts['stopped']} stopped mid-training", f"{counts['failed']} failed"]
    if counts["pruned"]:
        parts.insert(1, f"{counts['pruned']} pruned")
    planned = search_of(sweep).trial_count(sweep)  # a grid's exact count; a search's budget, its most
    parts.append(f"{max(0, planned - len(grid))} of the {planned} planned not started")
    return (f"memlaw: interrupted (Ctrl-C): {', '.join(parts)}. The sweep is not complete. "
            f"Experiment: {sweep.experiment_uri}")


def _experiment_to_run(sweep, resume: bool, new: bool):
    """What `memlaw sweep` runs: a new experiment, or (--resume) the same sweep's existing one, or
    (--new) the sweep under a free suffixed name. An existing experiment is never merged into
    silently, and a changed sweep file never continues an old one. Raises ConfigError."""
    from orchestrator.experiment import folder as ex

    inside = ex.enclosing_experiment(sweep.experiment_uri)
    if inside is not None:
        raise ConfigError([Problem("storage_path", f"{sweep.experiment_uri} lies inside the experiment {inside} (its "
                                                   f"validation phase or trial folders): pick a storage_path outside it")])
    if not ex.exists(sweep.experiment_uri):
        if resume:
            raise ConfigError([Problem("--resume", f"no experiment at {sweep.experiment_uri} to continue")])
        return ex.Experiment.of(sweep), False
    if new:
        return ex.Experiment.of(ex.free_name(sweep)), False
    if not resume:
        raise ConfigError([Problem("name", f"an experiment {sweep.name!r} already exists at {sweep.experiment_uri}: "
                                           f"--resume continues it (same sweep file), --new starts "
                                           f"{ex.free_name(sweep).name!r}, or pick another --name")])
    saved = ex.open_experiment(sweep.experiment_uri)
    changed = ex.changed_fields(saved.sweep, sweep)
    if changed:
        raise ConfigError([Problem("--resume", f"the sweep file differs from the one {sweep.experiment_uri} ran "
                                               f"({', '.join(changed[:8])}); use --new for a fresh experiment")])
    return saved, True


def _run_or_resume(sweep, args, resume: bool, new: bool) -> int:
    from orchestrator.experiment.folder import ExperimentBusy

    try:
        experiment, continuing = _experiment_to_run(sweep, resume, new)
    except ConfigError as err:  # the file is valid; what it would do to an existing experiment is not
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if continuing and (problem := resume_problem(experiment.uri)):
        print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    from orchestrator.tune.tuner import resume_sweep, run_sweep

    return _train(experiment, args, lambda: (
        resume_sweep(experiment, address=args.address, dashboard=args.dashboard) if continuing
        else run_sweep(experiment.sweep, address=args.address, dashboard=args.dashboard)))


def _train(experiment, args, run) -> int:
    """Run `run()` (a sweep or its resume) with Ray's, Tune's and Optuna's log lines in the
    experiment's library log (tune/library_log.py) and end it as memlaw does; the exit code."""
    from orchestrator.tune import library_log
    from orchestrator.experiment.folder import ExperimentBusy

    with library_log.routed(experiment.uri, experiment.sweep.name, getattr(args, "verbose", False)) as logs:
        try:
            grid = run()
        except ExperimentBusy as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except StorageFailed as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_STORAGE
        except SweepInterrupted as stop:
            _summarize_sweep(experiment, stop.grid, interrupted=True, logs=library_log.closing_line(logs))
            return EXIT_INTERRUPTED
        _summarize_sweep(experiment, grid, logs=library_log.closing_line(logs))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep = _load_sweep_or_exit(args.file, storage_path=args.storage, name=args.name)
    if sweep is None:
        return EXIT_BAD_INPUT
    return _run_or_resume(sweep, args, args.resume, args.new)


# -- submit --------------------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace) -> int:
    """`memlaw sweep` as a Ray Job: validated here, run on the cluster behind --dashboard."""
    from orchestrator.tune.jobs import submit_sweep

    problem = dashboard_url_problem(args.dashboard, args.insecure_http)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sweep = _load_sweep_or_exit(args.file, storage_path=args.storage, name=args.name)
    if sweep is None:
        return EXIT_BAD_INPUT
    storage = sweep.storage_path
    if "://" not in storage and not os.path.isabs(storage):
        print(f"error: storage_path {storage!r} is relative: a job runs in a temporary working directory that "
              "Ray deletes; pass --storage with an absolute path every node sees (NFS) or s3://, gs://",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        job = submit_sweep(args.dashboard, args.file, storage, sweep.name, args.insecure_http)
    except JobsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    url = args.dashboard.rstrip("/")
    print(job)
    print(f"memlaw submit: sweep {sweep.name!r} ({sweep.trial_count()} trials) is job {job} on {url} "
          f"(experiment {sweep.experiment_uri})\n"
          f"  ray job logs --follow {job} --address {url}        its live lines and final table\n"
          f"  memlaw law --dashboard {url} --sweep {sweep.name}     the live fit\n"
          f"  ray job stop {job} --address {url}", file=sys.stderr)
    return 0


# -- resume --------------------------------------------------------------------------------------
def nothing_to_resume(experiment) -> str | None:
    """The answer when every trial finished (and the validation, if the search plans one, has its
    summary): Ray need not start to find that out."""
    from orchestrator.experiment.folder import read_validation_summary
    from orchestrator.experiment.tune_state import trial_statuses
    from orchestrator.search.kinds import search_of

    sweep = experiment.sweep
    statuses = trial_statuses(experiment.uri)
    if statuses is None or len(statuses) < sweep.trial_count() or any(s != "TERMINATED" for s in statuses):
        return None
    validated = search_of(sweep).validation(sweep) is not None
    if validated and read_validation_summary(experiment.uri) is None:
        return None
    return (f"memlaw resume: nothing to resume: all {len(statuses)} trials of {sweep.name} finished"
            + (" and its held-out validation ended" if validated else "")
            + f".\n  memlaw law --experiment {experiment.uri}        the fit, from storage")


def resume_problem(uri: str) -> str | None:
    """Why `uri` cannot be resumed faithfully (checked before Ray starts), as the error to print: a
    folder it cannot write, or a missing or torn Tune state (Tune would train every trial again under
    new ids)."""
    from orchestrator.config.preflight import folder_write_problem
    from orchestrator.experiment.folder import VALIDATION_PLAN_FILE, parse_validation_plan, validation_uri
    from orchestrator.records.journal import DamagedFile

    if "://" not in uri and (unwritable := folder_write_problem(uri)):
        return f"error: cannot resume: {unwritable}"
    from orchestrator.experiment.tune_state import newest_state, state_problem
    from orchestrator.records.storage import Store

    problem = state_problem(uri)
    validation = validation_uri(uri)
    if problem is None and Store(validation).exists(VALIDATION_PLAN_FILE):
        try:
            parse_validation_plan(Store(validation).read_bytes(VALIDATION_PLAN_FILE))
        except (OSError, DamagedFile) as err:
            problem = f"the validation's plan {VALIDATION_PLAN_FILE} is torn or unreadable ({str(err)[:200]})"
        if problem is None and newest_state(validation) is not None:
            problem = state_problem(validation)
            uri = validation if problem else uri
    if problem is None:
        return None
    return (f"error: cannot resume {uri}: {problem}.\n"
            f"  Tune would train every trial again under new trial ids. Nothing was changed: the finished "
            f"records are safe\n  in the experiment's memlaw/ folder (`memlaw law --experiment {uri}` reads them). "
            f"To run what is missing,\n  run the sweep file again under a new name (`memlaw sweep FILE --new`).")


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.config.preflight import model_problems

    try:
        experiment = open_experiment(args.path)
    except ConfigError as err:
        print_error(args.path, err)
        return EXIT_BAD_INPUT
    if problem := resume_problem(experiment.uri):
        print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    if done := nothing_to_resume(experiment):  # before the model check: that imports torch (seconds)
        print(done)
        return 0
    problems = model_problems(experiment.sweep)  # it trains again: the model must be at hand
    if problems:
        print_error(args.path, ConfigError(problems))
        return EXIT_BAD_INPUT
    from orchestrator.tune.tuner import resume_sweep

    return _train(experiment, args, lambda: resume_sweep(experiment, address=args.address, dashboard=args.dashboard))


# -- demo and reproduce --------------------------------------------------------------------------
DEMO_FILE = "law_grid_cpu.yaml"
DEMO_NAME = "demo"


def cmd_demo(args: argparse.Namespace) -> int:
    """The shipped CPU law sweep end to end: live table, fit, plot, and where the files went."""
    path = args.file or str(Path(__file__).resolve().parents[2] / "examples" / DEMO_FILE)
    if not Path(path).is_file():
        print(f"error: {path} not found: memlaw demo runs from a checkout of the memlaw repository", file=sys.stderr)
        return EXIT_BAD_INPUT
    # its own name, so that the README's `memlaw sweep examples/law_grid_cpu.yaml` after it is not refused
    sweep = _load_sweep_or_exit(path, storage_path=args.storage, name=args.name or DEMO_NAME)
    if sweep is None:
        return EXIT_BAD_INPUT
    from orchestrator.experiment import folder as ex
    from orchestrator.tune.tuner import run_sweep

    if ex.exists(sweep.experiment_uri):  # a second demo is a new experiment, never merged into the first
        sweep = ex.free_name(sweep)
    print(f"memlaw demo: {sweep.trial_count()} trials of {sweep.space} on a local Ray (CPU); results in "
          f"{sweep.experiment_uri}", file=sys.stderr)
    code = _train(ex.Experiment.of(sweep), args, lambda: run_sweep(sweep))
    if code:
        return code
    from orchestrator.report.plot import plot_law

    png = os.path.join(sweep.experiment_uri, "law.png")
    for written in plot_law(sweep.experiment_uri, png, fit=sweep.fit):
        print(f"memlaw demo: figure {written}", file=sys.stderr)
    print(_demo_finding(sweep))
    return 0


def _demo_finding(sweep) -> str:
    """The demo's last line: what it found, in one sentence (orchestrator/report/findings.py), from storage."""
    from orchestrator.experiment.export import load_experiment
    from orchestrator.report.findings import finding
    from orchestrator.report.law_report import build_report

    records = load_experiment(sweep.experiment_uri)
    return finding(records, build_report(sweep.name, records, sweep.fit))


def cmd_reproduce(args: argparse.Namespace) -> int:
    """docs/reproduction.md from real sweeps (reused when their experiments are complete)."""
    import shlex

    from orchestrator.reproduction.run import reproduce

    command = shlex.join(["memlaw", "reproduce", *sys.argv[2:]]) if sys.argv[1:2] == ["reproduce"] else \
        f"memlaw reproduce --out {args.out} --storage {args.storage}"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        reproduce(args.out, args.storage, command, law_experiment=args.experiment, smollm2=args.smollm2)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SweepInterrupted as stop:
        print(f"memlaw reproduce: interrupted; no document written. {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"memlaw reproduce: wrote {args.out} (facts in {Path(args.out).with_suffix('.json')})", file=sys.stderr)
    return 0
