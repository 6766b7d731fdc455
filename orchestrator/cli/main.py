"""The `memlaw` command line.

    memlaw demo                                   the CPU law sweep, end to end, on a local Ray
    memlaw trial FILE.yaml [--set k=v ...] [--out DIR] [--json] [--resume | --force]
    memlaw sweep FILE.yaml [--address auto|ray://... | --dashboard] [--storage URI] [--name NAME] [--verbose]
    memlaw resume PATH [--address ... | --dashboard] [--verbose]
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

The commands live by group in trial_commands.py (trial, validate), sweep_commands.py (sweep, submit,
resume, demo, reproduce) and read_commands.py (best, law, plan, export, plot); this module builds
the parser and runs one.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from orchestrator.cli.read_commands import cmd_best, cmd_export, cmd_law, cmd_plan, cmd_plot
from orchestrator.cli.sweep_commands import cmd_demo, cmd_reproduce, cmd_resume, cmd_submit, cmd_sweep
from orchestrator.cli.trial_commands import cmd_trial, cmd_validate


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
    _add_verbose(p)
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
    _add_verbose(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("best", help="a search's best trials or Pareto front, and its held-out validation")
    p.add_argument("path", help="the experiment folder (storage_path/name)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--strict", action="store_true", help="exit 2 when a validation file is damaged (default: "
                                                         "warn on stderr and leave it out)")
    p.set_defaults(func=cmd_best)

    p = sub.add_parser("resume", help="continue an interrupted sweep from its experiment folder")
    p.add_argument("path", help="the experiment folder (storage_path/name)")
    _add_where_to_run(p)
    _add_verbose(p)
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


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's, Tune's and Optuna's own log lines here (default: EXPERIMENT/memlaw/library.log)")


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
        if name == "law":
            p.add_argument("--robust", action="store_true",
                           help="with --experiment: also fit each group by Besiroglu et al.'s robust recipe (Huber "
                                "loss on log residuals, multi-start L-BFGS, cell bootstrap) and say where the two "
                                "estimators disagree (docs/science.md §5)")
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
                   help="also the SmolLM2-135M study (examples/*_smollm2.yaml: beta at rank 1 over 4 lengths x 3 "
                        "fresh-data replicates, ranks 2 and 4 x 2 lengths x 2 replicates, 600 steps each, and a "
                        "semantic-density axis): about an hour on 2 cores (63 min measured), reused once finished")
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
    except BrokenPipeError:  # `memlaw law ... | head`: the reader left; no traceback, the exit of a Unix tool killed by SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    finally:
        if "ray" in sys.modules:  # Ray may have created its token file during the command
            tighten_token_file()
    return code


if __name__ == "__main__":
    sys.exit(main())
