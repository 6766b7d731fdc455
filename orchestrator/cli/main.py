"""The `memlaw` command line.

    memlaw demo                                   the CPU law sweep, end to end, on a local Ray
    memlaw trial FILE.yaml [--set k=v ...] [--out DIR] [--json] [--resume | --force]
    memlaw sweep FILE.yaml [--address auto|ray://... | --dashboard] [--storage URI] [--name NAME]
    memlaw resume PATH [--address ... | --dashboard]
    memlaw submit FILE.yaml --dashboard URL [--storage URI] [--name NAME]   the sweep as a Ray Job
    memlaw best PATH [--json]                     a search's best trials or Pareto front, and its validation
    memlaw law (--experiment PATH | --address ADDR | --dashboard URL [--insecure-http]) [--sweep NAME] [--json]
               [--strict]
    memlaw plan --tokens N (--experiment PATH | --address ADDR) [--sweep NAME] [--group G] [--json] [--strict]
    memlaw export PATH --out results.parquet|csv [--strict]
    memlaw plot PATH --out law.png [--strict]
    memlaw validate FILE.yaml [--set k=v ...]      a trial file or a sweep file
    memlaw reproduce [--out docs/reproduction.md] [--storage DIR] [--experiment PATH]

Heavy imports (torch, transformers, ray) happen inside the subcommands, so `memlaw --help` and
config errors answer at once. Exit codes: 0 done, 2 bad input (nothing was run), 1 the run failed.
A damaged file in an experiment's record log (law, plan, export, plot) is a warning on stderr, one
line per file; `--strict` makes it exit 2 instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from orchestrator.tune.jobs import JobsError, dashboard_url_problem, law_job_entrypoint  # noqa: F401 (no Ray)
from trainables import metric_names as K
from trainables.schema import ConfigError, Problem

EXIT_BAD_INPUT = 2
#: Most problems printed for one file; the rest are counted (a 1 MiB file may hold thousands).
MAX_PROBLEMS_SHOWN = 50

SUMMARY_KEYS = (
    K.STEP, K.RANK, K.TRAINABLE_PARAMS, K.TARGET_TOKENS, K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS,
    K.FRAC_P_GT_HALF, K.FRAC_SEQUENCES_CERTIFIED, K.TF_TOKEN_ACC, K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH,
    K.FIRST_SUBTHRESHOLD_POS, K.FIRST_GREEDY_ERROR_POS, K.STEPS_TO_CERTIFIED, K.LOSS_CHANCE, K.BITS_ABOVE_CHANCE,
    K.BITS_ABOVE_CHANCE_PER_PARAM, K.CERTIFIED_BITS, K.BITS_PER_PARAM, K.WALL_S,
)
#: Printed beside a summary key: the paper's ΔL-based figure is labelled as such (docs/science.md §6).
SUMMARY_NOTES = {K.BITS_PER_PARAM: "  (the paper's ΔL-based figure; counts overconfidence undone)"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _print_error(source: str, err: ConfigError) -> None:
    print(f"error: {source} is not valid:", file=sys.stderr)
    for problem in err.problems[:MAX_PROBLEMS_SHOWN]:
        print(f"  - {problem}", file=sys.stderr)
    if len(err.problems) > MAX_PROBLEMS_SHOWN:
        print(f"  ... and {len(err.problems) - MAX_PROBLEMS_SHOWN} more problems", file=sys.stderr)


def _report_damage(where: str, damaged: list, strict: bool) -> bool:
    """One line with the count, then one per file and its reason, on stderr. True when the command
    must stop (--strict: exit 2). `damaged`: record_log.Damage objects or their dicts."""
    rows = [d if isinstance(d, dict) else d.to_dict() for d in damaged]
    if not rows:
        return False
    lost = [r for r in rows if r["kind"] != "stray"]
    strays = len(rows) - len(lost)
    counts = ([f"{len(lost)} damaged file{'s' * (len(lost) != 1)} left out (records in them are not counted)"]
              if lost else []) + ([f"{strays} stray file{'s' * (strays != 1)} ignored"] if strays else [])
    head = "error" if strict else "warning"
    print(f"{head}: {where}: {'; '.join(counts)}" + (" (--strict)" if strict else ""), file=sys.stderr)
    for r in rows:
        print(f"  {r['name']}: {r['reason']}", file=sys.stderr)
    return strict


def _default_out(config_path: str) -> Path:
    stem = Path(config_path).stem
    return Path("memlaw-runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


# -- trial ---------------------------------------------------------------------------------------
def cmd_trial(args: argparse.Namespace) -> int:
    from trainables.config import TrialConfig

    try:
        cfg = TrialConfig.from_yaml(args.file, args.set)
    except ConfigError as err:
        _print_error(args.file, err)
        return EXIT_BAD_INPUT
    out = Path(args.out) if args.out else _default_out(args.file)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file, not a folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.resume:
        existing = _trial_files_in(out)
        if existing and not args.force:
            print(f"error: {out} already holds a trial ({', '.join(existing)}): use --resume to continue it or "
                  "--force to overwrite it", file=sys.stderr)
            return EXIT_BAD_INPUT
        _clear_trial_files(out, existing)
    return _run_trial(cfg, out, args)


#: What `memlaw trial` writes into its folder (trainables/memorize.py).
TRIAL_FILES = ("config.yaml", "evals.jsonl", "result.json", "adapter", "checkpoints")


def _trial_files_in(out: Path) -> list[str]:
    return [name for name in TRIAL_FILES if (out / name).exists()] if out.is_dir() else []


def _clear_trial_files(out: Path, names: list[str]) -> None:
    """--force: remove the old trial's files (only those memlaw writes), so that no old checkpoint,
    evaluation or result outlives the trial that overwrites it."""
    import shutil

    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _run_trial(cfg, out: Path, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainables.memorize import MemorizationTrial, TrialDiverged, latest_checkpoint

    resume_from = latest_checkpoint(out / "checkpoints") if args.resume else None
    if args.resume and resume_from is None:
        print(f"error: --resume: no checkpoint under {out / 'checkpoints'}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"memlaw trial: loading {cfg.model.name} ({cfg.adapter.placement} LoRA, rank {cfg.adapter.rank}, "
          f"{cfg.method.name}) ...", file=sys.stderr)
    try:
        trial = MemorizationTrial(cfg, out)
    except ConfigError as err:
        _print_error(args.file, err)
        return EXIT_BAD_INPUT
    bar = tqdm(total=cfg.budget.steps, initial=0, desc="train", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None)

    def on_step(step: int, loss: float) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update(0)

    def report(metrics: dict, checkpoint: str | None) -> None:
        bar.write(f"step {metrics[K.STEP]:>6}  loss {metrics[K.LOSS_FINAL]:.4f}  "
                  f"p>0.5 {metrics[K.FRAC_P_GT_HALF]:.3f}  certified {metrics[K.FRAC_SEQUENCES_CERTIFIED]:.3f}  "
                  f"bits>chance {_fmt(metrics.get(K.BITS_ABOVE_CHANCE))}"
                  + (f"  greedy EM {metrics[K.GREEDY_EXACT_MATCH]:.3f}" if metrics[K.GREEDY_EVALUATED] else ""),
                  file=sys.stderr)

    try:
        result = trial.run(report=report, resume_from=resume_from, on_step=on_step)
    except TrialDiverged as err:
        bar.close()
        print(f"error: the trial diverged: {err}", file=sys.stderr)
        return 1
    bar.close()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        width = max(len(k) for k in SUMMARY_KEYS)
        for key in SUMMARY_KEYS:
            print(f"  {key:<{width}}  {_fmt(result.get(key))}{SUMMARY_NOTES.get(key, '')}")
    print(f"memlaw trial: wrote {out}/ (config.yaml, evals.jsonl, result.json, adapter/)", file=sys.stderr)
    return 0


# -- validate ------------------------------------------------------------------------------------
def _is_sweep_file(path: str) -> bool:
    from trainables.schema import load_yaml_mapping

    try:
        data = load_yaml_mapping(path)
    except ConfigError:
        return False
    return "space" in data or "search" in data or ("trial" in data and "name" in data)


def _check_not_empty(path: str) -> None:
    """An empty file (no YAML document: nothing, or only comments) is a mistake, not a default trial."""
    import yaml

    from trainables.schema import load_yaml_mapping

    if load_yaml_mapping(path):  # also raises for a missing, binary, non-YAML or non-mapping file
        return
    with open(path, encoding="utf-8") as fh:
        if yaml.safe_load(fh) is None:
            raise ConfigError([Problem("", f"{path}: is empty (no YAML document); a trial or sweep file "
                                           "needs at least one key")])


def cmd_validate(args: argparse.Namespace) -> int:
    from trainables.config import TrialConfig

    try:
        if not args.set:  # `memlaw trial empty.yaml --set ...` is a trial of overrides on the defaults
            _check_not_empty(args.file)
    except ConfigError as err:
        _print_error(args.file, err)
        return EXIT_BAD_INPUT
    if _is_sweep_file(args.file):
        return _validate_sweep(args.file)
    try:
        cfg = TrialConfig.from_yaml(args.file, args.set)
        from trainables.model import check_against_model

        dims = check_against_model(cfg)
    except ConfigError as err:
        _print_error(args.file, err)
        return EXIT_BAD_INPUT
    print(f"ok: {args.file} is a valid trial (model {cfg.model.name}: hidden {dims.hidden}, {dims.layers} layers, "
          f"vocab {dims.vocab}; {cfg.adapter.placement} LoRA rank {cfg.adapter.rank}; {cfg.method.name}; "
          f"{cfg.budget.steps} steps)")
    return 0


def _validate_sweep(path: str) -> int:
    from orchestrator.config.preflight import load_sweep

    try:
        sweep = load_sweep(path)
    except ConfigError as err:
        _print_error(path, err)
        return EXIT_BAD_INPUT
    size = sweep.trial_count()  # adaptive: at most (its stopping rule may end it sooner)
    print(f"ok: {path} is a valid sweep {sweep.name!r}: {size} trials ({sweep.search.kind} over {sweep.space}), "
          f"storage {sweep.experiment_uri}")
    return 0


# -- sweeps --------------------------------------------------------------------------------------
def _load_sweep_or_exit(path: str, **overrides):
    from orchestrator.config.preflight import load_sweep

    try:
        return load_sweep(path, overrides)
    except ConfigError as err:
        _print_error(path, err)
        return None


def _summarize_sweep(experiment, grid) -> None:
    from orchestrator.tune import results_actor
    from orchestrator.report.law_report import format_report, format_search_report
    from orchestrator.search.kinds import search_of
    from orchestrator.tune.sweep_output import trial_table

    sweep, uri = experiment.sweep, experiment.uri
    errors = sum(1 for r in grid if r.error is not None)
    result = _search_result(sweep, uri)
    if result is not None:  # no law for this space: its best trials or Pareto front, and the validation
        print(format_search_report(result["no_law"], result["best"], result["validation"]))
    else:
        report, records = results_actor.final_report(sweep.name)
        print(f"\nevery trial of {sweep.name} (certified: share of target tokens with p > 0.5; greedy EM: share of "
              "sequences recalled exactly):")
        print(trial_table(records))
        print()
        print("\n".join([format_report(report), *search_of(sweep).stopping_lines(sweep, report)]))
    print(f"\nmemlaw: {len(grid)} trials ({errors} failed). Experiment: {uri}", file=sys.stderr)
    print(f"  memlaw {'best' if result else 'law --experiment'} {uri}        the "
          f"{'best trials' if result else 'fit'}, from storage", file=sys.stderr)
    print(f"  memlaw export {uri} --out results.parquet", file=sys.stderr)
    print(f"  memlaw plot {uri} --out law.png", file=sys.stderr)


def _experiment_to_run(sweep, resume: bool, new: bool):
    """What `memlaw sweep` runs: a new experiment, or (--resume) the same sweep's existing one, or
    (--new) the sweep under a free suffixed name. An existing experiment is never merged into
    silently, and a changed sweep file never continues an old one. Raises ConfigError."""
    from orchestrator.experiment import folder as ex

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
    from orchestrator.tune.tuner import resume_sweep, run_sweep

    try:
        grid = (resume_sweep(experiment, address=args.address, dashboard=args.dashboard) if continuing
                else run_sweep(experiment.sweep, address=args.address, dashboard=args.dashboard))
    except ExperimentBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _summarize_sweep(experiment, grid)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep = _load_sweep_or_exit(args.file, storage_path=args.storage, name=args.name)
    if sweep is None:
        return EXIT_BAD_INPUT
    return _run_or_resume(sweep, args, args.resume, args.new)


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


def _open_experiment(path: str):
    """The experiment at `path` for reading (no Ray): its saved sweep, fully validated."""
    from orchestrator.experiment.folder import open_experiment

    return open_experiment(path)


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.config.preflight import model_problems

    try:
        experiment = _open_experiment(args.path)
        problems = model_problems(experiment.sweep)  # it trains again: the model must be at hand
        if problems:
            raise ConfigError(problems)
    except ConfigError as err:
        _print_error(args.path, err)
        return EXIT_BAD_INPUT
    from orchestrator.experiment.folder import ExperimentBusy
    from orchestrator.tune.tuner import resume_sweep

    try:
        grid = resume_sweep(experiment, address=args.address, dashboard=args.dashboard)
    except ExperimentBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _summarize_sweep(experiment, grid)
    return 0


def _search_result(sweep, uri: str, warn_damage: bool = False) -> dict | None:
    """A search without a law (orchestrator/law_report.search_result), read from storage."""
    from orchestrator.report.law_report import search_result
    from orchestrator.records.journal import LAW_FOLDER, RecordLog

    log = RecordLog.for_experiment(uri)
    if warn_damage:
        _report_damage(f"{uri.rstrip('/')}/{LAW_FOLDER}", log.damaged, strict=False)
    return search_result(sweep, log.all(), uri)


def cmd_best(args: argparse.Namespace) -> int:
    """The best trials or Pareto front of a search, and its held-out validation."""
    from orchestrator.report.law_report import format_search_report

    try:
        sweep = _open_experiment(args.path).sweep
    except ConfigError as err:
        _print_error(args.path, err)
        return EXIT_BAD_INPUT
    result = _search_result(sweep, args.path, warn_damage=True)
    if result is None:
        print(f"error: {args.path} is a {sweep.search.kind} sweep over a law grid: its result is the law "
              f"(memlaw law --experiment {args.path})", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_search_report(result["no_law"], result["best"], result["validation"]))
    return 0


# -- the law -------------------------------------------------------------------------------------
def _report_from_experiment(path: str) -> dict:
    """The fit from storage, with the files its record log could not use under "damaged"."""
    from orchestrator.report.law_report import build_report
    from orchestrator.records.journal import LAW_FOLDER, RecordLog

    sweep = _open_experiment(path).sweep
    log = RecordLog.for_experiment(path)
    report = build_report(sweep.name, log.all(), sweep.fit)
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

    try:
        info = live.read_live(path)
        from orchestrator.tune.live_query import report_from_actor

        return report_from_actor(info["address"], sweep or info["sweep"], info.get("namespace"))
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
        return _report_from_experiment(args.experiment)
    if args.dashboard:
        return _report_from_dashboard(args.dashboard, args.sweep, args.insecure_http)
    from orchestrator.tune.live_query import report_from_actor

    return report_from_actor(args.address, args.sweep)


def cmd_law(args: argparse.Namespace) -> int:
    from orchestrator.report.law_report import flat_fits, format_report
    from orchestrator.experiment.live_file import NotLive

    try:
        report = _get_report(args)
    except ConfigError as err:
        if args.experiment:
            _print_error(args.experiment, err)
        else:  # a refused --dashboard URL: one line
            print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (LookupError, NotLive, JobsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    damaged = report.get("damaged", [])
    if _report_damage(report.get("damaged_in", "the record log"), damaged, args.strict):
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


def cmd_plan(args: argparse.Namespace) -> int:
    from orchestrator.law.fit import GroupFit, required_capacity
    from orchestrator.experiment.live_file import NotLive

    try:
        report = _get_report(args)
    except (ConfigError, LookupError, NotLive, JobsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if _report_damage(report.get("damaged_in", "the record log"), report.get("damaged", []), args.strict):
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
    from orchestrator.experiment.export import check_writable, export, export_format, read_experiment

    try:
        export_format(args.out)  # input errors first, before anything is read: one line, exit 2
        check_writable(args.out)
        loaded = read_experiment(args.path)
    except (ValueError, FileNotFoundError) as err:  # StorageError (an unknown scheme) is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if _report_damage(loaded.log_folder, loaded.damaged, args.strict):
        return EXIT_BAD_INPUT
    try:
        n = export(args.path, args.out, loaded=loaded)
    except ValueError as err:  # `out` names a folder
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        return _write_failed(args.out, err)
    print(f"memlaw export: {n} trials -> {args.out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from orchestrator.experiment.export import check_writable, read_experiment
    from orchestrator.report.plot import plot_law

    try:
        sweep = _open_experiment(args.path).sweep
    except ConfigError as err:
        _print_error(args.path, err)
        return EXIT_BAD_INPUT
    try:
        check_writable(args.out)
        loaded = read_experiment(args.path)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if _report_damage(loaded.log_folder, loaded.damaged, args.strict):
        return EXIT_BAD_INPUT
    try:
        paths = plot_law(args.path, args.out, fit=sweep.fit, loaded=loaded)
    except ValueError as err:  # no finished trial to plot, `out` names a folder
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        return _write_failed(args.out, err)
    print("memlaw plot: wrote " + ", ".join(paths))
    return 0


DEMO_FILE = "law_grid_cpu.yaml"


def cmd_demo(args: argparse.Namespace) -> int:
    """The shipped CPU law sweep end to end: live table, fit, plot, and where the files went."""
    path = args.file or str(Path(__file__).resolve().parents[1] / "examples" / DEMO_FILE)
    if not Path(path).is_file():
        print(f"error: {path} not found: memlaw demo runs from a checkout of the memlaw repository", file=sys.stderr)
        return EXIT_BAD_INPUT
    sweep = _load_sweep_or_exit(path, storage_path=args.storage, name=args.name)
    if sweep is None:
        return EXIT_BAD_INPUT
    from orchestrator.experiment import folder as ex
    from orchestrator.tune.tuner import run_sweep

    if ex.exists(sweep.experiment_uri):  # a second demo is a new experiment, never merged into the first
        sweep = ex.free_name(sweep)
    print(f"memlaw demo: {sweep.trial_count()} trials of {sweep.space} on a local Ray (CPU); results in "
          f"{sweep.experiment_uri}", file=sys.stderr)
    try:
        grid = run_sweep(sweep)
    except ex.ExperimentBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _summarize_sweep(ex.Experiment.of(sweep), grid)
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
    print(f"memlaw reproduce: wrote {args.out} (facts in {Path(args.out).with_suffix('.json')})", file=sys.stderr)
    return 0


# -- parser --------------------------------------------------------------------------------------
def fields_epilog(kind: str) -> str:
    """Every field a trial or sweep file may set, with its default and doc: the same field metadata
    that validation's errors quote, so `--help` and the errors never disagree."""
    if kind == "trial":
        from trainables.config import TrialConfig as cls
    else:
        from orchestrator.config.sweep import SweepConfig as cls
    rows = cls.field_docs()
    width = min(34, max(len(name) for name, _, _ in rows))
    how = "as errors name them and --set sets them" if kind == "trial" else "as errors name them"
    lines = [f"{kind} file fields (dotted, {how}):"]
    for name, doc, default in rows:
        shown = "" if default is None else f" [default {default}]"
        lines.append(f"  {name:<{width}}  {doc}{shown}")
    return "\n".join(lines)


def _with_fields(sub, name: str, kind: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, epilog=fields_epilog(kind), formatter_class=argparse.RawDescriptionHelpFormatter,
                          **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memlaw", description="How much can a LoRA adapter memorize? "
                                     "Trials, sweeps and the live Parametric Memory Law.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_running_commands(sub)
    _add_reading_commands(sub)
    return parser


def _add_running_commands(sub) -> None:
    """trial, demo, sweep, resume: the commands that train."""
    p = _with_fields(sub, "trial", "trial", help="run one memorization trial in this process")
    p.add_argument("file", help="trial config (YAML), e.g. examples/trial_tiny.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set adapter.rank=8 (repeatable)")
    p.add_argument("--out", help="output folder (default memlaw-runs/<name>-<time>)")
    p.add_argument("--json", action="store_true", help="print the final result as JSON on stdout")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    again.add_argument("--force", action="store_true",
                       help="overwrite the trial already in --out (its config, evaluations, result, adapter and "
                            "checkpoints are removed first); without it, an existing trial folder is refused")
    p.set_defaults(func=cmd_trial)

    p = sub.add_parser("demo", help="run the shipped CPU law sweep end to end (a few minutes)")
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--storage", help="where the experiment goes (default memlaw-runs)")
    p.add_argument("--name", help="sweep name (default from the file)")
    p.set_defaults(func=cmd_demo)

    p = _with_fields(sub, "sweep", "sweep", help="run a sweep file on Ray Tune")
    p.add_argument("file")
    _add_where_to_run(p)
    p.add_argument("--storage", help="override storage_path (a path or s3://..., gs://...)")
    p.add_argument("--name", help="override the sweep name")
    reuse = p.add_mutually_exclusive_group()
    reuse.add_argument("--resume", action="store_true",
                       help="continue the existing experiment of this sweep (the same sweep file; see also memlaw resume)")
    reuse.add_argument("--new", action="store_true",
                       help="if the experiment exists, start a fresh one under the next free name NAME-2, NAME-3, ...")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("best", help="a search's best trials or Pareto front, and its held-out validation")
    p.add_argument("path", help="the experiment folder (storage_path/name)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_best)

    p = sub.add_parser("resume", help="continue an interrupted sweep from its experiment folder")
    p.add_argument("path", help="the experiment folder (storage_path/name)")
    _add_where_to_run(p)
    p.set_defaults(func=cmd_resume)

    p = _with_fields(sub, "submit", "sweep", help="start a sweep as a Ray Job on a running cluster (Jobs API)")
    p.add_argument("file", help="the sweep file (validated here, then sent with the job)")
    p.add_argument("--dashboard", required=True,
                   help="the cluster's dashboard: https://..., or http:// to loopback, e.g. http://127.0.0.1:8265")
    p.add_argument("--insecure-http", action="store_true",
                   help="allow plain http to a host that is not loopback (sends the token in clear)")
    p.add_argument("--storage", help="override storage_path: an absolute path every node sees, or s3://, gs://")
    p.add_argument("--name", help="override the sweep name")
    p.set_defaults(func=cmd_submit)


def _add_where_to_run(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="join a running cluster (auto, or ray://host:10001); default: a local Ray")
    where.add_argument("--dashboard", action="store_true",
                       help="the local Ray with its dashboard on 127.0.0.1 (token auth; the URL is printed): the "
                            "results actor's log shows each refit")


def _add_reading_commands(sub) -> None:
    """law, plan, export, plot, reproduce, validate: the commands that read (reproduce may run sweeps)."""
    for name, helptext, func in (("law", "the current fit of the Parametric Memory Law", cmd_law),
                                 ("plan", "the rank needed to memorize N tokens, from the fit", cmd_plan)):
        p = sub.add_parser(name, help=helptext)
        if name == "plan":
            p.add_argument("--tokens", type=int, required=True, help="target tokens to memorize")
            p.add_argument("--group", help="only this group (default: every group)")
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--experiment", help="refit from the experiment's storage (no Ray needed); with --live, "
                                                "ask the running sweep of that folder")
        where.add_argument("--address", help="ask the live results actor on this Ray cluster (auto, ray://...)")
        where.add_argument("--dashboard", help="ask through the Ray Jobs API: https://..., or http:// to loopback, "
                                               "e.g. http://127.0.0.1:8265 (the Ray token goes with each request)")
        p.add_argument("--insecure-http", action="store_true",
                       help="--dashboard: allow plain http to a host that is not loopback (sends the token in clear)")
        p.add_argument("--live", action="store_true",
                       help="with --experiment: the live fit from the sweep running in that folder (on its own "
                            "Ray, found in memlaw_live.json, 10 s connect timeout), else the fit from storage")
        p.add_argument("--sweep", help="which sweep (default: the only one)")
        p.add_argument("--json", action="store_true")
        _add_strict(p)
        p.set_defaults(func=func)

    p = sub.add_parser("export", help="write one row per trial (config, metrics, provenance)")
    p.add_argument("path", help="the experiment folder")
    p.add_argument("--out", required=True, help="results.parquet or results.csv")
    _add_strict(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plot", help="the paper-style law figure and the recall heatmap")
    p.add_argument("path", help="the experiment folder")
    p.add_argument("--out", required=True, help="law.png")
    _add_strict(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("reproduce", help="run (or reuse) the CPU sweeps and write docs/reproduction.md")
    p.add_argument("--out", default="docs/reproduction.md", help="the Markdown file (JSON and figure next to it)")
    p.add_argument("--storage", default="memlaw-runs/reproduction",
                   help="where the sweeps' experiments go; complete ones found there are reused (a new folder "
                        "runs everything again)")
    p.add_argument("--experiment", help="use this finished law grid instead of running examples/law_grid_cpu.yaml")
    p.add_argument("--smollm2", action="store_true",
                   help="also the law on SmolLM2-135M (random tokens, 3 ranks x 3 lengths, and a semantic-density "
                        "axis): 19 min on 2 quiet cores, measured")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("validate", help="check a trial or sweep file without running it")
    p.add_argument("file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)


def _add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true",
                   help="exit 2 when the experiment's record log has a damaged or stray file (default: a warning "
                        "per file on stderr, and the rest is used)")


def main(argv: Sequence[str] | None = None) -> int:
    from orchestrator.tune.ray_session import default_token_auth, tighten_token_file

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    default_token_auth()  # before any subcommand can import Ray
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    finally:
        if "ray" in sys.modules:  # Ray may have created its token file during the command
            tighten_token_file()
    live_query = sys.modules.get("orchestrator.tune.live_query")  # loaded only by a command that connected
    if live_query is not None and live_query.stuck_connect():  # a connect that timed out is still inside ray.init: do not wait for it at exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
